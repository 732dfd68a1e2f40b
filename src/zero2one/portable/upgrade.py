"""``zero2one models upgrade``: models saved before zero2one wrote MLflow files and model cards
gain them. The model is verified and loaded first; only files beside the manifest are added
(never the manifest or the weights, so a registered version keeps its pinned digest). A
version in a remote artifact store gets the files uploaded beside its copy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zero2one import tracking
from zero2one.errors import ModelRefError
from zero2one.portable import describe
from zero2one.refs import load, resolve
from zero2one.tracking.sql import local_path


@dataclass
class Upgraded:
    ref: str  # the model directory or models:/NAME/VERSION
    directory: Path  # where the files were written (a cache copy for a remote store)
    files: list[str]


def upgrade(target: str, version: str | None = None) -> list[Upgraded]:
    """A model directory, or a registered model: ``version`` (a number or ``latest``), or
    every version."""
    path = Path(target).expanduser()
    if path.is_dir():
        if version is not None:
            raise ModelRefError("--version is for registered models; a directory is one model")
        return [_upgrade(str(path), None)]
    versions = [v for v in tracking.model_versions(target)
                if version in (None, "latest") or v["version"] == version]
    if version == "latest":
        versions = versions[:1]  # newest first
    if not versions:
        raise ModelRefError(f"model {target!r} has no version {version!r}")
    return [_upgrade(f"models:/{target}/{v['version']}", v) for v in versions]


def _upgrade(ref: str, version: dict[str, str] | None) -> Upgraded:
    resolved = resolve(ref)
    assert resolved.path is not None
    task = load(resolved)  # every file checked against the manifest (and the registry's pin)
    written = describe(resolved.path, task)
    if version is not None and local_path(version["source"]) is None:  # a remote store
        tracking.add_artifacts(version["run_id"], written, tracking.MODEL_PATH)
    return Upgraded(ref, resolved.path, [f.name for f in written])
