"""Prompt adherence and diversity of generated images.

Adherence: for every class prompt, generate images at each guidance scale and ask a judge — an
image classifier that never saw the generator's training images — which class each one shows;
the share it names correctly. The default judge is zero2one's own image-classification task
trained on the held-out images (``data.holdout``). Diversity: the mean pairwise RMS distance
between the images of one prompt (pixels in 0-1), beside the same measure on real images.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zero2one.api import load
from zero2one.catalog import get_task, validate
from zero2one.errors import DataError, UserError
from zero2one.progress import NullReporter
from zero2one.tasks.imagegen.images import to_pil

log = logging.getLogger(__name__)


@dataclass
class Judge:
    predict: Any  # list of PIL images -> list of class indices (into the prompts)
    accuracy: float | None  # on held-out real images (holdout judge)
    kind: str


@dataclass
class Evaluation:
    metrics: dict[str, float]
    adherence: dict[str, dict[str, float]] = field(default_factory=dict)  # scale -> prompt -> share
    grids: dict[str, np.ndarray] = field(default_factory=dict)  # scale -> (prompts × images)


def holdout_judge(x: np.ndarray, labels: np.ndarray, prompts: list[str], *, seed: int,
                  epochs: int) -> Judge:
    """zero2one's image classifier (small-cnn) trained on the held-out images."""

    counts = np.bincount(labels, minlength=len(prompts))
    if counts.min() < 5:
        raise DataError(f"the held-out share has {counts.min()} image(s) of "
                        f"{prompts[int(counts.argmin())]!r}; raise data.holdout or set "
                        "eval.judge to null")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "holdout.npz"
        np.savez(path, x=x, y=labels, class_names=np.asarray(prompts))
        config = validate({
            "task": "image-classification", "name": "holdout-judge", "seed": seed,
            "data": {"source": f"npz:{path}", "val_size": 0.15, "test_size": 0.2},
            "model": {"arch": "small-cnn"},
            "train": {"epochs": epochs, "batch_size": 32, "lr": 0.003, "scheduler": "cosine",
                      "early_stopping": {"patience": 10, "metric": "val_accuracy"},
                      "augment": {"crop_padding": 1}},
            "track": {"enabled": False}})

        task: Any = get_task("image-classification")(config)
        data = task.load_data()
        task.fit(data, reporter=NullReporter())
        accuracy = task.evaluate(data)["accuracy"]
    index = {p: i for i, p in enumerate(prompts)}

    def predict(images: list[Any]) -> list[int]:
        return [index[row[0]["label"]] for row in task.predict(images, top_k=1)]

    return Judge(predict, float(accuracy), "holdout")


def model_judge(ref: str, prompts: list[str], names: dict[str, str]) -> Judge:
    """A trained image classifier by reference; its classes must be the prompts or the data's
    class names."""

    model: Any = load(ref)
    classes = [str(c) for c in getattr(model, "class_names_", [])]
    by_label = {}
    for i, prompt in enumerate(prompts):
        for label in (prompt, names.get(prompt)):
            if label in classes:
                by_label[label] = i
    if len(by_label) != len(prompts):
        missing = [p for p in prompts if p not in by_label and names.get(p) not in by_label]
        raise UserError(f"eval.judge {ref}: its classes ({', '.join(classes[:12])}) do not "
                        f"cover the prompts {missing[:3]}")

    def predict(images: list[Any]) -> list[int]:
        return [by_label.get(row[0]["label"], -1) for row in model.predict(images, top_k=1)]

    return Judge(predict, None, ref)


def diversity(images: np.ndarray) -> float:
    """Mean pairwise RMS pixel distance (0-1 scale) among (N, S, S, C) uint8 images."""
    flat = images.reshape(len(images), -1).astype(np.float64) / 255
    if len(flat) < 2:
        return 0.0
    squares = (flat**2).sum(1)
    distances = np.sqrt(np.maximum(squares[:, None] + squares[None, :] - 2 * flat @ flat.T, 0))
    upper = distances[np.triu_indices(len(flat), 1)]
    return float(upper.mean() / np.sqrt(flat.shape[1]))


def evaluate(generate: Any, prompts: list[str], judge: Judge | None, *, scales: list[float],
             per_prompt: int, default_scale: float, seed: int,
             real: dict[str, np.ndarray] | None = None) -> Evaluation:
    """``generate(prompts, scale, seeds)`` -> (N, S, S, C) uint8 images, one per prompt entry."""
    metrics: dict[str, float] = {}
    result = Evaluation(metrics)
    all_scales = list(dict.fromkeys([*scales, default_scale]))
    best = (-1.0, 0.0)
    for scale in all_scales:
        wanted = [p for p in prompts for _ in range(per_prompt)]
        arrays = generate(wanted, scale, [seed + i for i in range(per_prompt)] * len(prompts))
        key = f"{scale:g}"
        result.grids[key] = arrays
        if scale == default_scale:
            metrics["diversity"] = float(np.mean([
                diversity(arrays[i * per_prompt: (i + 1) * per_prompt])
                for i in range(len(prompts))]))
        if judge is None:
            continue

        predicted = np.asarray(judge.predict([to_pil(a) for a in arrays]))
        expected = np.repeat(np.arange(len(prompts)), per_prompt)
        hits = predicted == expected
        result.adherence[key] = {p: float(hits[i * per_prompt: (i + 1) * per_prompt].mean())
                                 for i, p in enumerate(prompts)}
        if scale in scales:
            metrics[f"adherence_g{key}"] = float(hits.mean())
            best = max(best, (float(hits.mean()), -scale))
    if judge is not None:
        metrics["adherence_best"] = best[0]
        metrics["best_guidance_scale"] = -best[1]
        if judge.accuracy is not None:
            metrics["judge_accuracy"] = judge.accuracy
    if real:
        metrics["real_diversity"] = float(np.mean([diversity(v) for v in real.values()
                                                   if len(v) > 1]))
    return result
