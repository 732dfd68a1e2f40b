"""What a task may offer beyond its core, one class per capability. :class:`zero2one.task.Task`
has them all, each with defaults that refuse or do nothing, so a task overrides only what it
offers; the server, CLI and deployment code ask the task and never name it."""

from __future__ import annotations

import glob
import hashlib
import json
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from zero2one import distributed
from zero2one.errors import UserError
from zero2one.paths import workspace
from zero2one.progress import Reporter
from zero2one.recipe import BaseRecipe
from zero2one.task.types import (
    PATH_PREFIXES,
    BuiltinModel,
    DeployFiles,
    EngineDeployment,
    PyfuncSchema,
    check_options,
)

if TYPE_CHECKING:
    import pandas as pd

    from zero2one.convert import CompressOptions, Conversion
    from zero2one.refs import Resolved
    from zero2one.serving.settings import ServeSettings


class Capability:
    """What every capability may read of the task it is part of."""

    name: ClassVar[str]
    config: BaseRecipe
    manifest: dict[str, Any]  # TaskCore's: set on save and load
    ref: Resolved | None  # ... and the reference the model came from
    serve_requirements: ClassVar[tuple[str, ...]]  # Serving declares it; Deployment reads it
    builtin_models: ClassVar[Mapping[str, BuiltinModel]]  # Pretrained's; Deployment reads it

    if TYPE_CHECKING:  # the task's own (TaskCore's), for a capability that builds a task
        def __init__(self, config: BaseRecipe) -> None: ...


class TrainingRuns(Capability):
    """Training as :func:`zero2one.train` runs it: checkpoints to resume from, the data's
    versions, how far a retrain may move a metric."""

    # set by zero2one.train before fit: continue from the last checkpoint (tasks that write
    # checkpoints honour it), and the tracking run the fit belongs to
    resume: bool = False
    run_id: str | None = None
    # how far a retrain of a recorded run (``zero2one reproduce``: same data, recipe and seed)
    # may move each metric — absolute up to 1, relative beyond: 0 where training is
    # deterministic; floating-point kernels that differ between machines need a margin
    reproduce_tolerance: ClassVar[float] = 0.0

    def checkpoint_dir(self) -> Path:
        """Where a fit of this recipe keeps its checkpoints: per recipe, so a changed recipe
        never resumes another recipe's checkpoint (tracking and registration do not count)."""
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

    def clear_checkpoints(self, directory: Path) -> None:
        """Training is over, nothing is left to resume: remove the checkpoints (under
        ``--nproc`` once every rank is done, by rank 0)."""
        distributed.barrier()
        if distributed.is_main():
            shutil.rmtree(directory, ignore_errors=True)

    def data_paths(self) -> list[Path]:
        """The local files and folders the recipe's data comes from, whose git and DVC
        versions a tracked run records: every ``data.source`` / ``data.*_source`` that names a
        path — ``PATH``, ``folder:PATH``, ``npz:PATH`` or a glob's matches. Data sets that ship
        with a library (``sklearn:NAME``) are versioned by its version, not here."""
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


class DataParallel(Capability):
    """``zero2one train --nproc N`` (see :mod:`zero2one.distributed`)."""

    # fit shares each global batch over the ranks, and only rank 0 writes checkpoints
    data_parallel: ClassVar[bool] = False

    @classmethod
    def check_data_parallel(cls, config: Any, world: int) -> None:
        """Refuse, before any process starts, a ``--nproc`` run this recipe cannot make (the
        task does not train data-parallel, or ``world`` processes cannot share its batch)."""
        if not cls.data_parallel:
            raise UserError(f"{cls.name} recipes do not train data-parallel; leave out --nproc")


class RowPrediction(Capability):
    """Scoring a table's rows: ``zero2one predict --engine dask`` spreads a table larger than
    memory over a cluster, one partition per call."""

    row_inputs: ClassVar[bool] = False

    def predict_rows(self, frame: pd.DataFrame, **options: Any) -> pd.DataFrame:
        """One partition of a table, scored (tasks with ``row_inputs``); runs on workers."""
        raise UserError(f"{self.name} models do not score the rows of tables")

    def check_row_options(self, options: dict[str, Any]) -> None:
        """Refuse, before any work, options :meth:`predict_rows` does not take."""
        check_options(self, options, allowed=())


class Pretrained(Capability):
    """Models zero2one did not train: ``builtin:NAME``, a ``.gguf`` file, a Hugging Face
    directory, ..."""

    builtin_models: ClassVar[Mapping[str, BuiltinModel]] = {}

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


class Convertible(Capability):
    """``zero2one export`` and ``zero2one compress`` (:mod:`zero2one.convert`): a new model,
    made from this one and checked against it."""

    export_formats: ClassVar[tuple[str, ...]] = ()
    compress_methods: ClassVar[tuple[str, ...]] = ()

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


class Serving(Capability):
    """``zero2one serve``: the server asks the task for an adapter and routes, and imports
    nothing else of it."""

    # the decoding engines `zero2one serve --engine` may pick for this task's models (the first
    # is the default; serving_adapter builds the one in settings.engine)
    engines: ClassVar[tuple[str, ...]] = ("zero2one",)
    # distributions a served model of this task needs beyond the server's own
    serve_requirements: ClassVar[tuple[str, ...]] = ()

    def serving_adapter(self, settings: ServeSettings, name: str) -> Any:
        """What answers HTTP requests for this loaded model (see
        :class:`zero2one.serving.adapter.Adapter`)."""
        raise UserError(f"{self.name} models cannot be served yet")

    @classmethod
    def routes(cls) -> list[Any]:
        """FastAPI routers (and plain Starlette routes, tried first) the server includes for a
        model of this task; health, metrics, admin and ``GET /v1/models`` (unless a route
        here answers it) come with every server."""
        return []


class Deployment(Capability):
    """``zero2one deploy``: what the image installs and carries, how Kubernetes sizes it, and
    other servers than zero2one's."""

    # torch from the CPU wheel index in images (a plain requirement pulls a CUDA build)
    needs_torch: ClassVar[bool] = False
    # other servers ``zero2one deploy --engine`` can render for this task's models
    serving_engines: ClassVar[tuple[str, ...]] = ()

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


class MLflowModel(Capability):
    """Every zero2one model is also an MLflow model (``python_function`` flavor: a table in, a
    table out), so ``mlflow.pyfunc.load_model``, ``mlflow models serve`` and MLflow's
    deployment plug-ins can use it, and carries a model card; :mod:`zero2one.portable` writes
    the files."""

    # the Hugging Face hub's pipeline tag for what the models do (their cards' front matter)
    pipeline_tag: ClassVar[str | None] = None

    def pyfunc_schema(self) -> PyfuncSchema | None:
        """The signature and input example of this fitted or loaded model; None: the MLmodel
        has neither, and ``pyfunc_predict`` takes what it is given."""
        return None

    def pyfunc_predict(self, frame: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
        """A table of inputs (the schema's columns), predicted: a table, one row per input
        row. The default hands the table to :meth:`predict` (tasks whose inputs are rows)."""
        import pandas as pd

        if params:
            raise UserError(f"{self.name} models take no MLflow params; got "
                            f"{', '.join(sorted(params))}")
        out = self.predict(frame)  # type: ignore[attr-defined]
        return out if isinstance(out, pd.DataFrame) else pd.DataFrame({"prediction": list(out)})
