"""Plots for image classification: learning curves and a grid of misclassified test images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from zero2one.plots import figure, save


def plot_learning_curves(history: list[dict[str, float]], path: Path) -> Path:
    epochs = [h["epoch"] for h in history]
    fig, (loss, accuracy) = figure(10, 4, ncols=2)
    loss.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train")
    loss.plot(epochs, [h["val_loss"] for h in history], marker="o", label="validation")
    loss.set_xlabel("epoch")
    loss.set_ylabel("cross-entropy")
    loss.legend()
    accuracy.plot(epochs, [h["train_accuracy"] for h in history], marker="o", label="train")
    accuracy.plot(epochs, [h["val_accuracy"] for h in history], marker="o", label="validation")
    accuracy.set_xlabel("epoch")
    accuracy.set_ylabel("accuracy")
    accuracy.legend()
    fig.suptitle("Learning curves")
    return save(fig, path, left=0.08, wspace=0.25)


def plot_misclassified(images: np.ndarray, y: np.ndarray, predicted: np.ndarray,
                       names: list[str], path: Path, limit: int = 25) -> Path | None:
    """Up to ``limit`` test images the model got wrong, titled 'true -> predicted'."""
    wrong = np.flatnonzero(predicted != y)[:limit]
    if len(wrong) == 0:
        return None
    cols = min(5, len(wrong))
    rows = int(np.ceil(len(wrong) / cols))
    fig, axes = figure(2 * cols, 2.2 * rows + 0.4, ncols=1)
    fig.delaxes(axes)
    for n, i in enumerate(wrong):
        ax: Any = fig.add_subplot(rows, cols, n + 1)
        image = images[i]
        ax.imshow(image[..., 0] if image.shape[2] == 1 else image,
                  cmap="gray" if image.shape[2] == 1 else None, interpolation="nearest")
        ax.set_title(f"{names[y[i]]} → {names[predicted[i]]}", fontsize=8)
        ax.axis("off")
    fig.suptitle(f"Misclassified test images ({len(np.flatnonzero(predicted != y))} in all)")
    return save(fig, path, left=0.02, right=0.98, bottom=0.02, top=0.88, hspace=0.4)
