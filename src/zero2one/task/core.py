"""The core of the contract: what every task is — its recipe, data, fit, held-out metrics,
report, predictions and model directory. The capabilities a task may add are in
:mod:`zero2one.task.capabilities`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from pydantic import ValidationError

from zero2one.data import read_frame
from zero2one.errors import ArtifactError, require
from zero2one.progress import Reporter
from zero2one.recipe import BaseRecipe, format_validation_error
from zero2one.task.types import Searched, TaskData, check_options

if TYPE_CHECKING:
    import pandas as pd

    from zero2one.refs import Resolved


class TaskCore(ABC):
    """Learned state lives in attributes ending in ``_``."""

    name: ClassVar[str]
    config_model: ClassVar[type[BaseRecipe]]
    # the pip extra that installs what the task needs, and the modules it checks for first
    extra: ClassVar[str] = "all"
    requires: ClassVar[tuple[str, ...]] = ()
    # set when the model is saved or loaded: the manifest, and the reference it came from
    manifest: dict[str, Any]
    ref: Resolved | None = None

    def __init__(self, config: BaseRecipe) -> None:
        self.config = config

    @classmethod
    def check_requirements(cls) -> None:
        """Raise :class:`MissingExtraError` with the ``pip install`` line if a module is
        missing; called before the task trains or loads anything."""
        for module in cls.requires:
            require(module, cls.extra)

    # ---- data and training ------------------------------------------------------------------

    @abstractmethod
    def load_data(self) -> TaskData:
        """Read, validate and split the recipe's data; user errors raise before any run starts.
        The result carries its ``source`` and ``fingerprint`` (:class:`TaskData`)."""

    @abstractmethod
    def fit(self, data: Any, *, reporter: Reporter) -> Self:
        """Learn from ``data`` (as returned by :meth:`load_data`); returns ``self``."""

    @abstractmethod
    def evaluate(self, data: Any) -> dict[str, float]:
        """Held-out metrics, names without prefixes (``accuracy``, ``rmse``, ...); works on a
        loaded model too, given data from :meth:`load_data`."""

    def report(self, data: Any, out_dir: Path) -> list[Path]:
        """Write plots and tables about the fitted model into ``out_dir``; returns their paths."""
        return []

    def searched(self) -> Searched | None:
        """After a fit with a hyperparameter search: its best parameters, best cross-validated
        score and candidates (recorded with the run, shown by ``zero2one train``); None when
        the fit searched nothing."""
        return None

    # ---- prediction -------------------------------------------------------------------------

    @abstractmethod
    def predict(self, inputs: Any, /) -> Any:
        """Predictions for new inputs, in the task family's forms (see each task's docstring:
        rows -> a frame, images -> top-k classes, prompts -> texts)."""

    def predict_file(self, path: Path, *, reporter: Reporter | None = None,
                     **options: Any) -> pd.DataFrame:
        """``zero2one predict --input PATH``: the file (or folder) scored, one row per input;
        tasks whose predictions take long report progress to ``reporter``. Options a task does
        not take are refused with a one-line error."""
        check_options(self, options, allowed=())
        return self.predict(read_frame(Path(path)))  # type: ignore[no-any-return]

    # ---- the model directory ----------------------------------------------------------------

    @abstractmethod
    def save(self, path: Path) -> dict[str, Any]:
        """Write weight files into the existing directory ``path``; returns manifest fields."""

    @classmethod
    @abstractmethod
    def load(cls, path: Path, manifest: dict[str, Any], *, trust: tuple[str, ...] = ()) -> Self:
        """Build a fitted task back from a verified model directory."""

    @classmethod
    def recipe_from(cls, manifest: dict[str, Any], path: Path) -> Any:
        """The saved recipe, validated again (nested sections are models, not dicts)."""
        try:
            return cls.config_model.model_validate(manifest["recipe"])
        except KeyError:
            raise ArtifactError(f"{path}: the manifest holds no recipe") from None
        except ValidationError as exc:
            raise ArtifactError(f"{path}: the saved recipe does not validate with this "
                                f"zero2one: {format_validation_error(exc)}") from None
