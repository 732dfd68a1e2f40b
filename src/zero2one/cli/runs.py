"""``zero2one runs list|show``: tracked runs."""

from __future__ import annotations

from typing import Annotated

import typer

from zero2one.cli.output import Json, console, print_json, table

app = typer.Typer(help="Tracked training runs.", no_args_is_help=True)

_KEY_METRICS = ("test_accuracy", "test_f1_macro", "test_rmse", "test_r2", "test_val_perplexity")


@app.command("list")
def list_(
    experiment: Annotated[str | None, typer.Option("--experiment", "-e",
                                                   help="Only this experiment.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many runs.")]
    = 20,
    json_: Json = False,
) -> None:
    """Recent runs, newest first."""
    from zero2one import tracking

    runs = tracking.list_runs(experiment=experiment, limit=limit)
    if json_:
        print_json(runs)
        return
    if not runs:
        console().print(f"no runs yet in {tracking.tracking_uri()}")
        return
    rows = [
        [r["run_id"], r["name"], r["experiment"], r["status"], r["start_time"], r["task"],
         {k.removeprefix("test_"): v for k, v in r["metrics"].items() if k in _KEY_METRICS}]
        for r in runs
    ]
    console().print(table(None, ["run id", "name", "experiment", "status", "started", "task",
                                 "metrics"], rows))


@app.command("show")
def show(
    run_id: Annotated[str, typer.Argument(help="The run's id.", show_default=False)],
    json_: Json = False,
) -> None:
    """A run's params, metrics, tags and artifacts."""
    from zero2one import tracking

    run = tracking.get_run(run_id)
    if json_:
        print_json(run)
        return
    out = console()
    out.print(f"[bold]{run['name']}[/] {run['run_id']}  {run['status']}  {run['start_time']}  "
              f"experiment {run['experiment']}")
    out.print(f"model: {run['model_uri']}")
    out.print(table("metrics", ["metric", "value"], [[k, v] for k, v in run["metrics"].items()]))
    out.print(table("params", ["param", "value"], [[k, v] for k, v in run["params"].items()]))
    out.print(table("tags", ["tag", "value"], [[k, v] for k, v in run["tags"].items()]))
    out.print("artifacts: " + (", ".join(run["artifacts"]) or "none"))
