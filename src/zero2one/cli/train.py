"""``zero2one train RECIPE``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zero2one.cli.output import (
    Json,
    Quiet,
    Scheduler,
    Workers,
    console,
    fmt,
    print_json,
    table,
)


def train(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file.", show_default=False)],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Override a field: key.path=value (repeatable)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Also write the model directory here.")
    ] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue an interrupted run of this recipe from its last checkpoint "
        "(tasks that write checkpoints).")] = False,
    scheduler: Scheduler = None,
    workers: Workers = None,
    json_: Json = False,
    quiet: Quiet = False,
) -> None:
    """Train, evaluate, track and register the model a recipe describes."""
    from zero2one import scale
    from zero2one.api import train as run_train
    from zero2one.progress import NullReporter, RichReporter

    reporter = NullReporter() if quiet or json_ else RichReporter()
    with scale.using(scheduler, workers=workers, say=reporter.info):
        result = run_train(recipe, overrides=set_ or [], out=out, reporter=reporter,
                           resume=resume)
    if json_:
        print_json(result.to_dict())
        return
    if quiet:
        return
    out_console = console()
    if result.search_results is not None:
        shown = result.search_results.head(10)
        out_console.print(table(
            f"Search results (best {len(shown)} of {len(result.search_results)})",
            list(shown.columns), shown.values.tolist(),
        ))
    out_console.print(metrics_table(result.name, result.metrics))
    if result.best_params:
        out_console.print(
            f"best params: {fmt(result.best_params)}  (cv score {fmt(result.cv_score)})"
        )
    if result.run_id:
        out_console.print(f"run:   {result.run_id}")
    out_console.print(f"model: {result.model_uri}")
    if result.registered_uri:
        out_console.print(f"registered: {result.registered_uri}")


def metrics_table(name: str, metrics: dict[str, float]) -> object:
    """Held-out metrics; a ``baseline_X`` metric is shown beside X (what always predicting the
    majority class, or the mean, would score)."""
    baseline = {k.removeprefix("baseline_"): v for k, v in metrics.items()
                if k.startswith("baseline_")}
    rows = [[k, v, *([baseline.get(k)] if baseline else [])]
            for k, v in metrics.items() if not k.startswith("baseline_")]
    columns = ["metric", "model", "majority / mean baseline"] if baseline else ["metric", "value"]
    return table(f"{name}: held-out metrics", columns, rows)
