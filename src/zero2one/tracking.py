"""Experiment tracking and the model registry, on MLflow (the only module that imports mlflow).

The embedded default is a SQLite store and a file artifact store inside the workspace
(``.zero2one/`` in the project — the working directory, or the top of its git working tree —
or ``$ZERO2ONE_HOME``); ``MLFLOW_TRACKING_URI`` points
everything at a real MLflow server instead.
"""

from __future__ import annotations

import functools
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from zero2one import tracking_sql
from zero2one.artifacts import MANIFEST, sha256_file
from zero2one.errors import ModelRefError, TrackingError, UserError, Zero2OneError
from zero2one.paths import is_embedded, workspace
from zero2one.tracking_sql import MODEL_PATH, TASK_TAG

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

MANIFEST_TAG = "zero2one.manifest_sha256"
DATA_TAG = "zero2one.data.sha256"  # the fingerprint of the data a run read
# a model made from another by zero2one export / compress: the parent's pinned reference, how
PARENT_TAG = "zero2one.parent"
CONVERSION_TAG = "zero2one.conversion"
_MAX_PARAM = 6000  # MLflow's limit on a param value's length


def tracking_uri() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{workspace() / 'mlflow.db'}"


_clients: dict[str, MlflowClient] = {}


def client() -> MlflowClient:
    """An MLflow client on :func:`tracking_uri`, creating the embedded store on first use."""
    uri = tracking_uri()
    if uri not in _clients:
        import mlflow

        for name in ("mlflow", "alembic"):  # after the import, which sets mlflow's own level
            logging.getLogger(name).setLevel(logging.WARNING)
        # each retry of an unreachable server is a warning; the error at the end says it
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
        # a failing SQL store (full disk, locked) is logged there with its traceback, then
        # raised: zero2one's one-line TrackingError says it
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)

        # no mlflow.set_tracking_uri(): it exports MLFLOW_TRACKING_URI, which would make the
        # embedded store look like a user-chosen server to is_embedded()
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        # a tracking server makes MLflow print "View run ... at: URL" on stdout, where
        # `--json` output goes; the run id and model reference are in zero2one's own output
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        # a server that is down is retried for about 15 s (1+2+4+8: a database restart),
        # not MLflow's 4 minutes; the variables still override
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "4")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        if is_embedded():
            workspace().mkdir(parents=True, exist_ok=True)
        try:  # an SQL store checks its schema here: a locked or full database fails now
            raw = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        except Exception as exc:
            error = store_error(exc, action="open it")
            if error is None:
                raise
            raise error from None
        guarded = _Guarded(raw)
        _clients[uri] = cast("MlflowClient", guarded)
    return _clients[uri]


class _Guarded:
    """An MlflowClient whose failures of the store itself — unreachable, erroring, refusing
    the credentials — are zero2one errors that say so; what the store answers (no such run,
    no such version) stays MLflow's, for the callers that look for it."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except Exception as exc:
                error = store_error(exc, action=name.replace("_", " "))
                if error is None:
                    raise
                raise error from exc

        return call


class Unreachable(TrackingError):
    """The tracking server does not answer at all (retried already)."""


_STORE_FAILURES = ("INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "ENDPOINT_NOT_FOUND",
                   "REQUEST_LIMIT_EXCEEDED")


def store_error(exc: Exception, *, action: str = "do that") -> Zero2OneError | None:
    """The zero2one error for a failure of the tracking store (None: an answer of the store,
    such as "no such run", which callers handle)."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, Zero2OneError):
        return None
    uri = tracking_uri()
    code = getattr(exc, "error_code", None) if isinstance(exc, MlflowException) else None
    if code == "UNAUTHENTICATED":
        return UserError(f"{uri} refused the credentials (HTTP 401): set "
                         "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to a user of "
                         "the server")
    if code == "PERMISSION_DENIED":
        user = os.environ.get("MLFLOW_TRACKING_USERNAME", "this user")
        return UserError(f"{uri}: {user} may not {action} (HTTP 403); an admin of the "
                         "server grants permissions")
    if code is not None and code not in _STORE_FAILURES:
        return None
    text = str(exc)
    for sign, what in (("Connection refused", "connection refused"),
                       ("timed out", "timed out"), ("Max retries exceeded", "no answer"),
                       ("Name or service not known", "unknown host")):
        if sign in text:
            return Unreachable(f"the tracking store {uri} does not answer ({what}, "
                               "retried for about 15 s); is the server running?")
    # SQLAlchemy's text starts with its own notes ("(raised as a result of ... autoflush)");
    # the database's own words are on the line of the DBAPI error
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    said = [line for line in lines if line.startswith("(sqlite3.") or "Error)" in line[:40]]
    detail = (said or lines or [type(exc).__name__])[0]
    if "database is locked" in detail:
        return TrackingError(f"the tracking store {uri} is locked by another process (waited "
                             "for it); try again when that process is done")
    return TrackingError(f"the tracking store {uri} failed: {detail[:300]}")


def _read_only() -> sqlite3.Connection | None:
    """The embedded store, opened read-only without MLflow (see :mod:`tracking_sql`)."""
    return tracking_sql.connect()


_MLFLOW = object()  # what _fast returns when MLflow must answer


def _fast(query: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``query(db, *args, **kwargs)`` on the embedded store read without MLflow, or
    :data:`_MLFLOW` when the store is not one :mod:`tracking_sql` reads."""
    db = _read_only()
    if db is None:
        return _MLFLOW
    with closing(db):
        return query(db, *args, **kwargs)


def experiment_id(name: str) -> str:
    """The id of experiment ``name``, created on first use (artifacts inside the workspace)."""
    c = client()
    experiment = c.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            c.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    location = (workspace() / "artifacts").as_uri() if is_embedded() else None
    return c.create_experiment(name, artifact_location=location)


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
    c = client()
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
            created = c.create_run(experiment_id(experiment), run_name=run_name,
                                   tags=dict(tags))
    except Zero2OneError:
        raise
    except Exception as exc:
        raise TrackingError(f"cannot start a run in {tracking_uri()}: {exc}") from exc
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
        if not isinstance(exc, Unreachable) and _quietly(c.set_terminated, run.run_id,
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
            raise TrackingError(f"the run {run.run_id} finished but {tracking_uri()} did not "
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
    path.write_text(f"{tracking_uri()}\n{os.getpid()}\n")
    return path


def _quietly(call: Callable[..., Any], run_id: str, *args: Any) -> bool:
    """``call(run_id, *args)`` on the store while a command fails: a store that is down too
    is logged, and the command's own error stays the one raised."""
    try:
        call(run_id, *args)
    except Exception as exc:
        log.warning("could not end run %s in %s (%s); the next command will",
                    run_id, tracking_uri(), str(exc).splitlines()[0])
        return False
    return True


def _close_abandoned(c: Any, *, keep: str) -> None:
    """Mark FAILED the runs of this workspace and store that an earlier command could not end
    (its process is gone and the run still says RUNNING)."""
    folder = workspace() / OPEN_RUNS
    uri = tracking_uri()
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


def register_model(name: str, run: Run, *, manifest_sha256: str,
                   tags: Mapping[str, str] | None = None) -> str:
    """A new version of registered model ``name`` from the run's model; returns the version.
    ``tags`` are added to the version's (a converted model's parent, ...)."""
    from mlflow.exceptions import MlflowException

    with run._timed():
        c = run._client
        created = False
        try:
            c.get_registered_model(name)
        except MlflowException:
            c.create_registered_model(name)
            created = True
        try:
            version = c.create_model_version(
                name,
                source=run.model_artifact_uri,
                run_id=run.run_id,
                tags={**(tags or {}), MANIFEST_TAG: manifest_sha256},
            )
        except Exception:
            if created:  # no registered model without versions is left behind
                try:
                    c.delete_registered_model(name)
                except Exception as exc:
                    log.warning("registered model %s has no versions and could not be removed "
                                "(%s)", name, str(exc).splitlines()[0])
            raise
    return str(version.version)


def set_alias(name: str, alias: str, version: str) -> str:
    """Point ``alias`` at ``version`` (a number, or ``latest``); returns the version."""
    probe = _read_only()  # a store tracking_sql reads: the alias is written without MLflow
    if probe is not None:
        probe.close()
        done = tracking_sql.set_alias(name, alias, version)
        if done == "":
            raise ModelRefError(f"model {name!r} has no version {version!r}")
        if done is not None:
            return done
    from mlflow.exceptions import MlflowException

    c = client()
    if version == "latest":
        versions = [int(v["version"]) for v in model_versions(name)]
        version = str(max(versions))
    try:
        c.get_model_version(name, version)
    except MlflowException:
        raise ModelRefError(f"model {name!r} has no version {version!r}") from None
    c.set_registered_model_alias(name, alias, version)
    return version


def model_version(name: str, *, version: str | None = None, alias: str | None = None) -> Any:
    """A registered model version by number, by ``latest`` (the highest number) or by alias."""
    if version == "latest":
        numbers = [int(v["version"]) for v in model_versions(name)]
        if not numbers:
            known = ", ".join(m["name"] for m in list_models()) or "none yet"
            raise ModelRefError(f"model {name!r} has no versions in {tracking_uri()} "
                                f"(registered models: {known})")
        version = str(max(numbers))
    found = _fast(tracking_sql.model_version, name, version=version, alias=alias)
    if found is not _MLFLOW and found is not None:
        return found  # a miss: MLflow says what is missing, in the message below
    from mlflow.exceptions import MlflowException

    c = client()
    try:
        if alias is not None:
            return c.get_model_version_by_alias(name, alias)
        return c.get_model_version(name, str(version))
    except MlflowException:
        what = f"alias {alias!r}" if alias is not None else f"version {version!r}"
        known = ", ".join(m["name"] for m in list_models()) or "none yet"
        raise ModelRefError(
            f"model {name!r} has no {what} in {tracking_uri()} (registered models: {known})"
        ) from None


def run_artifact_uri(run_id: str, path: str) -> str:
    root = _fast(tracking_sql.run_artifact_root, run_id)
    if root is not _MLFLOW and root is not None:
        return f"{root.rstrip('/')}/{path}"
    from mlflow.exceptions import MlflowException

    try:
        root = client().get_run(run_id).info.artifact_uri
    except MlflowException:
        raise ModelRefError(f"no run {run_id!r} in {tracking_uri()}") from None
    return f"{root.rstrip('/')}/{path}"


def download(uri: str, *, expected_manifest: str | None = None) -> Path:
    """A local directory with the artifacts at ``uri``: the directory itself for a local
    artifact store, else a copy in the workspace's cache. A model whose manifest digest is
    known (``expected_manifest``, as the registry and runs record it) is downloaded once and
    reused by every later command and server worker while its manifest still has that digest
    (loading verifies every file against it); anything else is fetched afresh. Downloads land
    in a temporary folder renamed into place, so concurrent processes never see half a copy."""
    import hashlib
    import shutil
    import tempfile

    local = tracking_sql.local_path(uri)
    if local is not None:  # a local artifact store: the directory itself, no MLflow import
        if not local.exists():
            raise ModelRefError(f"{uri}: the artifact store has no such directory")
        return local

    cache = workspace() / "cache"
    key = hashlib.sha256(uri.encode()).hexdigest()[:16]
    def cached(target: Path) -> Path | None:
        found = next(target.glob(f"*/{MANIFEST}"), None) if target.is_dir() else None
        return found.parent if found is not None and sha256_file(found) == expected_manifest \
            else None

    if expected_manifest:
        target = cache / f"{key}-{expected_manifest[:16]}"
        if (hit := cached(target)) is not None:
            return hit
    else:
        target = cache / key
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=cache))
    try:
        fetched = _fetch(uri, staging)
        inside = fetched.relative_to(staging)
        if expected_manifest is None or cached(target) is None:
            shutil.rmtree(target, ignore_errors=True)  # stale, or a copy of something else
        try:
            staging.rename(target)
        except OSError:  # another process put the same version there first: use that one
            shutil.rmtree(staging, ignore_errors=True)
        return target / inside
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def read_artifact(run_id: str, path: str) -> str | None:
    """The text of a run's small artifact file (``recipe.yaml``, ``lineage.json``), or None
    when the run has no such file; a store that does not answer is a TrackingError."""
    import tempfile

    uri = run_artifact_uri(run_id, path)
    local = tracking_sql.local_path(uri)
    if local is not None:
        return local.read_text(encoding="utf-8") if local.is_file() else None
    folder = path.rpartition("/")[0] or None
    try:
        listed = {item.path for item in client().list_artifacts(run_id, folder)}
    except Exception as exc:
        raise TrackingError(f"cannot list the artifacts of run {run_id} in {tracking_uri()}: "
                            f"{str(exc).splitlines()[0]}") from exc
    if path not in listed:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        return _fetch(uri, Path(tmp)).read_text(encoding="utf-8")


def _fetch(uri: str, directory: Path) -> Path:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return Path(mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=str(directory), tracking_uri=tracking_uri()))
    except (MlflowException, OSError) as exc:
        raise ModelRefError(f"cannot fetch {uri}: {str(exc).splitlines()[0]}") from None


def run_tags(run_id: str) -> dict[str, str]:
    tags = _fast(tracking_sql.run_tags, run_id)
    if tags is not _MLFLOW and tags is not None:
        return tags  # a miss: MLflow says the run is not there, below
    from mlflow.exceptions import MlflowException

    try:
        return dict(client().get_run(run_id).data.tags)
    except MlflowException:
        raise ModelRefError(f"no run {run_id!r} in {tracking_uri()}") from None


def list_runs(*, experiment: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    rows = _fast(tracking_sql.list_runs, experiment=experiment, limit=limit)
    if rows is None:
        raise UserError(f"no experiment named {experiment!r} in {tracking_uri()}")
    if rows is not _MLFLOW:
        return rows
    c = client()
    if experiment is not None:
        found = c.get_experiment_by_name(experiment)
        if found is None:
            raise UserError(f"no experiment named {experiment!r} in {tracking_uri()}")
        experiments = {found.experiment_id: found.name}
    else:
        experiments = {e.experiment_id: e.name for e in c.search_experiments()}
    if not experiments:
        return []
    runs = c.search_runs(list(experiments), order_by=["attributes.start_time DESC"],
                         max_results=limit)
    return [_run_dict(r, experiments.get(r.info.experiment_id, "")) for r in runs]


def get_run(run_id: str) -> dict[str, Any]:
    found = _fast(tracking_sql.get_run, run_id)
    if found is None:
        raise UserError(f"no run {run_id!r} in {tracking_uri()}")
    if found is not _MLFLOW:
        return found
    from mlflow.exceptions import MlflowException

    c = client()
    try:
        run = c.get_run(run_id)
    except MlflowException:
        raise UserError(f"no run {run_id!r} in {tracking_uri()}") from None
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
    import datetime as dt

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


def list_models() -> list[dict[str, Any]]:
    models = _fast(tracking_sql.list_models)
    if models is not _MLFLOW:
        return models
    c = client()
    models = []
    for m in c.search_registered_models():
        versions = c.search_model_versions(f"name='{m.name}'")
        models.append({
            "name": m.name,
            "latest_version": max((int(v.version) for v in versions), default=None),
            "versions": len(versions),
            "aliases": dict(m.aliases or {}),
        })
    return sorted(models, key=lambda m: m["name"])


def model_versions(name: str) -> list[dict[str, Any]]:
    found = _fast(tracking_sql.model_versions, name)
    if found is None:
        raise ModelRefError(f"no registered model named {name!r} in {tracking_uri()}")
    if found is not _MLFLOW:
        return found
    from mlflow.exceptions import MlflowException

    c = client()
    try:
        registered = c.get_registered_model(name)
    except MlflowException:
        raise ModelRefError(f"no registered model named {name!r} in {tracking_uri()}") from None
    by_version: dict[str, list[str]] = {}
    for alias, version in (registered.aliases or {}).items():
        by_version.setdefault(str(version), []).append(alias)
    versions = c.search_model_versions(f"name='{name}'")
    return [
        {
            "version": str(v.version),
            "aliases": sorted(by_version.get(str(v.version), [])),
            "run_id": v.run_id,
            "created": v.creation_timestamp,
            "source": v.source,
            "parent": (v.tags or {}).get(PARENT_TAG),
            "conversion": (v.tags or {}).get(CONVERSION_TAG),
        }
        for v in sorted(versions, key=lambda v: int(v.version), reverse=True)
    ]
