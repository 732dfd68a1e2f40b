"""The contract every task honours (see ``tests/test_contract.py``, which checks all of them).

A task object is built from its validated recipe, learns with :meth:`Task.fit`, and then predicts,
evaluates and saves itself. :meth:`Task.load` builds one back from a model directory whose hashes
:mod:`zero2one.artifacts` has already verified.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Self

from zero2one.progress import Reporter
from zero2one.recipe import BaseRecipe


class Task(ABC):
    """Base class of all tasks; learned state lives in attributes ending in ``_``."""

    name: ClassVar[str]
    config_model: ClassVar[type[BaseRecipe]]
    # set by zero2one.train before fit: continue from the last checkpoint (tasks that write
    # checkpoints honour it), and the tracking run the fit belongs to
    resume: bool = False
    run_id: str | None = None

    def __init__(self, config: BaseRecipe) -> None:
        self.config = config

    def checkpoint_dir(self) -> Path:
        """Where a fit of this recipe keeps its checkpoints: per recipe, so a changed recipe
        never resumes another recipe's checkpoint (tracking and registration do not count)."""
        import hashlib
        import json

        from zero2one.tracking import workspace

        recipe = self.config.model_dump(mode="json", exclude={"track", "register_as"})
        digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
        return workspace() / "checkpoints" / f"{self.config.name}-{digest}"

    def mark_run(self, directory: Path) -> None:
        """Leave the tracking run id beside the checkpoints, for :meth:`interrupted_run`."""
        if self.run_id:
            (directory / "run_id").write_text(self.run_id)

    def interrupted_run(self) -> str | None:
        """The run id an interrupted fit of this recipe was logging to, if it left one."""
        marker = self.checkpoint_dir() / "run_id"
        return marker.read_text().strip() or None if marker.exists() else None

    @abstractmethod
    def load_data(self) -> Any:
        """Read, validate and split the recipe's data; user errors raise before any run starts."""

    @abstractmethod
    def fit(self, data: Any, *, reporter: Reporter) -> Self:
        """Learn from ``data`` (as returned by :meth:`load_data`); returns ``self``."""

    @abstractmethod
    def evaluate(self, data: Any) -> dict[str, float]:
        """Held-out metrics, names without prefixes (``accuracy``, ``rmse``, ...)."""

    def report(self, data: Any, out_dir: Path) -> list[Path]:
        """Write plots and tables about the fitted model into ``out_dir``; returns their paths."""
        return []

    @abstractmethod
    def predict(self, frame: Any) -> Any:
        """Predictions for new inputs, in the task's output form."""

    @abstractmethod
    def save(self, path: Path) -> dict[str, Any]:
        """Write weight files into the existing directory ``path``; returns manifest fields."""

    @classmethod
    @abstractmethod
    def load(cls, path: Path, manifest: dict[str, Any], *, trust: tuple[str, ...] = ()) -> Self:
        """Build a fitted task back from a verified model directory."""
