"""The Python API; the CLI is a thin layer over these functions.

    >>> import zero2one
    >>> result = zero2one.train("recipes/iris-svc.yaml", overrides=["search.cv=3"])
    >>> model = zero2one.load("models:/iris-svc@champion")
    >>> scored = model.predict(frame)
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from zero2one import distributed, scale, tracking, versions
from zero2one.artifacts import manifest_digest, save_model
from zero2one.catalog import get_task, load_recipe, validate
from zero2one.errors import ContractError, DataError, UserError, Zero2OneError, require
from zero2one.partitions import score_partitions
from zero2one.paths import workspace
from zero2one.progress import (
    NullReporter,
    Reporter,
    RunReporter,
    TensorBoardReporter,
    default_reporter,
)
from zero2one.recipe import BaseRecipe, apply_overrides, flatten
from zero2one.refs import load
from zero2one.task import Task, TaskData
from zero2one.tracking import sql as tracking_sql
from zero2one.version import __version__

if TYPE_CHECKING:
    import pandas as pd

    from zero2one.partitions import Scored
    from zero2one.task import Task

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    name: str
    task: str
    metrics: dict[str, float]
    model_dir: Path  # the saved model directory (inside the artifact store when tracked)
    model_uri: str  # a model reference that loads it
    run_id: str | None = None
    registered_name: str | None = None
    registered_version: str | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    cv_score: float | None = None
    search_results: pd.DataFrame | None = None
    # fit, evaluate, report (plots), save (model directory), tracking (MLflow calls), total
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def registered_uri(self) -> str | None:
        return registered_uri(self.registered_name, self.registered_version)

    def _repr_html_(self) -> str:
        """A notebook's view: the model and run, the held-out metrics beside their baselines,
        the best parameters and the plots the run recorded."""
        from html import escape

        baseline = {k.removeprefix("baseline_"): v for k, v in self.metrics.items()
                    if k.startswith("baseline_")}
        rows = "".join(
            f"<tr><td>{escape(k)}</td><td>{v:.4g}</td>"
            f"<td>{'' if k not in baseline else f'{baseline[k]:.4g}'}</td></tr>"
            for k, v in self.metrics.items() if not k.startswith("baseline_"))
        facts = [("model", self.registered_uri or self.model_uri), ("run", self.run_id),
                 ("best params", self.best_params or None),
                 ("cv score", None if self.cv_score is None else f"{self.cv_score:.4g}"),
                 ("seconds", f"{self.seconds.get('total', 0):.1f}")]
        head = "".join(f"<div><b>{escape(k)}</b>: <code>{escape(str(v))}</code></div>"
                       for k, v in facts if v is not None)
        images = "".join(f'<img src="data:image/png;base64,{data}" title="{escape(name)}" '
                         'style="width:320px;margin:4px">' for name, data in self._plots())
        return (f"<div><h4>{escape(self.name)} <small>({escape(self.task)})</small></h4>{head}"
                "<table><tr><th>held-out metric</th><th>model</th><th>baseline</th></tr>"
                f"{rows}</table><div>{images}</div></div>")

    def _plots(self, most: int = 6) -> list[tuple[str, str]]:
        """(name, base64 PNG) of the run's plots (a local store) or the model's report."""
        import base64

        folder = self.model_dir / "report"
        if self.run_id is not None:
            try:
                uri = tracking.run_artifact_uri(self.run_id, "plots")
            except Zero2OneError:  # the store went away: the page shows no plots
                return []
            folder = tracking_sql.local_path(uri) or folder
        pngs = sorted(folder.glob("*.png"))[:most] if folder.is_dir() else []
        return [(p.name, base64.b64encode(p.read_bytes()).decode()) for p in pngs]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.task,
            "run_id": self.run_id,
            "model_uri": self.model_uri,
            "model_dir": str(self.model_dir),
            "registered_uri": self.registered_uri,
            "metrics": self.metrics,
            "best_params": self.best_params,
            "cv_score": self.cv_score,
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
        }


def registered_uri(name: str | None, version: str | None) -> str | None:
    """``models:/NAME/VERSION`` of a registered model version, None when there is none."""
    return None if name is None or version is None else f"models:/{name}/{version}"


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
    target = Path(out) if out is not None else _default_out(config.name)
    metrics, timings = _fit_evaluate(task, data, reporter)

    def add_report(directory: Path) -> None:  # no run to hold the plots: they go with the model
        (directory / "report").mkdir()
        with _timer(timings, "report"):
            task.report(data, directory / "report")

    with _timer(timings, "save"):
        model_dir = _save(task, target, metrics, data, lineage, add=add_report)
    timings["save"] -= timings["report"]
    timings["total"] = time.perf_counter() - started
    return _result(task, metrics, model_dir, str(model_dir), timings)


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
            **_lineage_tags(lineage)}
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
                (tmp_path / "profile.json").write_text(_json(profile))
                run.log_artifact(tmp_path / "profile.json")
            fingerprint = {"source": data.source, **data.fingerprint}
            (tmp_path / "data_fingerprint.json").write_text(_json(fingerprint))
            run.log_artifact(tmp_path / "data_fingerprint.json")
            if "sha256" in fingerprint:
                run.set_tags({tracking.DATA_TAG: fingerprint["sha256"]})
            (tmp_path / "recipe.yaml").write_text(
                yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
            )
            run.log_artifact(tmp_path / "recipe.yaml")
            with _timer(timings, "save"):
                model_dir = _save(task, Path(out) if out else tmp_path / "model", metrics, data,
                                  lineage)
            run.log_artifacts(model_dir, tracking.MODEL_PATH)
            (tmp_path / LINEAGE).write_text(_json(_with_environment(lineage, model_dir)))
            run.log_artifact(tmp_path / LINEAGE)
        digest = manifest_digest(tracking.download(run.model_artifact_uri))
        run.set_tags({tracking.MANIFEST_TAG: digest})
        version = None
        if config.register_as:
            version = tracking.register_model(config.register_as, run, manifest_sha256=digest)
    timings["tracking"] = run.io_seconds
    timings["total"] = time.perf_counter() - started
    local = Path(out) if out else tracking.download(run.model_artifact_uri)
    return _result(task, metrics, local, run.model_uri, timings, run_id=run.run_id,
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


def save_model_dir(task: Task, target: Path, metrics: dict[str, float],
                   data: TaskData) -> Path:
    """A fitted task's model directory, saved as :func:`train` saves it: the manifest holds
    the metrics and the data's source and fingerprint (:mod:`zero2one.testing` uses it)."""
    return _save(task, target, metrics, data)


def _save(task: Task, target: Path, metrics: dict[str, float], data: TaskData,
          lineage: dict[str, Any] | None = None,
          add: Callable[[Path], None] | None = None) -> Path:
    extra: dict[str, Any] = {"metrics": metrics, "data": {
        "source": data.source, **data.fingerprint,
        **({"versions": lineage} if lineage is not None else {})}}
    return save_model(task, target, extra=extra, add=add)


# the run's record of what it was made from: the data's git and DVC versions (see
# zero2one.versions), the libraries and the machine; read by reproduce and data diff
LINEAGE = "lineage.json"


def _lineage_tags(lineage: dict[str, Any]) -> dict[str, str]:
    """The searchable part of the lineage: the data's git commit and DVC hashes, and whether
    the run can be reproduced from them."""
    tags = {"zero2one.data.reproducible": "false" if versions.unreproducible(lineage)
            else "true"}
    if commit := (lineage.get("git") or {}).get("commit"):
        tags["zero2one.data.git_commit"] = commit
    md5 = [m for entry in lineage["data"] for d in entry.get("dvc", []) for m in d["md5"]]
    if md5:
        tags["zero2one.data.dvc_md5"] = ",".join(md5)[:_MAX_TAG]
    return tags


_MAX_TAG = 5000


def _with_environment(lineage: dict[str, Any], model_dir: Path) -> dict[str, Any]:
    import json
    import platform

    manifest = json.loads((model_dir / "manifest.json").read_text())
    return {**lineage, "libraries": manifest.get("libraries", {}),
            "platform": {"system": platform.platform(), "machine": platform.machine(),
                         "processor": platform.processor() or None}}


def _result(task: Task, metrics: dict[str, float], model_dir: Path, uri: str,
            timings: dict[str, float], *, run_id: str | None = None,
            version: str | None = None) -> TrainResult:
    searched = task.searched()
    return TrainResult(
        name=task.config.name, task=task.config.task, metrics=metrics, model_dir=model_dir,
        model_uri=uri, run_id=run_id, registered_version=version,
        registered_name=task.config.register_as if version else None,
        best_params=dict(searched.best_params) if searched is not None else {},
        cv_score=searched.best_score if searched is not None else None,
        search_results=searched.results if searched is not None else None, seconds=timings,
    )


def _config(recipe: str | Path | BaseRecipe | dict[str, Any],
            overrides: Iterable[str]) -> BaseRecipe:
    if isinstance(recipe, BaseRecipe):
        if overrides:
            return validate(apply_overrides(recipe.model_dump(mode="json"), overrides))
        return recipe
    if isinstance(recipe, dict):
        return validate(apply_overrides(recipe, overrides))
    return load_recipe(recipe, overrides)


def _default_out(name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = workspace() / "models" / f"{name}-{stamp}"
    n = 1
    while target.exists():  # two runs of one recipe within a second
        n += 1
        target = workspace() / "models" / f"{name}-{stamp}-{n}"
    return target


def _json(data: Any) -> str:
    import json

    return json.dumps(data, indent=2, default=str) + "\n"


def predict_file(
    ref: str | Path | Task,
    input_path: str | Path,
    output_path: str | Path | None = None,
    *,
    trust: Iterable[str] = (),
    **options: Any,
) -> pd.DataFrame:
    """Score a file (or a folder, for tasks whose inputs are files) with a model: the task
    reads it (:meth:`Task.predict_file`); ``options`` are the task's (``allow_extra``,
    ``top_k``, ``max_new_tokens``, ...). The output, if given, is written atomically."""
    if output_path is not None:
        check_output_path(Path(output_path))  # before any work: a bad path should fail fast
    model = ref if isinstance(ref, Task) else load(ref, trust=trust)
    scored = model.predict_file(Path(input_path), **options)
    if output_path is not None:
        write_frame(scored, Path(output_path))
    return scored


def predict_partitions(
    ref: str | Path | Task,
    source: str | Path,
    output: str | Path,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    trust: Iterable[str] = (),
    reporter: Reporter | None = None,
    **options: Any,
) -> Scored:
    """Score a table larger than memory (a file, folder or glob of CSV/Parquet) on a Dask
    cluster — ``scheduler``, else DASK_SCHEDULER_ADDRESS, else a local one of ``workers``
    processes — into a new folder of Parquet files, one per partition (see
    :mod:`zero2one.partitions`)."""
    reporter = reporter or default_reporter()
    with scale.using(scheduler, workers=workers, say=reporter.info):
        model = ref if isinstance(ref, Task) else load(ref, trust=trust)
        return score_partitions(model, str(source), Path(output), options=options,
                                trust=tuple(trust), reporter=reporter)


def check_output_path(path: Path) -> None:
    """A scored-rows destination must be .csv/.parquet/.pq in an existing directory."""
    if path.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise DataError(f"{path}: output must end in .csv, .parquet or .pq")
    if not path.parent.is_dir():
        raise DataError(f"{path}: directory {path.parent} does not exist")


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    """Write CSV or Parquet via a temporary file and a rename: never a half-written file."""
    import os

    check_output_path(path)
    suffix = path.suffix.lower()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
