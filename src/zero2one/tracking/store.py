"""Where the tracking store is and how it is opened: the embedded default is a SQLite store and
a file artifact store inside the workspace (``.zero2one/`` in the project — the working
directory, or the top of its git working tree — or ``$ZERO2ONE_HOME``);
``MLFLOW_TRACKING_URI`` points everything at a real MLflow server instead. The store's own
failures (down, locked, refusing credentials) become zero2one errors that say so.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from zero2one.errors import TrackingError, UserError, Zero2OneError
from zero2one.logs import quieted
from zero2one.paths import cache_home, is_embedded, workspace
from zero2one.tracking import sql

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

MANIFEST_TAG = "zero2one.manifest_sha256"
DATA_TAG = "zero2one.data.sha256"  # the fingerprint of the data a run read
# a model made from another by zero2one export / compress: the parent's pinned reference, how
PARENT_TAG = "zero2one.parent"
CONVERSION_TAG = "zero2one.conversion"


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
            _seed(workspace() / "mlflow.db")
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


def _seed(db: Path) -> None:
    """A new workspace's store begins as a copy of an empty store at MLflow's current schema,
    made once per MLflow version in the user's cache: MLflow would otherwise build it by running
    every schema migration it has (about a second, in each new workspace). Anything in the way
    leaves the store to MLflow, as before."""
    if db.exists():
        return
    import mlflow
    import sqlalchemy
    from mlflow.store.db import utils as db_utils

    template = cache_home() / "mlflow" / f"empty-store-{mlflow.__version__}.db"
    own = f".{os.getpid()}.tmp"
    try:
        if not template.exists():
            template.parent.mkdir(parents=True, exist_ok=True)
            made = template.with_name(template.name + own)
            engine = sqlalchemy.create_engine(f"sqlite:///{made}")
            try:
                with quieted("alembic", "mlflow"):
                    db_utils._initialize_tables(engine)
                os.replace(made, template)
            finally:
                engine.dispose()
                made.unlink(missing_ok=True)
        copy = db.with_name(db.name + own)
        shutil.copyfile(template, copy)
        try:
            os.link(copy, db)  # never over a store another process made meanwhile
        finally:
            copy.unlink()
    except (OSError, AttributeError, sqlalchemy.exc.SQLAlchemyError) as exc:
        log.debug("the store %s is left to MLflow to create: %s", db, exc)


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
    # the server went away while answering (a request in flight when it was killed)
    for sign in ("Connection broken", "Connection aborted", "RemoteDisconnected"):
        if sign in text:
            return Unreachable(f"the tracking store {uri} stopped answering mid-request "
                               "(connection broken); is the server running?")
    # SQLAlchemy's text starts with its own notes ("(raised as a result of ... autoflush)");
    # the database's own words are on the line of the DBAPI error
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    said = [line for line in lines if line.startswith("(sqlite3.") or "Error)" in line[:40]]
    detail = (said or lines or [type(exc).__name__])[0]
    if "database is locked" in detail:
        return TrackingError(f"the tracking store {uri} is locked by another process (waited "
                             "for it); try again when that process is done")
    return TrackingError(f"the tracking store {uri} failed: {detail[:300]}")


def read_only() -> sqlite3.Connection | None:
    """The embedded store, opened read-only without MLflow (see :mod:`zero2one.tracking.sql`)."""
    return sql.connect()


ASK_MLFLOW = object()  # what fast returns when MLflow must answer


def fast(query: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``query(db, *args, **kwargs)`` on the embedded store read without MLflow, or
    :data:`ASK_MLFLOW` when the store is not one :mod:`zero2one.tracking.sql` reads."""
    db = read_only()
    if db is None:
        return ASK_MLFLOW
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
