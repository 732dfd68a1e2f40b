"""One contract over every registered task, plugins included (scikit-learn's
``check_estimator`` idea): each check runs for each task, so a new task is held to all of them.

A task that has no case in ``tests/cases.py`` fails :func:`test_every_task_has_a_case`: adding
a task means adding its smallest recipe and one good and one bad request there.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from zero2one.api import load
from zero2one.artifacts import read_manifest
from zero2one.errors import IntegrityError, RecipeError
from zero2one.recipe import BaseRecipe, read_yaml
from zero2one.registry import get_task, load_recipe, register_task, task_names, validate
from zero2one.task import Task

from .cases import CASES, REPO, Trained


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
def test_the_model_records_its_data(name: str, trained: Callable[[str], Trained]) -> None:
    """Every task's data carries its source and fingerprint (zero2one.task.TaskData), and the
    manifest records them — the plug-in's too (its dict-shaped data used to record nothing)."""
    from zero2one.task import TaskData

    job = trained(name)
    assert isinstance(job.data, TaskData)
    data = load(job.directory).manifest["data"]
    assert data["source"] == job.data.source
    assert data["sha256"] == job.data.fingerprint["sha256"] and len(data["sha256"]) == 64


def test_data_without_a_fingerprint_is_refused_before_any_work(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from zero2one.api import train
    from zero2one.errors import ContractError
    from zero2one.registry import get_task

    cls = get_task("tabular-classification")
    monkeypatch.setattr(cls, "load_data", lambda self: {"x": [1, 2, 3]})
    with pytest.raises(ContractError, match="load_data\\(\\) returned a dict without a source "
                                            "and a fingerprint"):
        train({"task": "tabular-classification", "name": "no-prints",
               "data": {"source": "sklearn:iris"}, "model": {"estimator": "svc"},
               "track": {"enabled": False}})


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
    with pytest.raises(IntegrityError, match="does not match the manifest") as raised:
        load(copy)
    assert str(victim.relative_to(copy)) in str(raised.value)  # it names the file


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
