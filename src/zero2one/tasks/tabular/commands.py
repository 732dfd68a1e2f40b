"""``zero2one data profile FILE``: what training would find in a table, without training."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zero2one.cli.output import Json, console, print_json, table

app = typer.Typer(help="Look at data before training on it.", no_args_is_help=True)


@app.command("profile")
def profile(
    source: Annotated[str, typer.Argument(
        help="A .csv/.parquet file or sklearn:NAME.", show_default=False)],
    target: Annotated[str | None, typer.Option(
        help="The column to predict (class balance, leaks).")] = None,
    kind: Annotated[str, typer.Option(
        help="classification or regression (for the target checks).")] = "classification",
    keep: Annotated[list[str] | None, typer.Option(
        help="A column to keep even if it looks like an identifier (repeatable).")] = None,
    json_: Json = False,
) -> None:
    """Per column: type, missing share, distinct values and flags (identifier, constant,
    high cardinality, leak); the class balance; what training would exclude and warn about."""
    from zero2one.data import load_table
    from zero2one.errors import DataError, UserError
    from zero2one.tasks.tabular.profile import profile_frame

    if kind not in ("classification", "regression"):
        raise UserError(f"--kind must be classification or regression, got {kind!r}")
    loaded = load_table(source if source.startswith("sklearn:") else str(Path(source)))
    target = target or loaded.default_target
    if target is not None and target not in loaded.frame.columns:
        raise DataError(f"{loaded.source}: no column {target!r}; columns: "
                        f"{', '.join(map(str, loaded.frame.columns))}")
    result = profile_frame(loaded.frame, target=target, kind=kind, keep=tuple(keep or ()))
    if json_:
        print_json(result.to_dict())
        return
    out = console()
    out.print(table(f"{loaded.source}: {result.rows} rows",
                    ["column", "type", "missing", "distinct", "flags"],
                    [[c.name + (" (target)" if c.name == target else ""), c.dtype,
                      f"{c.missing:.1%}", c.unique, ", ".join(c.flags) or "-"]
                     for c in result.columns]))
    if result.class_counts:
        out.print("classes: " + ", ".join(f"{k} {v}" for k, v in result.class_counts.items()))
    for message in result.warnings:
        out.print(f"[yellow]warning[/yellow]: {message}", markup=True, highlight=False)
    if result.excluded:
        out.print(f"training would exclude: {', '.join(result.excluded)}")
