"""The task contract's checks, for a task author to run on their own task (as scikit-learn's
``check_estimator`` does for estimators): zero2one's suite runs the same checks over the tasks
it ships.

    from zero2one.testing import Case, check_task

    def test_my_task(tmp_path):
        check_task("my-task", Case(
            recipe="my-task.yaml", inputs=lambda: my_rows(),
            good=("POST", "/predict", {"rows": [[5.1, 3.5, 1.4, 0.2]]}),
            bad=("POST", "/predict", {"rows": [[5.1]]})), tmp_path)

Each check is a function of (task class, trained job); a failure is an ``AssertionError`` that
names the check. Needs the ``serve`` extra (the served-route check) and pytest's
``tmp_path``-like folder for the trained model.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zero2one.api import save_model_dir
from zero2one.artifacts import read_manifest
from zero2one.catalog import get_task, load_recipe, validate
from zero2one.errors import IntegrityError, RecipeError
from zero2one.portable import MLMODEL
from zero2one.progress import NullReporter
from zero2one.recipe import BaseRecipe, read_yaml
from zero2one.refs import load
from zero2one.serving import ServeSettings, create_app
from zero2one.serving.routing import route_table
from zero2one.task import Task, TaskData


@dataclass
class Case:
    """A task's smallest job, and what to ask the trained model."""

    recipe: str | Path  # a recipe file of the task
    inputs: Callable[[], Any]  # what predict() takes
    good: tuple[str, str, Any]  # (method, path, JSON body) the served model answers with 200
    bad: tuple[str, str, Any]  # ... one it refuses with a 4xx
    overrides: list[str] = field(default_factory=list)  # --set overrides for the smallest job


@dataclass
class Trained:
    """A task's smallest job, fitted, evaluated and saved as ``zero2one train`` saves it."""

    task: Task
    directory: Path  # the saved model directory
    data: Any  # what load_data() returned


def train_case(cls: type[Task], case: Case, folder: Path) -> Trained:
    """Fit ``case``'s job through the Task API and save it as zero2one.train does."""
    config = load_recipe(case.recipe, [*case.overrides, "track.enabled=false"])
    task = cls(config)
    data = task.load_data()
    fitted = task.fit(data, reporter=NullReporter())
    assert fitted is task, f"{cls.name}: fit() returns self"
    directory = folder / "model"
    save_model_dir(task, directory, task.evaluate(data), data)
    return Trained(task, directory, data)


# ---- the checks ---------------------------------------------------------------------------


def check_declaration(cls: type[Task]) -> None:
    """A concrete Task with a name, a recipe model, an extra, its requirements and routes."""
    assert issubclass(cls, Task) and not inspect.isabstract(cls), f"{cls!r} is not concrete"
    assert issubclass(cls.config_model, BaseRecipe), "config_model extends BaseRecipe"
    assert isinstance(cls.extra, str) and all(isinstance(m, str) for m in cls.requires)
    assert cls.routes(), "a servable task declares its routes"
    for model in cls.builtin_models.values():
        assert model.distribution and model.suffix


def check_unknown_recipe_keys(cls: type[Task], case: Case) -> None:
    """Unknown keys are refused, at the top and inside a section, naming the field."""
    raw = read_yaml(case.recipe)
    try:
        validate({**raw, "bogus": 1})
    except RecipeError as exc:
        assert "bogus" in str(exc), exc
    else:
        raise AssertionError("an unknown top-level recipe key was accepted")
    section = next((k for k, v in raw.items() if isinstance(v, dict)), None)
    if section is None:
        return
    try:
        validate({**raw, section: {**raw[section], "bogus": 1}})
    except RecipeError as exc:
        assert f"{section}.bogus" in str(exc), exc
    else:
        raise AssertionError(f"an unknown key in {section} was accepted")


def check_data(cls: type[Task], job: Trained) -> None:
    """load_data() carries its source and fingerprint, and the manifest records them."""
    assert isinstance(job.data, TaskData), "load_data() returns source and fingerprint"
    recorded = read_manifest(job.directory)["data"]
    assert recorded["source"] == job.data.source
    assert recorded.get("sha256") == job.data.fingerprint.get("sha256")


def check_save_and_load(cls: type[Task], job: Trained, case: Case) -> None:
    """A loaded model is the same class and predicts what the fitted one does."""
    loaded = load(job.directory)
    assert type(loaded) is type(job.task)
    assert loaded.manifest["task"] == cls.name and loaded.ref is not None
    inputs = case.inputs()
    same(job.task.predict(inputs), loaded.predict(inputs))


def check_evaluate_loaded(cls: type[Task], job: Trained, folder: Path) -> None:
    """A loaded model's held-out metrics are the fitted one's; report() writes files."""
    metrics = load(job.directory).evaluate(job.data)
    assert metrics and all(isinstance(v, float) for v in metrics.values())
    fitted = job.task.evaluate(job.data)
    for key in (k for k in metrics if k in fitted and "loss" not in k and "perplexity" not in k):
        assert abs(metrics[key] - fitted[key]) <= 1e-6 * max(1.0, abs(fitted[key])), key
    assert isinstance(load(job.directory).report(job.data, folder), list)


def check_tampered_file(cls: type[Task], job: Trained, folder: Path) -> None:
    """A changed byte in any model file is refused on load, naming the file."""
    import shutil

    copy = folder / "tampered"
    shutil.copytree(job.directory, copy)
    victim = copy / sorted(read_manifest(copy)["files"])[0]
    victim.write_bytes(victim.read_bytes() + b"\0")
    try:
        load(copy)
    except IntegrityError as exc:
        assert "does not match the manifest" in str(exc), exc
        assert str(victim.relative_to(copy)) in str(exc), "the refusal names the file"
    else:
        raise AssertionError("a tampered model file was loaded")


def check_served_route(cls: type[Task], job: Trained, case: Case) -> None:
    """The served model answers the good request, refuses the bad one with a 4xx error, and
    ``GET /v1/models`` once (the server's, or the task's own)."""
    from fastapi.testclient import TestClient

    app = create_app(ServeSettings(model=str(job.directory)))  # type: ignore[call-arg]
    with TestClient(app) as client:
        method, path, body = case.good
        answer = client.request(method, path, json=body)
        assert answer.status_code == 200, answer.text
        method, path, body = case.bad
        refused = client.request(method, path, json=body)
        assert 400 <= refused.status_code < 500, refused.text
        assert "error" in refused.json()
        assert client.get("/healthz").status_code == 200
        assert client.get("/v1/models").status_code == 200
        assert [p for p, methods in route_table(app) if "GET" in methods].count("/v1/models") == 1


def check_mlflow_model(cls: type[Task], job: Trained) -> None:
    """MLflow's own loader takes the saved directory (python_function flavor) and predicts its
    logged input example as the task's ``pyfunc_predict`` does; MLflow's serving validation
    passes on the example."""
    import mlflow

    assert (job.directory / MLMODEL).is_file(), "the saved model has an MLmodel"
    model = mlflow.pyfunc.load_model(str(job.directory))
    example = model.input_example
    if example is None:  # pyfunc_schema() gave none: nothing more MLflow can check
        return
    params = {p.name: p.default for p in (model.metadata.signature.params or [])}
    predicted = model.predict(example)
    same(predicted, load(job.directory).pyfunc_predict(example, params))
    served = job.directory / "serving_input_example.json"
    same(mlflow.models.validate_serving_input(str(job.directory), served.read_text()), predicted)


CHECKS = ("declaration", "unknown_recipe_keys", "data", "save_and_load", "evaluate_loaded",
          "tampered_file", "served_route", "mlflow_model")


def check_task(task: str | type[Task], case: Case, folder: Path, *,
               skip: Iterable[str] = ()) -> list[str]:
    """Every check (:data:`CHECKS`, less ``skip``) on ``task`` with ``case``'s smallest job,
    trained into ``folder``; returns the names of the checks that ran. The first failure
    raises ``AssertionError`` prefixed with the check's name."""
    cls = get_task(task) if isinstance(task, str) else task
    skipped = set(skip)
    ran: list[str] = []

    def run(name: str, check: Callable[[], None]) -> None:
        if name in skipped:
            return
        try:
            check()
        except AssertionError as exc:
            raise AssertionError(f"{cls.name}: {name}: {exc}") from exc
        ran.append(name)

    run("declaration", lambda: check_declaration(cls))
    run("unknown_recipe_keys", lambda: check_unknown_recipe_keys(cls, case))
    job = train_case(cls, case, folder)
    run("data", lambda: check_data(cls, job))
    run("save_and_load", lambda: check_save_and_load(cls, job, case))
    run("evaluate_loaded", lambda: check_evaluate_loaded(cls, job, folder))
    run("tampered_file", lambda: check_tampered_file(cls, job, folder))
    run("served_route", lambda: check_served_route(cls, job, case))
    run("mlflow_model", lambda: check_mlflow_model(cls, job))
    return ran


def same(a: Any, b: Any) -> None:
    """Two predictions are equal (DataFrames column by column)."""
    import pandas as pd

    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b)
    else:
        assert a == b, (a, b)
