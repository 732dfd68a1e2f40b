"""``zero2one data add|diff`` (data versions, with DVC) and ``zero2one reproduce RUN_ID``.

Task packages may add commands to the ``data`` group (``zero2one data profile``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from zero2one.cli.output import Json, Quiet, console, print_json, table

app = typer.Typer(help="Data sets: versions (DVC) and what differs between runs.",
                  no_args_is_help=True)


@app.command("add")
def add(
    path: Annotated[Path, typer.Argument(help="A data file or folder inside the project's git "
                                         "repository.", show_default=False)],
    remote: Annotated[str | None, typer.Option(
        help="A DVC remote URL (s3://..., gs://..., ssh://..., a folder) to make the "
        "repository's default; default: the one configured, else a folder in the workspace.",
        show_default=False)] = None,
    message: Annotated[str | None, typer.Option(
        "--message", "-m", help="Commit the .dvc file with this message; default: stage it "
        "for your next commit.", show_default=False)] = None,
    json_: Json = False,
) -> None:
    """Version a data set with DVC: `dvc init` on first use, `dvc add`, `dvc push` to the
    remote, and the .dvc file staged (or committed) in git. Runs that read it record its
    version; `zero2one reproduce RUN_ID` checks it out again."""
    from zero2one import versions

    added = versions.add(path, remote=remote, message=message)
    if json_:
        print_json(added.to_dict())
        return
    size = f"{added.size:,} bytes" if added.size is not None else "size unknown"
    files = f", {added.files} files" if added.files else ""
    out = console()
    out.print(f"{added.path}: md5 {added.md5} ({size}{files}) pushed to {added.remote}")
    if added.unchanged:
        out.print(f"unchanged: {added.dvc_file} records this version in the last commit")
    elif added.commit:
        out.print(f"committed {added.dvc_file} as {added.commit[:12]}")
    else:
        out.print(f"staged {added.dvc_file}; commit it (git commit) so that runs can be "
                  "reproduced from this version")


@app.command("diff")
def diff(
    run_a: Annotated[str, typer.Argument(help="A run id.", show_default=False)],
    run_b: Annotated[str, typer.Argument(help="Another run id.", show_default=False)],
    json_: Json = False,
) -> None:
    """What differs between two runs: data (versions, fingerprints), recipe values, library
    versions and machine."""
    from dataclasses import asdict

    from zero2one.lineage import diff as diff_runs

    found = diff_runs(run_a, run_b)
    if json_:
        print_json([asdict(d) for d in found])
        return
    if not found:
        console().print(f"runs {run_a} and {run_b} read the same data with the same recipe "
                        "and libraries")
        return
    console().print(table(None, ["", "what", run_a[:12], run_b[:12]], [
        [d.section, d.key, _shown(d.a), _shown(d.b)] for d in found]))


def _shown(value: Any) -> str:
    return "-" if value is None else str(value)


def reproduce(
    run_id: Annotated[str, typer.Argument(help="The run to reproduce.", show_default=False)],
    tolerance: Annotated[float | None, typer.Option(
        min=0, help="How far each metric may move; default: the task's (0 where training is "
        "deterministic).", show_default=False)] = None,
    quiet: Quiet = False,
    json_: Json = False,
) -> None:
    """Train a run again from what it recorded — its recipe and seed, its data version checked
    out of git and DVC in a temporary worktree (your working tree is left alone) — and compare
    the metrics. Exit code 1 when they differ, with what differs (data, libraries, machine)."""
    from zero2one.lineage import reproduce as run_again
    from zero2one.progress import NullReporter, RichReporter

    reporter = NullReporter() if quiet or json_ else RichReporter()
    found = run_again(run_id, tolerance=tolerance, reporter=reporter)
    if json_:
        print_json(found.to_dict())
    elif not quiet:
        out = console()
        out.print(table(f"run {run_id} again as {found.new_run_id} (tolerance "
                        f"{found.tolerance:g})", ["metric", "recorded", "reproduced", ""], [
            [m.name, f"{m.recorded:.6g}", "-" if m.reproduced is None else
             f"{m.reproduced:.6g}", "same" if m.within else "DIFFERS"] for m in found.metrics]))
        if found.differences:
            out.print(table("what differs", ["", "what", "recorded", "now"], [
                [d.section, d.key, _shown(d.a), _shown(d.b)] for d in found.differences]))
        out.print("reproduced" if found.reproduced else "NOT reproduced")
    if not found.reproduced:
        raise typer.Exit(1)
