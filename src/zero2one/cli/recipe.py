"""``zero2one recipe check|schema``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zero2one.catalog import load_recipe
from zero2one.catalog import schema as task_schema
from zero2one.cli.output import Json, console, print_json

app = typer.Typer(help="Check recipes and export their JSON Schema.", no_args_is_help=True)


@app.command("check")
def check(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file.", show_default=False)],
    set_: Annotated[list[str] | None, typer.Option(
        "--set", "-s", help="Override a field: key.path=value (repeatable).")] = None,
    json_: Json = False,
) -> None:
    """Validate a recipe (fields, values, estimator and its parameters) without training."""
    config = load_recipe(recipe, set_ or [])
    if json_:
        print_json(config.model_dump(mode="json"))
    else:
        console().print(f"{recipe}: ok ({config.task}, name {config.name})")


@app.command("schema")
def schema(
    task: Annotated[str, typer.Argument(help="Task name, as in a recipe's `task:` field.",
                                        show_default=False)],
) -> None:
    """Print the JSON Schema of a task's recipe (for editor completion and validation)."""
    print_json(task_schema(task))
