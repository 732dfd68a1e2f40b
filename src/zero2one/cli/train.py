"""``zero2one train RECIPE``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from zero2one.catalog import get_task, load_recipe
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

if TYPE_CHECKING:
    from zero2one.distributed import Launch


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
    nproc: Annotated[int, typer.Option(
        "--nproc", min=1, help="Train data-parallel in this many processes on this machine "
        "(torch.distributed.run: gloo on CPUs, NCCL on GPUs, one process per GPU); the global "
        "batch stays the recipe's. Tasks that train data-parallel.")] = 1,
    nnodes: Annotated[int, typer.Option(
        "--nnodes", min=1, help="Machines taking part; run the same command on each.")] = 1,
    rdzv_endpoint: Annotated[str | None, typer.Option(
        "--rdzv-endpoint", help="With --nnodes: HOST:PORT of the first machine, where the "
        "processes meet.", show_default=False)] = None,
    rdzv_id: Annotated[str, typer.Option(
        "--rdzv-id", help="With --nnodes: a job id, the same on every machine.")] = "zero2one",
    json_: Json = False,
    quiet: Quiet = False,
) -> None:
    """Train, evaluate, track and register the model a recipe describes."""
    from zero2one import distributed, scale
    from zero2one.api import train as run_train
    from zero2one.progress import NullReporter, RichReporter

    if (nproc > 1 or nnodes > 1) and not distributed.in_rank():
        _launch(recipe, set_ or [], out=out, resume=resume, json_=json_, quiet=quiet,
                plan=distributed.Launch(nproc, nnodes, rdzv_endpoint, rdzv_id))
        return
    if not distributed.is_main():  # rank 0 reports
        json_, quiet = False, True
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


def _launch(recipe: Path, overrides: list[str], *, out: Path | None, resume: bool,
            json_: bool, quiet: bool, plan: Launch) -> None:
    """Check the recipe here, then run this command in every data-parallel process."""
    import logging

    from zero2one import distributed
    from zero2one.errors import UserError

    plan.check()
    config = load_recipe(recipe, overrides)  # recipe errors fail here, once
    get_task(config.task).check_data_parallel(config, plan.world)
    if out is not None and out.exists():
        raise UserError(f"--out {out} already exists; choose a new directory")
    argv = ["--debug"] if logging.getLogger().isEnabledFor(logging.DEBUG) else []
    argv += ["train", str(recipe), *[a for o in overrides for a in ("--set", o)]]
    argv += [*(["--out", str(out)] if out else []), *(["--resume"] if resume else []),
             *(["--json"] if json_ else []), *(["--quiet"] if quiet else [])]
    code = distributed.launch(argv, plan)
    if code != 0:
        again = f"zero2one train {recipe} --nproc {plan.nproc}" + (
            f" --nnodes {plan.nnodes}" if plan.nnodes > 1 else "")
        raise UserError(f"data-parallel training stopped: a process failed (launcher exit "
                        f"code {code}; its message is above); once fixed, continue from the "
                        f"last checkpoint with: {again} --resume")


def metrics_table(name: str, metrics: dict[str, float]) -> object:
    """Held-out metrics; a ``baseline_X`` metric is shown beside X (what always predicting the
    majority class, or the mean, would score)."""
    baseline = {k.removeprefix("baseline_"): v for k, v in metrics.items()
                if k.startswith("baseline_")}
    rows = [[k, v, *([baseline.get(k)] if baseline else [])]
            for k, v in metrics.items() if not k.startswith("baseline_")]
    columns = ["metric", "model", "majority / mean baseline"] if baseline else ["metric", "value"]
    return table(f"{name}: held-out metrics", columns, rows)
