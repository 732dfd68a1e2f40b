"""Training: a recipe to a fitted, evaluated, saved and (when the recipe says so) tracked and
registered model — the orchestration :func:`zero2one.train` runs, on every rank of a
data-parallel fit."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from zero2one import distributed, scale, tracking, versions
from zero2one.api.result import TrainResult, result_of
from zero2one.api.saving import (
    default_out,
    lineage_tags,
    save,
    to_json,
    with_environment,
)
from zero2one.artifacts import manifest_digest
from zero2one.catalog import get_task, load_recipe, validate
from zero2one.errors import ContractError, UserError, require
from zero2one.paths import workspace
from zero2one.progress import (
    NullReporter,
    Reporter,
    RunReporter,
    TensorBoardReporter,
    default_reporter,
)
from zero2one.recipe import BaseRecipe, apply_overrides, flatten
from zero2one.task import Task, TaskData
from zero2one.version import __version__
from zero2one.versions import LINEAGE

log = logging.getLogger(__name__)


def train(
    recipe: str | Path | BaseRecipe | dict[str, Any],
    *,
    overrides: Iterable[str] = (),
    out: str | Path | None = None,
    reporter: Reporter | None = None,
    resume: bool = False,
    tags: Mapping[str, str] | None = None,
) -> TrainResult:
    """Train, evaluate, save and (when the recipe says so) track and register a model.

    ``recipe`` is a YAML path, a dict, or a validated recipe; ``out`` also writes the model
    directory there; ``resume`` continues from the last checkpoint of an interrupted run of the
    same recipe (tasks that checkpoint: image classification); ``tags`` are added to the
    tracked run. Data and recipe errors are raised before anything is written. The run records
    the git and DVC versions of the data it read (``lineage.json``; see
    :mod:`zero2one.versions`), so that :func:`reproduce` can train it again.
    """
    reporter = reporter or default_reporter()
    # a Dask cluster if the task asks for one; the ranks' process group under --nproc
    with scale.using(say=reporter.info), distributed.process_group():
        if not distributed.is_main():
            return _follow(recipe, overrides=overrides, resume=resume)
        return _train(recipe, overrides=overrides, out=out, reporter=reporter, resume=resume,
                      tags=tags or {})


def _follow(recipe: str | Path | BaseRecipe | dict[str, Any], *, overrides: Iterable[str],
            resume: bool) -> TrainResult:
    """A data-parallel rank other than 0: learn its share of every batch; rank 0 evaluates,
    tracks, saves and registers."""
    config = _config(recipe, overrides)
    task = _data_parallel_task(config)
    task.resume = resume
    task.fit(task.load_data(), reporter=NullReporter())
    return TrainResult(name=config.name, task=config.task, metrics={}, model_dir=Path(),
                       model_uri="")


def _data_parallel_task(config: BaseRecipe) -> Task:
    task_cls = get_task(config.task)
    if distributed.world_size() > 1:
        task_cls.check_data_parallel(config, distributed.world_size())
    task_cls.check_requirements()
    return task_cls(config)


def _train(recipe: str | Path | BaseRecipe | dict[str, Any], *, overrides: Iterable[str],
           out: str | Path | None, reporter: Reporter, resume: bool,
           tags: Mapping[str, str]) -> TrainResult:
    config = _config(recipe, overrides)
    started = time.perf_counter()
    task = _data_parallel_task(config)
    task.resume = resume
    data = task_data(task)
    _report_profile(data, reporter)
    if out is not None and Path(out).exists():
        raise UserError(f"--out {out} already exists; choose a new directory")
    lineage = _lineage(task, reporter)  # as the data is now, before a long fit
    with _tensorboard(task, reporter) as reporter:
        if config.track.enabled:
            if isinstance(reporter, TensorBoardReporter):  # where the run's curves are
                tags = {**tags, "zero2one.tensorboard": str(reporter.logdir)}
            return _train_tracked(task, data, out=out, reporter=reporter, started=started,
                                  lineage=lineage, tags=tags)
        return _train_untracked(task, data, out=out, reporter=reporter, started=started,
                                lineage=lineage)


@contextmanager
def _tensorboard(task: Task, reporter: Reporter) -> Iterator[Reporter]:
    """``reporter``, also writing TensorBoard event files when the recipe asks for them."""
    if not task.config.track.tensorboard:
        yield reporter
        return
    if not task.needs_torch:
        raise UserError(f"track.tensorboard: {task.name} training has no curves to show; "
                        "TensorBoard is for the deep-learning tasks")
    require("tensorboard", "tensorboard")
    logdir = workspace() / "tensorboard" / f"{task.config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    board = TensorBoardReporter(reporter, logdir)
    reporter.info(f"TensorBoard: {logdir} (zero2one tensorboard)")
    try:
        yield board
    finally:
        board.close()


def _train_untracked(task: Task, data: Any, *, out: str | Path | None, reporter: Reporter,
                     started: float, lineage: dict[str, Any]) -> TrainResult:
    config = task.config
    target = Path(out) if out is not None else default_out(config.name)
    metrics, timings = _fit_evaluate(task, data, reporter)

    def add_report(directory: Path) -> None:  # no run to hold the plots: they go with the model
        (directory / "report").mkdir()
        with _timer(timings, "report"):
            task.report(data, directory / "report")

    with _timer(timings, "save"):
        model_dir = save(task, target, metrics, data, lineage, add=add_report)
    timings["save"] -= timings["report"]
    timings["total"] = time.perf_counter() - started
    return result_of(task, metrics, model_dir, str(model_dir), timings)


def task_data(task: Task) -> TaskData:
    """``task.load_data()``, checked to carry its source and fingerprint (:class:`TaskData`):
    every run and model records them, so a task whose data has none is refused before any
    work (its runs would silently lack their data's fingerprint and versions)."""
    data = task.load_data()
    if not isinstance(data, TaskData) or not isinstance(data.fingerprint, dict):
        raise ContractError(
            f"{task.name}: load_data() returned a {type(data).__name__} without a source and a "
            "fingerprint; return an object with both (zero2one.task.TaskData: a dataclass "
            "with source: str and fingerprint: dict from zero2one.data.fingerprint)")
    return data


def _report_profile(data: Any, reporter: Reporter) -> None:
    """What profiling the data found (a task's data may carry a ``profile``), said before the
    fit: on the reporter's console, or as log warnings for Python callers without one."""
    profile = getattr(data, "profile", None)
    if not profile:
        return
    source = data.source
    for message in profile.get("notes", []):
        _say(reporter, message, logging.INFO, source)
    for message in profile.get("warnings", []):
        _say(reporter, message, logging.WARNING, source)


def _say(reporter: Reporter, message: str, level: int, source: str = "data") -> None:
    """A note about the data: on the reporter's console, or logged for Python callers."""
    if isinstance(reporter, NullReporter):
        log.log(level, "%s: %s", source, message)
    else:
        reporter.info(f"[data] {message}")


def _lineage(task: Task, reporter: Reporter) -> dict[str, Any]:
    """How the recipe's data is versioned (:func:`zero2one.versions.describe`); a check that
    fails is said and recorded, and never fails the training."""
    record = versions.describe(task.data_paths())
    if "error" in record:
        _say(reporter, f"versions not recorded: {record['error']}", logging.WARNING)
    return record


def _train_tracked(
    task: Task, data: Any, *, out: str | Path | None, reporter: Reporter, started: float,
    lineage: dict[str, Any], tags: Mapping[str, str],
) -> TrainResult:
    config = task.config
    tags = {**tags, tracking.TASK_TAG: config.task, "zero2one.version": __version__,
            **lineage_tags(lineage)}
    if commit := (lineage["git"] or {}).get("commit"):  # the lineage's: one git call
        tags["mlflow.source.git.commit"] = commit
    if config.description:
        tags["mlflow.note.content"] = config.description
    run_id = task.interrupted_run() if task.resume else None
    with tracking.start_run(config.experiment, run_name=config.name, tags=tags,
                            run_id=run_id) as run:
        if run_id is None:
            run.log_params(flatten(config.model_dump(mode="json")))
        task.run_id = run.run_id
        reporter = RunReporter(reporter, run.log_metrics)
        metrics, timings = _fit_evaluate(task, data, reporter)
        logged = {f"test_{k}": v for k, v in metrics.items()}
        searched = task.searched()
        cv_score = searched.best_score if searched is not None else None
        if cv_score is not None:
            logged["cv_best_score"] = cv_score
        run.log_metrics(logged)
        with tempfile.TemporaryDirectory() as tmp:
            tmp_path = Path(tmp)
            plots = tmp_path / "plots"
            plots.mkdir()
            with _timer(timings, "report"):
                task.report(data, plots)
            run.log_artifacts(plots, "plots")
            if profile := getattr(data, "profile", None):
                (tmp_path / "profile.json").write_text(to_json(profile))
                run.log_artifact(tmp_path / "profile.json")
            fingerprint = {"source": data.source, **data.fingerprint}
            (tmp_path / "data_fingerprint.json").write_text(to_json(fingerprint))
            run.log_artifact(tmp_path / "data_fingerprint.json")
            if "sha256" in fingerprint:
                run.set_tags({tracking.DATA_TAG: fingerprint["sha256"]})
            (tmp_path / "recipe.yaml").write_text(
                yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
            )
            run.log_artifact(tmp_path / "recipe.yaml")
            with _timer(timings, "save"):
                model_dir = save(task, Path(out) if out else tmp_path / "model", metrics, data,
                                  lineage)
            run.log_artifacts(model_dir, tracking.MODEL_PATH)
            (tmp_path / LINEAGE).write_text(to_json(with_environment(lineage, model_dir)))
            run.log_artifact(tmp_path / LINEAGE)
        digest = manifest_digest(tracking.download(run.model_artifact_uri))
        run.set_tags({tracking.MANIFEST_TAG: digest})
        version = None
        if config.register_as:
            version = tracking.register_model(config.register_as, run, manifest_sha256=digest)
    timings["tracking"] = run.io_seconds
    timings["total"] = time.perf_counter() - started
    local = Path(out) if out else tracking.download(run.model_artifact_uri)
    return result_of(task, metrics, local, run.model_uri, timings, run_id=run.run_id,
                   version=version)


def _fit_evaluate(task: Task, data: Any, reporter: Reporter) -> tuple[dict[str, float],
                                                                      dict[str, float]]:
    start = time.perf_counter()
    try:
        task.fit(data, reporter=reporter)
    except UserError:
        raise
    except ValueError as exc:  # scikit-learn reports bad parameter values and data this way
        raise UserError(f"training failed: {str(exc).strip().splitlines()[0]}") from exc
    fitted = time.perf_counter()
    with reporter.step("evaluating on the held-out data"):  # minutes for image generation
        metrics = task.evaluate(data)
    return metrics, {"fit": fitted - start, "evaluate": time.perf_counter() - fitted}


@contextmanager
def _timer(timings: dict[str, float], key: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - start


def _config(recipe: str | Path | BaseRecipe | dict[str, Any],
            overrides: Iterable[str]) -> BaseRecipe:
    if isinstance(recipe, BaseRecipe):
        if overrides:
            return validate(apply_overrides(recipe.model_dump(mode="json"), overrides))
        return recipe
    if isinstance(recipe, dict):
        return validate(apply_overrides(recipe, overrides))
    return load_recipe(recipe, overrides)
