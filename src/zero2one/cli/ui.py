"""``zero2one ui``: the MLflow UI on the workspace's store; ``zero2one tensorboard``."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from zero2one.cli.server import JOBS


def ui_command(host: str, port: int) -> list[str]:
    from zero2one import tracking

    # one worker: the UI serves one person, and four workers took four times the start-up
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri",
               tracking.tracking_uri(), "--host", host, "--port", str(port), "--workers", "1"]
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
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", JOBS)  # see server.JOBS
    run_until_stopped(ui_command(host, port))


def tensorboard(
    logdir: Annotated[str | None, typer.Option(
        help="Event files to show [WORKSPACE/tensorboard].", show_default=False)] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 6006,
) -> None:
    """Open TensorBoard on the event files of trains with track.tensorboard (Ctrl-C stops it)."""
    from pathlib import Path

    from zero2one import tracking
    from zero2one.errors import UserError, require

    require("tensorboard", "tensorboard")
    folder = Path(logdir) if logdir else tracking.workspace() / "tensorboard"
    if not folder.is_dir():
        raise UserError(f"no TensorBoard event files in {folder} yet; train a deep-learning "
                        "recipe with --set track.tensorboard=true first")
    typer.echo(f"TensorBoard for {folder} on http://{host}:{port} (Ctrl-C stops)", err=True)
    run_until_stopped([sys.executable, "-m", "tensorboard.main", "--logdir", str(folder),
                       "--host", host, "--port", str(port)])


def run_until_stopped(command: list[str]) -> None:
    """Run the MLflow server in a process group of its own and, whatever stops zero2one
    (Ctrl-C, SIGTERM from a supervisor, the server exiting), end the whole group: MLflow
    starts worker and job-runner processes that a signal to one process alone left behind."""
    import signal
    import subprocess

    # MLflow's background job runner (GenAI evaluation jobs) is not needed to browse runs
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    process = subprocess.Popen(command, env=env, start_new_session=True)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):  # also when started with SIGINT ignored
        signal.signal(sig, stop)
    try:
        code = process.wait()
    except KeyboardInterrupt:
        code = 0
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=10)
                os.killpg(process.pid, 0)  # anything of the group still alive?
            except (subprocess.TimeoutExpired, ProcessLookupError):
                continue
    if code:
        raise typer.Exit(code)
