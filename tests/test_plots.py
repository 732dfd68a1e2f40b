"""Plots with Chinese class names: drawn with an installed CJK font (matplotlib's fallback),
or — where none is installed — one line that says which to install, and no glyph warnings."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pytest

from zero2one import plots

LABELS = ["猫", "狗", "鸟"]


def confusion(path: Path) -> Path:
    return plots.plot_confusion_matrix(["猫", "狗", "猫", "鸟"], ["猫", "狗", "狗", "鸟"], LABELS,
                                       LABELS, path)


def glyph(text: str, path: Path) -> np.ndarray:
    from PIL import Image

    fig, ax = plots.figure(1, 1)
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, fontsize=40, ha="center", va="center")
    plots.save(fig, path)
    return np.asarray(Image.open(path).convert("L"))


@pytest.mark.skipif(plots.cjk_font() is None, reason="no CJK font installed (.ci/run installs "
                    "fonts-wqy-zenhei)")
def test_chinese_labels_are_drawn_with_an_installed_cjk_font(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Glyph ... missing from font(s)" would fail here
        confusion(tmp_path / "cm.png")
        cat, dog = glyph("猫", tmp_path / "cat.png"), glyph("狗", tmp_path / "dog.png")
    # with the font: two different characters; without it, the same empty box twice
    assert (cat != dog).mean() > 0.01


def test_without_a_cjk_font_one_line_says_which_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(plots, "cjk_font", lambda: None)
    plots._say_install.cache_clear()
    with caplog.at_level(logging.WARNING, logger="zero2one.plots"), warnings.catch_warnings():
        warnings.simplefilter("error")
        confusion(tmp_path / "a.png")
        confusion(tmp_path / "b.png")
    said = [r.getMessage() for r in caplog.records if r.name == "zero2one.plots"]
    assert len(said) == 1 and "apt-get install fonts-noto-cjk" in said[0], said
    assert (tmp_path / "b.png").is_file()


def test_latin_labels_leave_the_font_alone(tmp_path: Path) -> None:
    fig, ax = plots.figure(2, 2)
    label = ax.set_title("setosa")
    plots.save(fig, tmp_path / "t.png")
    assert all("WenQuanYi" not in f and "CJK" not in f for f in label.get_fontfamily())
