"""One contract over every registered task (the scikit-learn ``test_common`` idea)."""

import inspect
from pathlib import Path

import pytest

from zero2one.api import load, train
from zero2one.artifacts import read_manifest
from zero2one.recipe import BaseRecipe, load_recipe
from zero2one.registry import get_task, register_task, task_names
from zero2one.task import Task

from .conftest import REPO

# the smallest recipe per task that trains in seconds
TINY = {
    "tabular-classification": ["search.cv=2", "search.space.C=[1]",
                               "search.space.kernel=[linear]"],
    "tabular-regression": ["search.n_trials=2", "search.cv=2"],
    "image-classification": ["train.epochs=1", "model.arch=seed-cnn", "model.params={}"],
    "text-generation": ["model.base={tiny_lm}", "train.max_steps=2", "data.max_length=128",
                        "eval.samples=1", "eval.sample_tokens=4",
                        "data.source={repo}/examples/zero2one-qa/train.jsonl",
                        "data.val_source={repo}/examples/zero2one-qa/val.jsonl"],
}


def example_recipe(task: str) -> Path:
    for path in sorted((REPO / "recipes").glob("*.yaml")):
        if load_recipe(path).task == task:
            return path
    pytest.fail(f"no example recipe in recipes/ for task {task}")


@pytest.mark.parametrize("name", task_names())
def test_task_class_honours_the_contract(name: str) -> None:
    cls = get_task(name)
    assert issubclass(cls, Task) and cls.name == name
    assert issubclass(cls.config_model, BaseRecipe)
    assert not inspect.isabstract(cls)
    for method in ("load_data", "fit", "evaluate", "predict", "save", "load", "report"):
        assert callable(getattr(cls, method))


@pytest.mark.parametrize("name", task_names())
def test_example_recipe_trains_saves_and_loads(name: str, workspace: Path,
                                               request: pytest.FixtureRequest) -> None:
    # placeholders: the tiny language model (built on first use), the repository (the workspace
    # fixture moves the working directory away from it)
    tiny = [o.replace("{tiny_lm}", str(request.getfixturevalue("tiny_lm"))) if "{tiny_lm}" in o
            else o.replace("{repo}", str(REPO)) for o in TINY[name]]
    result = train(example_recipe(name), overrides=["track.enabled=false", *tiny],
                   out=workspace / "m")
    assert result.metrics and all(isinstance(v, float) for v in result.metrics.values())
    manifest = read_manifest(workspace / "m")
    assert manifest["task"] == name and manifest["metrics"] == result.metrics
    model = load(workspace / "m")
    assert isinstance(model, get_task(name))


def test_duplicate_registration_raises() -> None:
    cls = get_task("tabular-classification")

    class Impostor(cls):  # type: ignore[misc, valid-type]
        pass

    with pytest.raises(ValueError, match="already registered"):
        register_task(Impostor)
    assert register_task(cls) is cls  # the same class again is fine
