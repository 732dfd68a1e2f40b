"""A fitted task's model directory as training saves it (metrics, the data's source, fingerprint
and versions in the manifest; the MLflow files and the model card beside it), and the run's
lineage record."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zero2one import portable, versions
from zero2one.artifacts import save_model
from zero2one.paths import workspace
from zero2one.task import Task, TaskData


def save_model_dir(task: Task, target: Path, metrics: dict[str, float],
                   data: TaskData) -> Path:
    """A fitted task's model directory, saved as :func:`train` saves it: the manifest holds
    the metrics and the data's source and fingerprint (:mod:`zero2one.testing` uses it)."""
    return save(task, target, metrics, data)


def save(task: Task, target: Path, metrics: dict[str, float], data: TaskData,
          lineage: dict[str, Any] | None = None,
          add: Callable[[Path], None] | None = None) -> Path:
    extra: dict[str, Any] = {"metrics": metrics, "data": {
        "source": data.source, **data.fingerprint,
        **({"versions": lineage} if lineage is not None else {})}}
    directory = save_model(task, target, extra=extra, add=add)
    profile = getattr(data, "profile", None) or {}
    portable.describe(directory, task, notes=profile.get("warnings", []))
    return directory


def lineage_tags(lineage: dict[str, Any]) -> dict[str, str]:
    """The searchable part of the lineage: the data's git commit and DVC hashes, and whether
    the run can be reproduced from them."""
    tags = {"zero2one.data.reproducible": "false" if versions.unreproducible(lineage)
            else "true"}
    if commit := (lineage.get("git") or {}).get("commit"):
        tags["zero2one.data.git_commit"] = commit
    md5 = [m for entry in lineage["data"] for d in entry.get("dvc", []) for m in d["md5"]]
    if md5:
        tags["zero2one.data.dvc_md5"] = ",".join(md5)[:_MAX_TAG]
    return tags


_MAX_TAG = 5000


def with_environment(lineage: dict[str, Any], model_dir: Path) -> dict[str, Any]:
    manifest = json.loads((model_dir / "manifest.json").read_text())
    return {**lineage, "libraries": manifest.get("libraries", {}),
            "platform": {"system": platform.platform(), "machine": platform.machine(),
                         "processor": platform.processor() or None}}




def default_out(name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = workspace() / "models" / f"{name}-{stamp}"
    n = 1
    while target.exists():  # two runs of one recipe within a second
        n += 1
        target = workspace() / "models" / f"{name}-{stamp}-{n}"
    return target


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, default=str) + "\n"
