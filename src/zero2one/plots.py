"""PNG plots shared by the tasks (matplotlib, outside pyplot's global state)."""

from __future__ import annotations

import functools
import logging
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zero2one.logs import quieted
from zero2one.metrics import positive_scores

if TYPE_CHECKING:
    import numpy as np


def figure(width: float, height: float, ncols: int = 1) -> tuple[Any, Any]:
    """A figure outside pyplot's global state (no display, no figure manager, thread-safe)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    return fig, fig.subplots(1, ncols)


def save(fig: Any, path: Path, **margins: float) -> Path:
    # fixed margins instead of tight_layout(), which draws every figure twice
    fig.subplots_adjust(**{"left": 0.12, "right": 0.97, "bottom": 0.12, "top": 0.9, **margins})
    # a CJK font's regular weight is often 500: matplotlib logs that it uses it instead
    with warnings.catch_warnings(), quieted("matplotlib.font_manager"):
        if not _use_cjk_font(fig):  # said once; the glyphs draw as boxes
            warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.savefig(path)
    return path


log = logging.getLogger(__name__)
# Chinese, Japanese and Korean characters (and their punctuation) that DejaVu Sans lacks
CJK = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")
# installed fonts with those glyphs, in order of preference, by family name and by file name
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei",
             "WenQuanYi Micro Hei", "Droid Sans Fallback", "AR PL UMing CN", "Microsoft YaHei",
             "SimHei", "PingFang SC", "Noto Sans CJK JP")
CJK_FILES = re.compile(r"(NotoSans(Mono)?CJK|NotoSansSC|SourceHanSans|wqy-|DroidSansFallback|"
                       r"uming|ukai|msyh|simhei|PingFang)", re.I)
INSTALL_CJK = ("labels with Chinese (or Japanese, Korean) characters need a CJK font, and none "
               "is installed: they are drawn as boxes; install one (Debian/Ubuntu: apt-get "
               "install fonts-noto-cjk, or fonts-wqy-zenhei)")


def _use_cjk_font(fig: Any) -> bool:
    """Give the figure's texts with CJK characters an installed CJK font as a fallback after
    the default (matplotlib draws each glyph from the first font in the list that has it);
    False when one is needed and none is installed (said once)."""
    texts = [t for t in fig.findobj(lambda a: hasattr(a, "get_text") and hasattr(
        a, "set_fontfamily")) if CJK.search(str(t.get_text()))]
    if not texts:
        return True
    font = cjk_font()
    if font is None:
        _say_install()
        return False
    for text in texts:
        families = [f for f in text.get_fontfamily() if f != font]
        text.set_fontfamily([*families, font])
    return True


@functools.cache
def cjk_font() -> str | None:
    """The family name of an installed CJK font, or None. matplotlib's font cache is made once,
    so a font installed after it is found here by scanning the system's font files."""
    from matplotlib import font_manager

    known = {f.name for f in font_manager.fontManager.ttflist}
    found = next((name for name in CJK_FONTS if name in known), None)
    if found is not None:
        return found
    for path in font_manager.findSystemFonts():
        if CJK_FILES.search(Path(path).name):
            try:
                font_manager.fontManager.addfont(path)
            except (OSError, RuntimeError, ValueError):  # an unreadable font file
                continue
    known = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in CJK_FONTS if name in known), None)


@functools.cache
def _say_install() -> None:
    log.warning(INSTALL_CJK)


def plot_confusion_matrix(y_true: Any, y_pred: Any, labels: list[Any], names: list[str],
                          path: Path) -> Path:
    from sklearn.metrics import ConfusionMatrixDisplay

    size = max(4.0, 0.6 * len(labels) + 2)
    fig, ax = figure(size, size)
    ConfusionMatrixDisplay.from_predictions(
        y_true, y_pred, labels=labels, display_labels=names, ax=ax, colorbar=False,
        xticks_rotation=45 if len(labels) > 4 else "horizontal",
    )
    ax.set_title("Confusion matrix (test split)")
    longest = max((len(str(n)) for n in names), default=1)
    return save(fig, path, left=min(0.45, 0.12 + 0.015 * longest),
                 bottom=min(0.45, 0.12 + 0.012 * longest))


def plot_roc(y_true: Any, scores: np.ndarray, labels: list[Any], names: list[str],
             path: Path, *, positive: Any = None) -> Path | None:
    """ROC curve of the ``positive`` class (default ``labels[1]``) for binary problems,
    one-vs-rest curves for multiclass."""
    import numpy as np
    from sklearn.metrics import RocCurveDisplay

    fig, ax = figure(5, 5)
    y = np.asarray(y_true)
    drawn = 0
    if len(labels) == 2:
        positive = labels[1] if positive is None else positive
        index = list(labels).index(positive)
        pairs = [(positive_scores(scores, labels, positive), positive, names[index])]
    else:
        pairs = [(scores[:, i], label, name)
                 for i, (label, name) in enumerate(zip(labels, names, strict=True))]
    for column_scores, label, name in pairs:
        truth = y == label
        if truth.all() or not truth.any():
            continue
        RocCurveDisplay.from_predictions(truth, column_scores, name=str(name), ax=ax)
        drawn += 1
    if not drawn:
        return None
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set_title("ROC (test split)")
    return save(fig, path, left=0.14)


def plot_residuals(y_true: Any, y_pred: Any, path: Path) -> Path:
    import numpy as np

    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    fig, (left, right) = figure(10, 4, ncols=2)
    left.scatter(y_pred, y_true - y_pred, s=10, alpha=0.6)
    left.axhline(0, color="grey", linestyle="--", linewidth=1)
    left.set_xlabel("predicted")
    left.set_ylabel("residual (true - predicted)")
    right.scatter(y_true, y_pred, s=10, alpha=0.6)
    low, high = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    right.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)
    right.set_xlabel("true")
    right.set_ylabel("predicted")
    fig.suptitle("Residuals (test split)")
    return save(fig, path, left=0.08, wspace=0.25)
