"""Plots for fine-tuning: training and validation loss by optimizer step."""

from __future__ import annotations

from pathlib import Path

from zero2one.plots import figure, save


def plot_losses(history: list[dict[str, float]], path: Path) -> Path:
    fig, ax = figure(6, 4)
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        points = [(h["step"], h[key]) for h in history if key in h]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", markersize=3, label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss per token")
    ax.legend()
    fig.suptitle("Fine-tuning loss")
    return save(fig, path)
