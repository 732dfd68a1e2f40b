"""Experiment tracking and the model registry, on MLflow (the only package that imports mlflow).

- :mod:`~zero2one.tracking.store`: where the store is (the embedded SQLite store in the
  workspace, or ``MLFLOW_TRACKING_URI``), the client, and the store's failures as zero2one errors;
- :mod:`~zero2one.tracking.runs`: opening, logging to and ending runs, their tags and artifacts;
- :mod:`~zero2one.tracking.registry`: registered models, versions and aliases;
- :mod:`~zero2one.tracking.downloads`: model directories from the artifact store, cached;
- :mod:`~zero2one.tracking.queries`: listings of runs;
- :mod:`~zero2one.tracking.sql`: read-only queries on the embedded store without MLflow.

The names below are the package's interface; callers import them from here.
"""

from zero2one.paths import is_embedded, workspace
from zero2one.tracking.downloads import download
from zero2one.tracking.queries import get_run, list_runs
from zero2one.tracking.registry import (
    list_models,
    model_version,
    model_versions,
    register_model,
    set_alias,
)
from zero2one.tracking.runs import (
    OPEN_RUNS,
    Run,
    add_artifacts,
    read_artifact,
    run_artifact_uri,
    run_tags,
    start_run,
)
from zero2one.tracking.sql import MODEL_PATH, TASK_TAG
from zero2one.tracking.store import (
    CONVERSION_TAG,
    DATA_TAG,
    MANIFEST_TAG,
    PARENT_TAG,
    Unreachable,
    client,
    experiment_id,
    store_error,
    tracking_uri,
)

__all__ = [
    "CONVERSION_TAG", "DATA_TAG", "MANIFEST_TAG", "MODEL_PATH", "OPEN_RUNS", "PARENT_TAG",
    "TASK_TAG", "Run", "Unreachable", "add_artifacts", "client", "download", "experiment_id",
    "get_run", "is_embedded", "list_models", "list_runs", "model_version", "model_versions",
    "read_artifact", "register_model", "run_artifact_uri", "run_tags", "set_alias",
    "start_run", "store_error", "tracking_uri", "workspace",
]
