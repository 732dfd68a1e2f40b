"""Each registered task's smallest job, what to ask its trained model, and a session cache of
the trained models (the ``trained`` fixture in conftest): shared by the common contract tests
and the deployment tests."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zero2one.api import save_model_dir
from zero2one.catalog import get_task, load_recipe
from zero2one.progress import NullReporter
from zero2one.task import Task

REPO = Path(__file__).resolve().parents[1]


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
        ("POST", "/predict", {"images": [base64.b64encode(_png(9)).decode()]}),
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
    "image-generation": Case(
        REPO / "recipes/digits-diffusion.yaml",
        ["model.text_encoder={tiny_text_encoder}", "model.block_out_channels=[8,16]",
         "model.norm_num_groups=4", "model.attention_head_dim=4", "train.steps=4",
         "train.batch_size=8", "train.sample_every=2", "train.checkpoint_every=2",
         "sample.steps=2", "eval.images_per_prompt=2", "eval.guidance_scales=[1,3]",
         "eval.judge_epochs=1"],
        lambda: ["a handwritten digit one", "a handwritten digit two"],
        ("POST", "/v1/images/generations",
         {"prompt": "a handwritten digit one", "n": 2, "steps": 2, "seed": 0}),
        ("POST", "/v1/images/generations", {"prompt": "", "n": 1}),
        fixtures=["tiny_text_encoder"]),
    "vision-language": Case(
        REPO / "recipes/digits-vlm.yaml",
        ["model.vision={tiny_vision}", "model.lm={tiny_lm}", "train.steps=3",
         "train.batch_size=4", "eval.max_new_tokens=2"],
        lambda: [{"image": _png(0), "question": "Which digit is this?"},
                 {"image": _png(200), "question": "Which digit is this?"}],
        ("POST", "/predict", {"image": base64.b64encode(_png(9)).decode(),
                              "question": "Which digit is this?", "max_tokens": 2}),
        ("POST", "/predict", {"image": "not base64!", "question": "Which digit is this?"}),
        fixtures=["tiny_lm", "tiny_vision"]),
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


def make_trained(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Trained]:
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
            directory = tmp_path_factory.mktemp(name) / "model"
            save_model_dir(task, directory, task.evaluate(data), data)
            _TRAINED[name] = Trained(task, directory, data)
        return _TRAINED[name]

    return get
