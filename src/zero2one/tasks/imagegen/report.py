"""What a training run of an image generator leaves with its run: the loss curve, sample grids
taken during training, one grid per evaluated guidance scale (rows: prompts) and the adherence
table (prompt × guidance scale)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from zero2one.plots import figure, save
from zero2one.tasks.imagegen.evaluate import Evaluation
from zero2one.tasks.imagegen.images import tile, to_pil

ZOOM = 4  # small images are written enlarged (nearest neighbour) to be seen


def _png(grid: np.ndarray, path: Path) -> Path:
    to_pil(grid.repeat(ZOOM, 0).repeat(ZOOM, 1)).save(path)
    return path


def plot_loss(history: list[dict[str, float]], path: Path) -> Path:
    fig, ax = figure(6, 4)
    ax.plot([h["step"] for h in history], [h["loss"] for h in history], linewidth=1)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("denoising loss (MSE)")
    ax.set_yscale("log")
    fig.suptitle("Training loss")
    return save(fig, path)


def write_report(out_dir: Path, *, history: list[dict[str, float]],
                 training_grids: dict[int, np.ndarray], evaluation: Evaluation,
                 prompts: list[str], per_prompt: int) -> list[Path]:
    paths = []
    if history:
        paths.append(plot_loss(history, out_dir / "loss.png"))
    for step, grid in sorted(training_grids.items()):
        paths.append(_png(grid, out_dir / f"samples-step{step:06d}.png"))
    for scale, arrays in evaluation.grids.items():
        paths.append(_png(tile(arrays, columns=per_prompt), out_dir / f"guidance-{scale}.png"))
    if evaluation.adherence:
        path = out_dir / "adherence.csv"
        scales = list(evaluation.adherence)
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["prompt", *[f"guidance {s}" for s in scales]])
            for prompt in prompts:
                writer.writerow([prompt, *[f"{evaluation.adherence[s].get(prompt, 0):.3f}"
                                           for s in scales]])
        paths.append(path)
    return paths


