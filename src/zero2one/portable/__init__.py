"""Models that travel: beside every saved model directory, the files that make it an MLflow
model (:mod:`~zero2one.portable.mlmodel`) and a model card in Hugging Face's format
(:mod:`~zero2one.portable.card`), so that MLflow's own tools and a person who finds the
directory can use it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from zero2one.artifacts import MANIFEST
from zero2one.portable.card import CARD, write_card
from zero2one.portable.mlmodel import CODE_FILE, MLMODEL, write_mlmodel

if TYPE_CHECKING:
    from zero2one.task import Task


def describe(directory: Path, task: Task, *, notes: Sequence[str] = ()) -> list[Path]:
    """Write the MLflow files and the model card for the saved model in ``directory``
    (``notes``: what the data's profile warned of, for the card's limitations)."""
    manifest = json.loads((directory / MANIFEST).read_text())  # read once, for both
    return [*write_mlmodel(directory, task, manifest),
            write_card(directory, manifest, notes=notes, pipeline_tag=task.pipeline_tag)]


__all__ = ["CARD", "CODE_FILE", "MLMODEL", "describe", "write_card", "write_mlmodel"]
