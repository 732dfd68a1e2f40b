"""Listings of runs, in the forms the CLI prints."""

from __future__ import annotations

import datetime as dt
from typing import Any

from zero2one.errors import UserError
from zero2one.tracking import sql, store
from zero2one.tracking.sql import MODEL_PATH, TASK_TAG


def list_runs(*, experiment: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    rows = store.fast(sql.list_runs, experiment=experiment, limit=limit)
    if rows is None:
        raise UserError(f"no experiment named {experiment!r} in {store.tracking_uri()}")
    if rows is not store.ASK_MLFLOW:
        return rows
    c = store.client()
    if experiment is not None:
        found = c.get_experiment_by_name(experiment)
        if found is None:
            raise UserError(f"no experiment named {experiment!r} in {store.tracking_uri()}")
        experiments = {found.experiment_id: found.name}
    else:
        experiments = {e.experiment_id: e.name for e in c.search_experiments()}
    if not experiments:
        return []
    runs = c.search_runs(list(experiments), order_by=["attributes.start_time DESC"],
                         max_results=limit)
    return [_run_dict(r, experiments.get(r.info.experiment_id, "")) for r in runs]


def get_run(run_id: str) -> dict[str, Any]:
    found = store.fast(sql.get_run, run_id)
    if found is None:
        raise UserError(f"no run {run_id!r} in {store.tracking_uri()}")
    if found is not store.ASK_MLFLOW:
        return found
    from mlflow.exceptions import MlflowException

    c = store.client()
    try:
        run = c.get_run(run_id)
    except MlflowException:
        raise UserError(f"no run {run_id!r} in {store.tracking_uri()}") from None
    experiment = c.get_experiment(run.info.experiment_id).name
    info = _run_dict(run, experiment)
    info["params"] = dict(sorted(run.data.params.items()))
    info["tags"] = {k: v for k, v in sorted(run.data.tags.items()) if not k.startswith("mlflow.")}
    info["artifacts"] = _artifact_paths(c, run_id)
    return info


def _artifact_paths(c: Any, run_id: str, path: str | None = None) -> list[str]:
    paths: list[str] = []
    for item in c.list_artifacts(run_id, path):
        if item.is_dir:
            paths.extend(_artifact_paths(c, run_id, item.path))
        else:
            paths.append(item.path)
    return paths


def _run_dict(run: Any, experiment: str) -> dict[str, Any]:
    start = run.info.start_time
    return {
        "run_id": run.info.run_id,
        "name": run.info.run_name,
        "experiment": experiment,
        "status": run.info.status,
        "start_time": dt.datetime.fromtimestamp(start / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        if start else None,
        "task": run.data.tags.get(TASK_TAG),
        "metrics": dict(sorted(run.data.metrics.items())),
        "model_uri": f"runs:/{run.info.run_id}/{MODEL_PATH}",
    }
