"""``zero2one server start``: a team's shared MLflow tracking server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from zero2one.cli.output import console

app = typer.Typer(help="A shared tracking server for a team: runs, registry and artifacts "
                  "(MLflow's, on PostgreSQL).", no_args_is_help=True)

# MLflow's job runner (a huey consumer of five workers, and a runner process) executes MLflow's
# GenAI jobs, which zero2one does not use: off, it saves each start about 3 s of CPU and two
# processes' memory. MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true turns it on.
JOBS = "false"


@app.command("start")
def start(
    backend: Annotated[str | None, typer.Option(
        "--backend-store-uri", envvar="ZERO2ONE_SERVER_BACKEND", help="The database of runs "
        "and the registry: postgresql+psycopg://USER:PASSWORD@HOST:5432/DB for a team; "
        "default: SQLite in the workspace (one machine).", show_default=False)] = None,
    artifacts: Annotated[Path | None, typer.Option(
        "--artifacts", help="Where the server keeps models and plots; clients reach them "
        "through the server (proxied), never directly [WORKSPACE/server-artifacts].",
        show_default=False)] = None,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every "
                                      "interface, behind TLS and auth).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 5000,
    workers: Annotated[int, typer.Option(min=1, help="Server processes.")] = 2,
    auth: Annotated[bool, typer.Option(
        "--auth", help="MLflow's basic-auth app: users and permissions; clients set "
        "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD.")] = False,
    allowed_hosts: Annotated[str | None, typer.Option(
        help="Host headers the server accepts (comma-separated), when clients reach it by "
        "a name other than HOST.", show_default=False)] = None,
) -> None:
    """Run MLflow's tracking server (proxied artifacts) until interrupted; point every
    zero2one command at it with MLFLOW_TRACKING_URI=http://HOST:PORT or --tracking-uri."""
    from zero2one import tracking
    from zero2one.doctor import DATABASES, answers, without_password
    from zero2one.errors import UserError, require

    store = backend or f"sqlite:///{tracking.workspace().resolve() / 'server.db'}"
    if not store.startswith(DATABASES):
        raise UserError(f"--backend-store-uri {without_password(store)}: give a database URL "
                        "(postgresql+psycopg://USER:PASSWORD@HOST:5432/DB, sqlite:///FILE)")
    if store.startswith("sqlite:"):
        tracking.workspace().mkdir(parents=True, exist_ok=True)
    elif (why := answers(store)) is not None:
        raise UserError(f"the database {without_password(store)} does not answer: {why}")
    folder = (artifacts or tracking.workspace() / "server-artifacts").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store,
               "--serve-artifacts", "--artifacts-destination", str(folder), "--host", host,
               "--port", str(port), "--workers", str(workers)]
    env = dict(os.environ)
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", JOBS)
    if auth:
        require("flask_wtf", "server")  # what MLflow's basic-auth app needs
        command += ["--app-name", "basic-auth"]
        env.update(_auth_settings(store, tracking.workspace()))
    if allowed_hosts:
        command += ["--allowed-hosts", allowed_hosts]
    console(stderr=True).print(
        f"tracking server on http://{host}:{port} (runs and registry in "
        f"{without_password(store)}, artifacts in {folder}); point zero2one at it with:\n"
        f"  export MLFLOW_TRACKING_URI=http://{host}:{port}", highlight=False)
    try:
        code = subprocess.run(command, check=False, env=env).returncode
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)


def _auth_settings(store: str, home: Path) -> dict[str, str]:
    """MLflow's basic-auth app, configured: its users in the store beside the runs (one
    database to back up; its own tables), new users may read everything, and a key for its
    CSRF protection; MLFLOW_AUTH_CONFIG_PATH and MLFLOW_FLASK_SERVER_SECRET_KEY still
    override. The first start needs MLFLOW_AUTH_ADMIN_PASSWORD: MLflow ships none."""
    from zero2one.errors import UserError

    settings = {"MLFLOW_FLASK_SERVER_SECRET_KEY": os.environ.get(
        "MLFLOW_FLASK_SERVER_SECRET_KEY") or _secret(home)}
    if os.environ.get("MLFLOW_AUTH_CONFIG_PATH"):
        return settings
    if not os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD") and not _has_users(store):
        raise UserError("--auth: the first start creates the user 'admin'; set "
                        "MLFLOW_AUTH_ADMIN_PASSWORD to its password (MLflow ships none)")
    config = home / "server-auth.ini"  # it holds the store's URL, password included
    config.unlink(missing_ok=True)
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("[mlflow]\ndefault_permission = READ\n"
                  f"database_uri = {store.replace('%', '%%')}\nadmin_username = admin\n"
                  "authorization_function = mlflow.server.auth:authenticate_request_basic_auth"
                  "\n")
    return {**settings, "MLFLOW_AUTH_CONFIG_PATH": str(config)}


def _has_users(store: str) -> bool:
    import sqlalchemy as sa

    engine = sa.create_engine(store)
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table("users"):
                return False
            return bool(connection.execute(sa.text("SELECT COUNT(*) FROM users")).scalar())
    except sa.exc.SQLAlchemyError:
        return False
    finally:
        engine.dispose()


def _secret(home: Path) -> str:
    """The workspace's server key (made once, readable by its owner only); set
    MLFLOW_FLASK_SERVER_SECRET_KEY instead to share one between servers."""
    import secrets

    path = home / "server-secret"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return path.read_text().strip()
