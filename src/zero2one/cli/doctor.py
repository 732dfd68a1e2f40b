"""``zero2one doctor``: is this machine ready?"""

from __future__ import annotations

from typing import Annotated

import typer

from zero2one.cli.output import Json, console, print_json, table
from zero2one.doctor import REQUIRED_EXTRAS, extras, run_checks

_STYLE = {"ok": ("ok", "green"), "warn": ("warn", "yellow"), "fail": ("FAIL", "bold red")}


def doctor(
    require: Annotated[list[str] | None, typer.Option(
        "--require", "-r",
        help="Extras whose absence is a failure (default: tabular); repeatable.")] = None,
    json_: Json = False,
) -> None:
    """Check Python, libraries, CPU, memory, GPU/CUDA, the tracking store and built-in models.

    Exits with 1 when something required is missing.
    """
    from zero2one.errors import UserError

    required = ("core", *require) if require else REQUIRED_EXTRAS
    known = extras()
    unknown = [r for r in required if r not in known]
    if unknown:
        raise UserError(f"unknown extra(s) {', '.join(unknown)}; choose from "
                        f"{', '.join(e for e in known if e != 'core')}")
    checks = run_checks(require=required)
    failed = [c for c in checks if c.status == "fail"]
    if json_:
        print_json({"ok": not failed, "checks": [c.to_dict() for c in checks]})
    else:
        from rich.text import Text

        out = console()
        out.print(table("zero2one doctor", ["", "group", "check", "detail"],
                        [[Text(*_STYLE[c.status]), c.group, c.name, c.detail] for c in checks]))
        for c in failed:
            console(stderr=True).print(Text(f"problem: {c.name}: {c.detail}", style="red"))
    if failed:
        raise typer.Exit(1)
