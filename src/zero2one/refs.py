"""Model references: one string form accepted everywhere a model is named.

    models:/NAME/VERSION     a registered version (VERSION may be ``latest``)
    models:/NAME@ALIAS       the version an alias points to (champion, ...)
    runs:/RUN_ID/model       the model a run logged
    PATH                     a zero2one model directory
    builtin:NAME             a model that ships inside an installed package (declared by a task)
    anything a task claims   e.g. a ``.gguf`` file, a transformers directory, ``hf:ORG/NAME``

:func:`resolve` turns any of them into one :class:`Resolved`, which names the task that loads
it. Registry and run references carry the manifest sha256 recorded when the model was logged, so
a model directory swapped or edited in the artifact store is refused (:func:`check_pinned`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from zero2one import tracking
from zero2one.artifacts import manifest_digest, read_manifest, verify
from zero2one.catalog import all_tasks, builtin_models, get_task
from zero2one.errors import IntegrityError, ModelRefError
from zero2one.paths import expand

if TYPE_CHECKING:
    from zero2one.task import Task

Kind = Literal["registry", "run", "directory", "builtin", "pretrained"]

_MODELS = re.compile(
    r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+|latest)|@(?P<alias>[\w.-]+))$")
_RUNS = re.compile(r"^runs:/(?P<run>[0-9a-fA-F]{8,64})/(?P<path>[\w./-]+)$")


@dataclass(frozen=True)
class Resolved:
    """A model reference, resolved: where the model is and which task loads it."""

    ref: str  # as the user wrote it
    task: str  # the task that loads it
    kind: Kind
    path: Path | None  # the local directory (or file); None for a hub id left to the task
    name: str | None = None  # registered model name
    version: str | None = None  # registered version
    expected_manifest: str | None = None  # sha256 of manifest.json recorded at logging time

    @property
    def has_manifest(self) -> bool:
        """A zero2one model directory (verified by hashes on load)."""
        return self.kind in ("registry", "run", "directory")

    @property
    def display_name(self) -> str:
        """The registered name, the builtin name, or the file or directory's name."""
        if self.name:
            return self.name
        if self.kind == "builtin":
            return self.ref.removeprefix("builtin:")
        if self.path is not None and self.kind == "pretrained":
            return self.path.name
        return self.ref.rstrip("/").rsplit("/", 1)[-1] or self.ref

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path) if self.path is not None else None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Resolved:
        path = data.get("path")
        return cls(**{**data, "path": Path(path) if path is not None else None})


def resolve(ref: str | Path) -> Resolved:
    """Turn a model reference into a :class:`Resolved` (downloading the model if the store is
    remote). Raises :class:`ModelRefError` with the accepted forms when nothing matches."""
    text = str(ref)
    if text.startswith("models:/"):
        return _registry(text)
    if text.startswith("runs:/"):
        return _run(text)
    if text.startswith("builtin:"):
        return _builtin(text)
    path = expand(text)
    if path.is_dir() and (path / "manifest.json").exists():
        return _directory(text, path, "directory")
    for cls in all_tasks():
        if cls.claims(text):
            local = path if path.exists() else None
            return Resolved(text, cls.name, "pretrained", local)
    if path.is_dir():
        raise ModelRefError(f"{text} is not a model directory: it has no manifest.json, and no "
                            "task recognises it")
    if path.exists():
        raise ModelRefError(f"{text} is a file that no task loads; a model reference names a "
                            "model directory")
    raise ModelRefError(
        f"model {text!r} not found: not a directory, nor models:/NAME/VERSION, "
        "models:/NAME@ALIAS, models:/NAME/latest, runs:/RUN_ID/model, builtin:NAME or "
        "hf:ORG/NAME"
    )


def _registry(text: str) -> Resolved:
    match = _MODELS.match(text)
    if match is None:
        raise ModelRefError(f"bad model reference {text!r}; use models:/NAME/VERSION, "
                            "models:/NAME@ALIAS or models:/NAME/latest")
    mv = tracking.model_version(match["name"], version=match["version"], alias=match["alias"])
    expected = (mv.tags or {}).get(tracking.MANIFEST_TAG)
    path = tracking.download(mv.source, expected_manifest=expected)
    return _directory(text, path, "registry", name=match["name"], version=str(mv.version),
                      expected=expected)


def _run(text: str) -> Resolved:
    match = _RUNS.match(text)
    if match is None:
        raise ModelRefError(f"bad run reference {text!r}; use runs:/RUN_ID/model")
    tags = tracking.run_tags(match["run"])
    expected = tags.get(tracking.MANIFEST_TAG) if match["path"] == tracking.MODEL_PATH else None
    path = tracking.download(tracking.run_artifact_uri(match["run"], match["path"]),
                             expected_manifest=expected)
    return _directory(text, path, "run", expected=expected)


def _builtin(text: str) -> Resolved:
    name = text.removeprefix("builtin:")
    known = builtin_models()
    if name not in known:
        listed = ", ".join(sorted(known)) or "none declared"
        raise ModelRefError(f"unknown built-in model {name!r}; built-in models: {listed}")
    cls, model = known[name]
    if model.locate is None:
        raise ModelRefError(f"builtin:{name} is listed by {cls.name} but cannot be loaded")
    return Resolved(text, cls.name, "builtin", model.locate(model))


def _directory(text: str, path: Path, kind: Kind, *, name: str | None = None,
               version: str | None = None, expected: str | None = None) -> Resolved:
    task = str(read_manifest(path)["task"])
    return Resolved(text, task, kind, path, name, version, expected)


def check_pinned(resolved: Resolved) -> None:
    """Refuse a registry or run model whose manifest changed since it was logged."""
    if resolved.expected_manifest is None or resolved.path is None:
        return
    read_manifest(resolved.path)
    actual = manifest_digest(resolved.path)
    if actual != resolved.expected_manifest:
        raise IntegrityError(
            f"{resolved.ref}: manifest.json changed since the model was logged "
            f"(sha256 {actual[:12]}…, recorded {resolved.expected_manifest[:12]}…); "
            "refusing to load it"
        )


# ---- loading ---------------------------------------------------------------------------------


def load(ref: str | Path | Resolved, *, trust: Iterable[str] = ()) -> Task:
    """Load a model by reference (see :mod:`zero2one.refs`): a zero2one model directory is
    verified file by file against its manifest first; ``builtin:`` and the references a task
    claims (``.gguf``, ...) load through that task. A :class:`~zero2one.refs.Resolved` is loaded
    without resolving it again."""
    resolved = ref if isinstance(ref, Resolved) else resolve(ref)
    if resolved.has_manifest:
        assert resolved.path is not None
        check_pinned(resolved)
        model = load_model(resolved.path, trust=tuple(trust))  # checks the task's requirements
    else:
        cls = get_task(resolved.task)
        cls.check_requirements()
        model = cls.from_pretrained(resolved)
    model.ref = resolved
    return model


def load_model(path: str | Path, *, trust: tuple[str, ...] = ()) -> Task:
    """Verify and load a model directory through its task's loader."""
    path = Path(path)
    manifest = verify(path)
    task_cls = get_task(manifest["task"])
    task_cls.check_requirements()
    model = task_cls.load(path, manifest, trust=tuple(trust))
    model.manifest = manifest
    return model
