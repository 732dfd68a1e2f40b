"""``zero2one``: the command-line entry point.

User errors print one line on stderr and exit with code 2 (``--debug`` shows the traceback);
unexpected errors exit with code 1.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from typing import Annotated

import typer

from zero2one.catalog import commands
from zero2one.cli import (
    convert,
    data,
    deploy,
    doctor,
    feedback,
    models,
    moderate,
    monitor,
    predict,
    recipe,
    runs,
    serve,
    server,
    train,
    ui,
)
from zero2one.machine import GC_THRESHOLDS
from zero2one.version import __version__

app = typer.Typer(
    name="zero2one",
    help="From data to a served, monitored model: train, track, register and predict.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("train")(train.train)
app.command("predict")(predict.predict)
app.command("doctor")(doctor.doctor)
app.command("serve")(serve.command())
app.command("ui")(ui.ui)
app.command("tensorboard")(ui.tensorboard)
app.command("export")(convert.export)
app.command("compress")(convert.compress)
app.command("moderate")(moderate.moderate)
app.command("monitor")(monitor.monitor)
app.command("reproduce")(data.reproduce)
app.add_typer(runs.app, name="runs")
app.add_typer(models.app, name="models")
app.add_typer(recipe.app, name="recipe")
app.add_typer(deploy.app, name="deploy")
app.add_typer(feedback.app, name="feedback")
app.add_typer(server.app, name="server")
app.add_typer(data.app, name="data")


def _add_task_commands() -> None:
    """Commands that task packages declare (entry points ``zero2one.commands``)."""
    groups = {g.name: g.typer_instance for g in app.registered_groups}
    taken = {c.name for c in app.registered_commands} | set(groups)
    for name, command in commands().items():
        if isinstance(command, typer.Typer) and name in groups:  # more commands for a group
            _merge(groups[name], command, name)
        elif name in taken:
            raise RuntimeError(f"a task package declares the command {name!r}, which zero2one "
                               "already has")
        elif isinstance(command, typer.Typer):  # a command group
            app.add_typer(command, name=name)
        else:
            app.command(name)(command)


def _merge(group: typer.Typer | None, more: typer.Typer, name: str) -> None:
    """Add a task package's subcommands to zero2one's group of the same name, once: a second
    copy of this module (run as ``python -m zero2one.cli.main``, then imported by name) finds
    them there already."""
    assert group is not None
    commands = [c for c in more.registered_commands
                if all(c is not had for had in group.registered_commands)]
    groups = [g for g in more.registered_groups
              if all(g is not had for had in group.registered_groups)]
    clash = _names(group) & ({c.name for c in commands} | {g.name for g in groups})
    if clash:
        raise RuntimeError(f"a task package declares the command '{name} {min(clash)}', which "
                           "zero2one already has")
    group.registered_commands.extend(commands)
    group.registered_groups.extend(groups)


def _names(group: typer.Typer) -> set[str]:
    return {c.name for c in group.registered_commands if c.name} | {
        g.name for g in group.registered_groups if g.name}


_add_task_commands()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"zero2one {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    tracking_uri: Annotated[str | None, typer.Option(
        "--tracking-uri", help="The tracking store and registry for this command: a shared "
        "MLflow server (http://HOST:PORT), a database URL, ...; default: MLFLOW_TRACKING_URI, "
        "else the embedded store in ./.zero2one.", show_default=False)] = None,
) -> None:
    """From data to a served, monitored model: train, track, register and predict."""
    if tracking_uri:  # what every part reads (and processes this one starts inherit)
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    level = logging.DEBUG if debug else logging.WARNING
    before = list(logging.getLogger().handlers)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for made in logging.getLogger().handlers:
        if made not in before:  # the handler made here keeps to the chosen level
            made.setLevel(level)
    _notices(debug)


class _Notices(logging.StreamHandler):  # type: ignore[type-arg]
    """zero2one's own INFO lines (a one-off conversion of a built-in model, a cluster starting)
    shown plainly on stderr, so a long first step is never silent."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno == logging.INFO

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # the current one (tests and tools swap it)
        super().emit(record)


def _notices(debug: bool) -> None:
    own = logging.getLogger("zero2one")
    if debug or any(isinstance(h, _Notices) for h in own.handlers):
        return
    handler = _Notices()
    handler.setFormatter(logging.Formatter("%(message)s"))
    own.addHandler(handler)
    own.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> None:
    """The `zero2one` program, collecting garbage at :data:`~zero2one.machine.GC_THRESHOLDS`
    (``argv``: called from Python, which keeps its own process's collector settings)."""
    if argv is None:
        gc.set_threshold(*GC_THRESHOLDS)
    from zero2one import distributed
    from zero2one.errors import UserError, Zero2OneError

    try:  # typer 0.2x vendors click; before, it used click itself
        from typer._click import exceptions as click_errors
    except ImportError:
        from click import exceptions as click_errors  # type: ignore[no-redef]

    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("ZERO2ONE_DEBUG") == "1"
    try:
        code = app(args=args, prog_name="zero2one", standalone_mode=False)
        # as in standalone mode, always an exit: typer.Exit's code (--help's 0), else 0
        sys.exit(code if isinstance(code, int) else 0)
    except click_errors.UsageError as exc:  # a bad option value, a missing argument, ...
        if type(exc).__name__ == "NoArgsIsHelpError":  # a group called bare: its help
            typer.echo(exc.ctx.get_help() if exc.ctx is not None else str(exc), err=True)
            sys.exit(2)
        where = exc.ctx.command_path if exc.ctx is not None else "zero2one"
        message = " ".join(exc.format_message().split())
        typer.echo(f"error: {message} (see {where} --help)", err=True)
        sys.exit(2)
    except click_errors.ClickException as exc:
        typer.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except UserError as exc:
        if debug:
            raise
        if distributed.rank() == 0:  # under --nproc every rank has it: rank 0 says it
            typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except Zero2OneError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        if debug:
            raise
        where = f"[rank {distributed.rank()}] " if "RANK" in os.environ else ""
        typer.echo(f"internal error: {where}{type(exc).__name__}: {exc} (rerun with --debug for "
                   "the traceback)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
