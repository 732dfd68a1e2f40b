"""Model directories: a ``manifest.json`` that describes the model plus weight files.

The manifest records the task, the recipe, the input schema, class labels, library versions,
metrics and the sha256 of every file. Saving writes into a temporary sibling directory and renames
it into place, so a crash never leaves half a model. Loading verifies every hash first and only
then hands the directory to the task, whose loaders never unpickle.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zero2one.errors import ArtifactError, IntegrityError

if TYPE_CHECKING:
    from zero2one.task import Task

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def library_versions(names: list[str]) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ["zero2one", *names]:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def save_model(
    task: Task,
    path: str | Path,
    *,
    extra: dict[str, Any] | None = None,
    add: Callable[[Path], None] | None = None,
    overwrite: bool = False,
) -> Path:
    """Save a fitted task as a model directory at ``path``, atomically; returns the path.

    ``extra`` adds manifest fields; ``add`` may write more files (a report) into the directory
    before it is hashed.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise ArtifactError(f"{path} already exists; choose another directory or remove it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        fields = task.save(tmp)
        if add is not None:
            add(tmp)
        libraries = library_versions(fields.pop("libraries", []))
        manifest = {
            "format_version": FORMAT_VERSION,
            "task": task.name,
            "name": task.config.name,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "recipe": task.config.model_dump(mode="json", warnings=False),
            **fields,
            **(extra or {}),
            "libraries": libraries,
            "files": {
                rel: sha256_file(tmp / rel) for rel in _list_files(tmp) if rel != MANIFEST
            },
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
        _fsync_tree(tmp)
        if path.exists():  # overwrite: move the old one aside only once the new one is complete
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    task.manifest = manifest
    return path


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of a model directory, checked for shape but not for hashes."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"{path} is not a model directory")
    file = path / MANIFEST
    if not file.is_file():
        raise ArtifactError(f"{path} is not a zero2one model: {MANIFEST} is missing")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{file}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise ArtifactError(f"{file}: not a zero2one manifest (no 'files' table)")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{file}: manifest format {manifest.get('format_version')!r} is not supported "
            f"(this zero2one reads format {FORMAT_VERSION})"
        )
    if not isinstance(manifest.get("task"), str):
        raise ArtifactError(f"{file}: the manifest names no task")
    return manifest


def verify(path: str | Path) -> dict[str, Any]:
    """Check every file against the manifest's sha256; returns the manifest."""
    path = Path(path)
    manifest = read_manifest(path)
    root = path.resolve()
    for rel, expected in manifest["files"].items():
        file = (path / rel).resolve()
        if not file.is_relative_to(root) or rel == MANIFEST:
            raise ArtifactError(f"{path}: the manifest lists a file outside the model: {rel!r}")
        if not file.is_file():
            raise ArtifactError(f"{path}: {rel} is listed in the manifest but missing")
        actual = sha256_file(file)
        if actual != expected:
            raise IntegrityError(
                f"{path / rel}: sha256 {actual[:12]}… does not match the manifest's "
                f"{str(expected)[:12]}…; the file was modified or corrupted, refusing to load it"
            )
    return manifest


def manifest_digest(path: str | Path) -> str:
    """sha256 of ``manifest.json``; recorded in the registry to pin the whole directory."""
    return sha256_file(Path(path) / MANIFEST)


def _list_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _fsync_tree(root: Path) -> None:
    for file in root.rglob("*"):
        if file.is_file():
            with file.open("rb") as fh:
                os.fsync(fh.fileno())
