"""One contract over every registered task, plugins included (scikit-learn's
``check_estimator`` idea): each check runs for each task, so a new task is held to all of them.

A task that has no case below fails :func:`test_every_task_has_a_case`: adding a task means
adding its smallest recipe and one good and one bad request here.
"""

from __future__ import annotations

import inspect
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zero2one.api import load
from zero2one.artifacts import read_manifest
from zero2one.errors import IntegrityError, RecipeError
from zero2one.progress import NullReporter
from zero2one.recipe import BaseRecipe, load_recipe, read_yaml, validate
from zero2one.registry import get_task, register_task, task_names
from zero2one.task import Task

from .conftest import REPO


def _png(value: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Case:
    """The smallest job of a task, and what to ask the trained model."""

    recipe: Path
    overrides: list[str]
    inputs: Callable[[], Any]  # what predict() takes
    good: tuple[str, str, dict[str, Any]]  # (method, path, JSON body) that answers 200
    bad: tuple[str, str, Any]  # ... that answers a 4xx
    fixtures: list[str] = field(default_factory=list)  # placeholders {name} in overrides


def _iris_rows() -> Any:
    import pandas as pd

    return pd.DataFrame({"sepal_length": [5.1, 6.7], "sepal_width": [3.5, 3.0],
                         "petal_length": [1.4, 5.2], "petal_width": [0.2, 2.3]})


def _diabetes_rows() -> Any:
    from sklearn.datasets import load_diabetes

    return load_diabetes(as_frame=True).frame.drop(columns="target").head(3)


CASES: dict[str, Case] = {
    "tabular-classification": Case(
        REPO / "recipes/iris-svc.yaml",
        ["search.cv=2", "search.space.C=[1]", "search.space.kernel=[linear]"], _iris_rows,
        ("POST", "/predict", {"features": [5.1, 3.5, 1.4, 0.2]}),
        ("POST", "/predict", {"features": ["x", 3.5, 1.4, 0.2]})),
    "tabular-regression": Case(
        REPO / "recipes/diabetes-regression.yaml", ["search.n_trials=2", "search.cv=2"],
        _diabetes_rows,
        ("POST", "/predict", {"features": [0.0] * 10}),
        ("POST", "/predict", {"instances": [[0.0] * 3]})),
    "image-classification": Case(
        REPO / "recipes/digits-cnn.yaml",
        ["train.epochs=1", "model.arch=seed-cnn", "model.params={}"],
        lambda: [_png(0), _png(200)],
        ("POST", "/predict", {"images": [__import__("base64").b64encode(_png(9)).decode()]}),
        ("POST", "/predict", {"image": "not base64!"})),
    "text-generation": Case(
        REPO / "recipes/smollm2-lora.yaml",
        ["model.base={tiny_lm}", "train.max_steps=2", "data.max_length=128", "eval.samples=1",
         "eval.sample_tokens=4", f"data.source={REPO}/examples/zero2one-qa/train.jsonl",
         f"data.val_source={REPO}/examples/zero2one-qa/val.jsonl"],
        lambda: ["What is zero2one?", "Train a model"],
        ("POST", "/v1/completions", {"prompt": "Hello", "max_tokens": 3, "temperature": 0}),
        ("POST", "/v1/completions", {"prompt": "", "max_tokens": 3}),
        fixtures=["tiny_lm"]),
    "nearest-centroid": Case(
        REPO / "examples/plugin-task/centroid.yaml", [], _iris_rows,
        ("POST", "/predict", {"rows": [[5.1, 3.5, 1.4, 0.2]]}),
        ("POST", "/predict", {"rows": [[5.1]]})),
}


@dataclass
class Trained:
    task: Task
    directory: Path
    data: Any


_TRAINED: dict[str, Trained] = {}


@pytest.fixture
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            workspace: Path) -> Callable[[str], Trained]:
    """Train each task's smallest job once per session (fit through the Task API, saved through
    zero2one.train's own save path)."""

    def get(name: str) -> Trained:
        if name not in _TRAINED:
            case = CASES[name]
            values = {f: str(request.getfixturevalue(f)) for f in case.fixtures}
            overrides = [o.format(**values) if "{" in o and values else o
                         for o in case.overrides]
            config = load_recipe(case.recipe, [*overrides, "track.enabled=false"])
            cls = get_task(name)
            task = cls(config)
            data = task.load_data()
            assert task.fit(data, reporter=NullReporter()) is task  # fit returns the task
            from zero2one.api import _save

            directory = tmp_path_factory.mktemp(name) / "model"
            _save(task, directory, task.evaluate(data), data)
            _TRAINED[name] = Trained(task, directory, data)
        return _TRAINED[name]

    return get


def test_every_task_has_a_case() -> None:
    assert set(task_names()) <= set(CASES), "add the new task's smallest job to CASES"
    assert "nearest-centroid" in task_names(), "the example plugin (examples/plugin-task) is " \
        "installed by the set-up and found through its entry point"


@pytest.mark.parametrize("name", task_names())
def test_task_class_declares_the_contract(name: str) -> None:
    cls = get_task(name)
    assert issubclass(cls, Task) and cls.name == name and not inspect.isabstract(cls)
    assert issubclass(cls.config_model, BaseRecipe)
    assert isinstance(cls.extra, str) and all(isinstance(m, str) for m in cls.requires)
    routes = cls.routes()
    assert routes, "a servable task declares its routes"
    for model in cls.builtin_models.values():
        assert model.distribution and model.suffix


@pytest.mark.parametrize("name", task_names())
def test_unknown_recipe_keys_are_rejected(name: str) -> None:
    raw = read_yaml(CASES[name].recipe)
    with pytest.raises(RecipeError, match="bogus"):
        validate({**raw, "bogus": 1})
    first_section = next(k for k, v in raw.items() if isinstance(v, dict))
    with pytest.raises(RecipeError, match=f"{first_section}.bogus"):
        validate({**raw, first_section: {**raw[first_section], "bogus": 1}})


def _same(a: Any, b: Any) -> None:
    import pandas as pd

    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b)
    else:
        assert a == b


@pytest.mark.parametrize("name", task_names())
def test_predictions_survive_save_and_load(name: str, trained: Callable[[str], Trained]) -> None:
    job = trained(name)
    inputs = CASES[name].inputs()
    before = job.task.predict(inputs)
    loaded = load(job.directory)
    assert type(loaded) is type(job.task)
    assert loaded.manifest["task"] == name and loaded.ref is not None
    _same(before, loaded.predict(inputs))


@pytest.mark.parametrize("name", task_names())
def test_evaluate_and_report_on_a_loaded_model(name: str, trained: Callable[[str], Trained],
                                               tmp_path: Path) -> None:
    job = trained(name)
    metrics = load(job.directory).evaluate(job.data)
    assert metrics and all(isinstance(v, float) for v in metrics.values())
    fitted = job.task.evaluate(job.data)
    shared = {k for k in metrics if k in fitted and "loss" not in k and "perplexity" not in k}
    for key in shared:  # the same model on the same data: the same held-out scores
        assert metrics[key] == pytest.approx(fitted[key], rel=1e-6), key
    assert isinstance(load(job.directory).report(job.data, tmp_path), list)


@pytest.mark.parametrize("name", task_names())
def test_a_tampered_file_is_refused(name: str, trained: Callable[[str], Trained],
                                    tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(trained(name).directory, copy)
    manifest = read_manifest(copy)
    victim = copy / sorted(manifest["files"])[0]
    victim.write_bytes(victim.read_bytes() + b"\0")
    with pytest.raises(IntegrityError, match="does not match the manifest"):
        load(copy)


@pytest.mark.parametrize("name", task_names())
def test_the_served_route_answers_and_refuses(name: str,
                                              trained: Callable[[str], Trained]) -> None:
    from fastapi.testclient import TestClient

    from zero2one.serving import ServeSettings, create_app

    app = create_app(ServeSettings(model=str(trained(name).directory)))  # type: ignore[call-arg]
    with TestClient(app) as client:
        method, path, body = CASES[name].good
        answer = client.request(method, path, json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()
        method, path, body = CASES[name].bad
        refused = client.request(method, path, json=body)
        assert 400 <= refused.status_code < 500, refused.text
        assert "error" in refused.json()
        assert client.get("/healthz").status_code == 200


def test_duplicate_registration_raises() -> None:
    cls = get_task("tabular-classification")

    class Impostor(cls):  # type: ignore[misc, valid-type]
        pass

    with pytest.raises(ValueError, match="already registered"):
        register_task(Impostor)
    assert register_task(cls) is cls  # the same class again is fine
    with pytest.raises(TypeError, match="not a zero2one Task"):
        register_task(dict)  # type: ignore[arg-type]


def test_example_recipes_name_registered_tasks() -> None:
    for path in sorted((REPO / "recipes").glob("*.yaml")):
        assert load_recipe(path).task in task_names(), path
    assert json.loads(json.dumps(task_names())) == task_names()
