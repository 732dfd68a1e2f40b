"""Read-only queries on the embedded tracking store, for commands that only look.

Importing MLflow and opening its store takes about 2.5 s on these machines, most of a
``zero2one runs list``. The embedded store is a SQLite file whose tables (``runs``,
``latest_metrics``, ``params``, ``tags``, ``experiments``, ``registered_models``,
``model_versions``, ``model_version_tags``, ``registered_model_aliases``) these functions read
directly, in the forms :mod:`zero2one.tracking` returns. Anything else — a tracking server, a
store that does not exist yet, a schema without these tables or columns — returns None from
:func:`connect`, and MLflow answers as before. Writes go through MLflow, with one exception:
pointing an alias at a version (:func:`set_alias`, ``zero2one models promote``), a single row
that MLflow's own store merges on its primary key — 3 s through MLflow, 0.3 s here.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from zero2one.paths import is_embedded, workspace

TASK_TAG = "zero2one.task"  # the run tag naming the task that trained it
MODEL_PATH = "model"  # artifact path of the model directory inside a run

_COLUMNS = {
    "runs": {"run_uuid", "name", "status", "start_time", "experiment_id", "lifecycle_stage",
             "artifact_uri"},
    "experiments": {"experiment_id", "name", "lifecycle_stage"},
    "latest_metrics": {"run_uuid", "key", "value"},
    "params": {"run_uuid", "key", "value"},
    "tags": {"run_uuid", "key", "value"},
    "registered_models": {"name"},
    "model_versions": {"name", "version", "source", "run_id", "current_stage",
                       "creation_time"},
    "model_version_tags": {"name", "version", "key", "value"},
    "registered_model_aliases": {"name", "alias", "version"},
}


_CHECKED: set[Path] = set()  # stores whose schema has the tables and columns read here


def connect() -> sqlite3.Connection | None:
    """A read-only connection to the embedded store, or None when MLflow must answer."""
    path = workspace() / "mlflow.db"
    if not is_embedded() or not path.is_file():
        return None
    try:
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5)
        if path not in _CHECKED:
            for table, wanted in _COLUMNS.items():
                have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                if not wanted <= have:
                    db.close()
                    return None
            _CHECKED.add(path)  # migrations add columns, never these: a yes stays a yes
    except sqlite3.Error:
        return None
    return db


def local_path(uri: str) -> Path | None:
    """The directory a ``file:`` URI (or plain path) names; None for remote stores."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" and uri:
        return Path(uri)
    return None


def list_runs(db: sqlite3.Connection, *, experiment: str | None,
              limit: int) -> list[dict[str, Any]] | None:
    """None when ``experiment`` does not exist (the caller says so in its words)."""
    where, args = "e.lifecycle_stage = 'active' AND r.lifecycle_stage = 'active'", []
    if experiment is not None:
        if db.execute("SELECT 1 FROM experiments WHERE name = ?", (experiment,)).fetchone() is None:
            return None
        where += " AND e.name = ?"
        args.append(experiment)
    rows = db.execute(
        "SELECT r.run_uuid, r.name, r.status, r.start_time, e.name FROM runs r "
        f"JOIN experiments e ON e.experiment_id = r.experiment_id WHERE {where} "
        "ORDER BY r.start_time DESC LIMIT ?", (*args, limit)).fetchall()
    return [_run(db, *row) for row in rows]


def get_run(db: sqlite3.Connection, run_id: str) -> dict[str, Any] | None:
    row = db.execute(
        "SELECT r.run_uuid, r.name, r.status, r.start_time, e.name, r.artifact_uri FROM runs r "
        "JOIN experiments e ON e.experiment_id = r.experiment_id WHERE r.run_uuid = ? "
        "AND r.lifecycle_stage = 'active'", (run_id,)).fetchone()
    if row is None:
        return None
    info = _run(db, *row[:5])
    info["params"] = dict(sorted(db.execute(
        "SELECT key, value FROM params WHERE run_uuid = ?", (run_id,)).fetchall()))
    info["tags"] = {k: v for k, v in sorted((run_tags(db, run_id) or {}).items())
                    if not k.startswith("mlflow.")}
    root = local_path(row[5] or "")
    info["artifacts"] = (sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                                if p.is_file()) if root is not None and root.is_dir() else [])
    return info


def run_tags(db: sqlite3.Connection, run_id: str) -> dict[str, str] | None:
    """None when there is no such run."""
    if run_artifact_root(db, run_id) is None:
        return None
    return dict(db.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (run_id,)))


def run_artifact_root(db: sqlite3.Connection, run_id: str) -> str | None:
    row = db.execute("SELECT artifact_uri FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()
    return None if row is None else str(row[0])


def _run(db: sqlite3.Connection, run_id: str, name: str, status: str, start: int | None,
         experiment: str) -> dict[str, Any]:
    task = db.execute("SELECT value FROM tags WHERE run_uuid = ? AND key = ?",
                      (run_id, TASK_TAG)).fetchone()
    metrics = dict(sorted(db.execute(
        "SELECT key, value FROM latest_metrics WHERE run_uuid = ?", (run_id,)).fetchall()))
    return {
        "run_id": run_id, "name": name, "experiment": experiment, "status": status,
        "start_time": dt.datetime.fromtimestamp(start / 1000, dt.UTC).strftime(
            "%Y-%m-%d %H:%M:%S") if start else None,
        "task": task[0] if task else None, "metrics": metrics,
        "model_uri": f"runs:/{run_id}/{MODEL_PATH}",
    }


_LIVE = "current_stage IS NULL OR current_stage != 'Deleted_Internal'"


def list_models(db: sqlite3.Connection) -> list[dict[str, Any]]:
    models = []
    for (name,) in db.execute("SELECT name FROM registered_models ORDER BY name").fetchall():
        versions = [int(v) for (v,) in db.execute(
            f"SELECT version FROM model_versions WHERE name = ? AND ({_LIVE})", (name,))]
        aliases = dict(db.execute(
            "SELECT alias, version FROM registered_model_aliases WHERE name = ?", (name,)))
        models.append({"name": name, "latest_version": max(versions, default=None),
                       "versions": len(versions),
                       "aliases": aliases})  # version numbers, as MLflow gives them
    return models


@dataclass
class Version:
    """The fields of an MLflow ModelVersion that zero2one reads."""

    name: str
    version: str
    source: str
    run_id: str | None
    created: int | None
    tags: dict[str, str] = field(default_factory=dict)


def model_versions(db: sqlite3.Connection, name: str) -> list[dict[str, Any]] | None:
    """None when no model has that name."""
    if db.execute("SELECT 1 FROM registered_models WHERE name = ?", (name,)).fetchone() is None:
        return None
    by_version: dict[str, list[str]] = {}
    for alias, version in db.execute(
            "SELECT alias, version FROM registered_model_aliases WHERE name = ?", (name,)):
        by_version.setdefault(str(version), []).append(alias)
    rows = db.execute(
        f"SELECT version, run_id, creation_time, source FROM model_versions WHERE name = ? "
        f"AND ({_LIVE}) ORDER BY version DESC", (name,)).fetchall()
    tags: dict[tuple[str, str], str] = {
        (str(v), key): value for v, key, value in db.execute(
            "SELECT version, key, value FROM model_version_tags WHERE name = ? AND key IN "
            "('zero2one.parent', 'zero2one.conversion')", (name,))}
    return [{"version": str(v), "aliases": sorted(by_version.get(str(v), [])), "run_id": run,
             "created": created, "source": source,
             "parent": tags.get((str(v), "zero2one.parent")),
             "conversion": tags.get((str(v), "zero2one.conversion"))}
            for v, run, created, source in rows]


def model_version(db: sqlite3.Connection, name: str, *, version: str | None = None,
                  alias: str | None = None) -> Version | None:
    if alias is not None:
        row = db.execute("SELECT version FROM registered_model_aliases WHERE name = ? AND "
                         "alias = ?", (name, alias)).fetchone()
        if row is None:
            return None
        version = str(row[0])
    found = db.execute(
        f"SELECT name, version, source, run_id, creation_time FROM model_versions WHERE "
        f"name = ? AND version = ? AND ({_LIVE})", (name, int(version or 0))).fetchone()
    if found is None:
        return None
    tags = dict(db.execute("SELECT key, value FROM model_version_tags WHERE name = ? AND "
                           "version = ?", (name, int(found[1]))))
    return Version(found[0], str(found[1]), found[2], found[3], found[4], tags)


# the alias table as MLflow 3 writes it: one row per (workspace, name, alias)
_ALIAS_COLUMNS = {"registered_model_aliases": {"workspace", "name", "alias", "version"},
                  "model_versions": {"workspace", "name", "version", "current_stage"}}


def set_alias(name: str, alias: str, version: str) -> str | None:
    """Point ``alias`` at ``version`` (a number or ``latest``) in the embedded store, as
    MLflow's ``set_registered_model_alias`` does (an upsert of its row, after checking the
    version exists), in one transaction; returns the version, ``""`` when the model has no
    such version, None when MLflow must do it (another store or schema)."""
    path = workspace() / "mlflow.db"
    if not is_embedded() or not path.is_file():
        return None
    try:
        db = sqlite3.connect(path, timeout=5, isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        for table, wanted in _ALIAS_COLUMNS.items():
            if not wanted <= {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
                return None
        db.execute("BEGIN IMMEDIATE")
        if version == "latest":
            row = db.execute(f"SELECT MAX(version) FROM model_versions WHERE name = ? AND "
                             f"({_LIVE})", (name,)).fetchone()
            version = "" if row[0] is None else str(row[0])
        found = db.execute(f"SELECT workspace FROM model_versions WHERE name = ? AND "
                           f"version = ? AND ({_LIVE})",
                           (name, int(version) if version.isascii() and version.isdigit()
                            else -1)).fetchone()
        if found is None:
            db.execute("ROLLBACK")
            return ""
        db.execute("INSERT INTO registered_model_aliases (workspace, name, alias, version) "
                   "VALUES (?, ?, ?, ?) ON CONFLICT (workspace, name, alias) DO UPDATE SET "
                   "version = excluded.version", (found[0], name, alias, int(version)))
        db.execute("COMMIT")
        return version
    except sqlite3.Error:
        if db.in_transaction:
            db.execute("ROLLBACK")
        return None
    finally:
        db.close()
