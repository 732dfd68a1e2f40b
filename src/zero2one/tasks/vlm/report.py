"""The report of a vision-language model: held-out accuracy per question type beside the
text-only baseline, the training loss, and every held-out answer as a table."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from zero2one.plots import figure, save


def plot_accuracy(metrics: dict[str, float], path: Path) -> Path:
    kinds = sorted(k.removeprefix("accuracy_") for k in metrics if k.startswith("accuracy_"))
    keys = [f"_{k}" for k in kinds] or [""]
    fig, ax = figure(max(4.0, 1.4 * len(keys) + 2), 3.6)
    spots = range(len(keys))
    ax.bar([x - 0.2 for x in spots], [metrics[f"accuracy{k}"] for k in keys], 0.4,
           label="model")
    ax.bar([x + 0.2 for x in spots], [metrics[f"baseline_accuracy{k}"] for k in keys], 0.4,
           label="text only (most frequent answer)")
    ax.set_xticks(list(spots), kinds or ["all"])
    ax.set_ylim(0, 1)
    ax.set_ylabel("held-out exact-match accuracy")
    ax.legend(loc="lower right", fontsize=8)
    return save(fig, path)


def plot_loss(history: list[dict[str, float]], path: Path) -> Path:
    fig, ax = figure(5, 3.4)
    ax.plot([h["step"] for h in history], [h["loss"] for h in history], marker="o",
            markersize=3)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss per answer token")
    return save(fig, path)


def write_answers(rows: list[dict[str, Any]], path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "type", "question", "expected",
                                                    "answer", "correct"])
        writer.writeheader()
        writer.writerows(rows)
    return path
