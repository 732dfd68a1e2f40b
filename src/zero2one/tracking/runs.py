"""Runs: opening and ending them (a run a dead command left open is marked failed by the next),
logging to them, and reading their tags and small artifacts back."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zero2one.errors import ModelRefError, TrackingError, UserError, Zero2OneError
from zero2one.paths import workspace
from zero2one.tracking import downloads, sql, store
from zero2one.tracking.sql import MODEL_PATH

log = logging.getLogger(__name__)

_MAX_PARAM = 6000  # MLflow's limit on a param value's length


@dataclass
class Run:
    """An open MLflow run; every call's time is added to ``io_seconds``."""

    run_id: str
    artifact_uri: str
    io_seconds: float = 0.0
    _client: Any = field(default=None, repr=False)

    @contextmanager
    def _timed(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.io_seconds += time.perf_counter() - start

    def log_params(self, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:_MAX_PARAM]) for k, v in params.items()]
        with self._timed():
            for i in range(0, len(items), 100):  # MLflow takes at most 100 params a batch
                self._client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        with self._timed():
            for i in range(0, len(items), 1000):
                self._client.log_batch(self.run_id, metrics=items[i : i + 1000])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        with self._timed():
            self._client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        with self._timed():
            self._client.log_artifact(self.run_id, str(path), artifact_path)

    def log_artifacts(self, directory: Path, artifact_path: str | None = None) -> None:
        with self._timed():
            self._client.log_artifacts(self.run_id, str(directory), artifact_path)

    @property
    def model_uri(self) -> str:
        return f"runs:/{self.run_id}/{MODEL_PATH}"

    @property
    def model_artifact_uri(self) -> str:
        return f"{self.artifact_uri.rstrip('/')}/{MODEL_PATH}"


@contextmanager
def start_run(experiment: str, *, run_name: str, tags: Mapping[str, str],
              run_id: str | None = None) -> Iterator[Run]:
    """Open a run (or reopen ``run_id``, the run of an interrupted fit); it ends FINISHED,
    FAILED on an unexpected error, and is deleted on a user error so that a mistake leaves no
    half-recorded run behind."""
    start = time.perf_counter()
    c = store.client()
    created = None
    if run_id is not None:
        try:
            created = c.get_run(run_id)
            c.update_run(run_id, status="RUNNING")
        except Exception:
            log.warning("cannot reopen run %s; starting a new one", run_id)
            created = None
    try:
        if created is None:
            created = c.create_run(store.experiment_id(experiment), run_name=run_name,
                                   tags=dict(tags))
    except Zero2OneError:
        raise
    except Exception as exc:
        raise TrackingError(f"cannot start a run in {store.tracking_uri()}: {exc}") from exc
    run = Run(created.info.run_id, created.info.artifact_uri, _client=c)
    ledger = _open_run(run.run_id)
    _close_abandoned(c, keep=run.run_id)
    run.io_seconds = time.perf_counter() - start
    try:
        yield run
    except UserError:
        if _quietly(c.set_terminated, run.run_id, "FAILED") and _quietly(c.delete_run,
                                                                          run.run_id):
            ledger.unlink(missing_ok=True)
        raise
    except BaseException as exc:
        # a store that does not answer is not asked again (another 15 s of retries)
        if not isinstance(exc, store.Unreachable) and _quietly(c.set_terminated, run.run_id,
                                                         "FAILED"):
            ledger.unlink(missing_ok=True)
        elif isinstance(exc, TrackingError):
            raise TrackingError(f"{exc}; run {run.run_id} is marked failed by the next run "
                                "started in this workspace once the store answers") from exc
        raise
    with run._timed():
        try:
            c.set_terminated(run.run_id, "FINISHED")
        except Exception as exc:
            raise TrackingError(f"the run {run.run_id} finished but {store.tracking_uri()} did not "
                                f"record it ({str(exc).splitlines()[0]}); the next command "
                                "marks it failed") from exc
    ledger.unlink(missing_ok=True)


# Runs this workspace opened and has not seen ended (the store was unreachable when the command
# ended, or the process was killed): the next run started here marks them FAILED, so no run
# stays "RUNNING" forever. One file per run: the tracking URI and the process id.
OPEN_RUNS = "open-runs"


def _open_run(run_id: str) -> Path:
    folder = workspace() / OPEN_RUNS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / run_id
    path.write_text(f"{store.tracking_uri()}\n{os.getpid()}\n")
    return path


def _quietly(call: Callable[..., Any], run_id: str, *args: Any) -> bool:
    """``call(run_id, *args)`` on the store while a command fails: a store that is down too
    is logged, and the command's own error stays the one raised."""
    try:
        call(run_id, *args)
    except Exception as exc:
        log.warning("could not end run %s in %s (%s); the next command will",
                    run_id, store.tracking_uri(), str(exc).splitlines()[0])
        return False
    return True


def _close_abandoned(c: Any, *, keep: str) -> None:
    """Mark FAILED the runs of this workspace and store that an earlier command could not end
    (its process is gone and the run still says RUNNING)."""
    folder = workspace() / OPEN_RUNS
    uri = store.tracking_uri()
    for path in folder.iterdir() if folder.is_dir() else []:
        if path.name == keep:
            continue
        try:
            recorded_uri, pid = path.read_text().split("\n")[:2]
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        if recorded_uri != uri or _alive(int(pid or 0)):
            continue
        try:
            status = c.get_run(path.name).info.status
            if status == "RUNNING":
                c.set_tag(path.name, "zero2one.abandoned", "true")
                c.set_terminated(path.name, "FAILED")
                log.warning("run %s was left running by a command that ended without "
                            "recording it; marked FAILED", path.name)
        except Exception:  # still unreachable, or the run is gone: try again next time
            if _gone(c, path.name):
                path.unlink(missing_ok=True)
            continue
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _gone(c: Any, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        c.get_run(run_id)
    except MlflowException as exc:
        return getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST"
    except Exception:
        return False
    return False


def run_artifact_uri(run_id: str, path: str) -> str:
    root = store.fast(sql.run_artifact_root, run_id)
    if root is not store.ASK_MLFLOW and root is not None:
        return f"{root.rstrip('/')}/{path}"
    from mlflow.exceptions import MlflowException

    try:
        root = store.client().get_run(run_id).info.artifact_uri
    except MlflowException:
        raise ModelRefError(f"no run {run_id!r} in {store.tracking_uri()}") from None
    return f"{root.rstrip('/')}/{path}"


def run_tags(run_id: str) -> dict[str, str]:
    tags = store.fast(sql.run_tags, run_id)
    if tags is not store.ASK_MLFLOW and tags is not None:
        return tags  # a miss: MLflow says the run is not there, below
    from mlflow.exceptions import MlflowException

    try:
        return dict(store.client().get_run(run_id).data.tags)
    except MlflowException:
        raise ModelRefError(f"no run {run_id!r} in {store.tracking_uri()}") from None

def read_artifact(run_id: str, path: str) -> str | None:
    """The text of a run's small artifact file (``recipe.yaml``, ``lineage.json``), or None
    when the run has no such file; a store that does not answer is a TrackingError."""
    import tempfile

    uri = run_artifact_uri(run_id, path)
    local = sql.local_path(uri)
    if local is not None:
        return local.read_text(encoding="utf-8") if local.is_file() else None
    folder = path.rpartition("/")[0] or None
    try:
        listed = {item.path for item in store.client().list_artifacts(run_id, folder)}
    except Exception as exc:
        raise TrackingError(f"cannot list the artifacts of run {run_id} in {store.tracking_uri()}: "
                            f"{str(exc).splitlines()[0]}") from exc
    if path not in listed:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        return downloads.fetch(uri, Path(tmp)).read_text(encoding="utf-8")


def add_artifacts(run_id: str, files: list[Path], artifact_path: str) -> None:
    """Upload ``files`` beside a (finished) run's artifacts at ``artifact_path``: for a
    remote artifact store, where a local copy was changed (a local store is the copy)."""
    c = store.client()
    for file in files:
        try:
            c.log_artifact(run_id, str(file), artifact_path)
        except Exception as exc:
            raise TrackingError(f"cannot add {file.name} to run {run_id} in "
                                f"{store.tracking_uri()}: {str(exc).splitlines()[0]}") from exc
