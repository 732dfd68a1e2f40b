"""``zero2one ui``: the MLflow UI on the workspace's store."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer


def ui_command(host: str, port: int) -> list[str]:
    from zero2one import tracking

    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri",
               tracking.tracking_uri(), "--host", host, "--port", str(port)]
    if tracking.is_embedded():
        command += ["--default-artifact-root", (tracking.workspace() / "artifacts").as_uri()]
    return command


def ui(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 5000,
) -> None:
    """Open the MLflow UI on the tracking store (Ctrl-C stops it)."""
    from zero2one import tracking
    from zero2one.errors import UserError, require

    require("mlflow", "tabular")
    if tracking.is_embedded() and not (tracking.workspace() / "mlflow.db").exists():
        raise UserError(f"no tracking store at {tracking.workspace()} yet; train a recipe first")
    typer.echo(f"MLflow UI for {tracking.tracking_uri()} on http://{host}:{port} (Ctrl-C stops)",
               err=True)
    command = ui_command(host, port)
    sys.stderr.flush()
    # become the MLflow server, so that signals (Ctrl-C, SIGTERM from a supervisor) reach it
    os.execv(command[0], command)
