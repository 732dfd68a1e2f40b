"""Image classifiers written in Keras 3 (``model.arch: keras:model.py:build``), trained, tracked,
saved in the .keras format, loaded in safe mode and served — the guide's CNN verbatim."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from zero2one.api import load, train
from zero2one.catalog import load_recipe
from zero2one.errors import ArtifactError, RecipeError, UserError

from ..conftest import REPO, fit_until_interrupted
from ..serving.conftest import client_for

GUIDE_CNN = (REPO / "examples/keras_cnn.py").read_text()  # the guide's, verbatim


def recipe(arch: str = "keras:model.py:build", **data: Any) -> dict[str, Any]:
    return {"task": "image-classification", "name": "keras-cnn", "seed": 0,
            "data": {"source": "sklearn:digits", "image_size": 32, "channels": 3, **data},
            "model": {"arch": arch},
            "train": {"epochs": 1, "batch_size": 64, "lr": 0.003, "scheduler": "plateau",
                      "augment": {"crop_padding": 2}},
            "register": "keras-cnn"}


def write(workspace: Path, body: str, name: str = "model.py") -> None:
    (workspace / name).write_text(body)


def test_the_arch_is_checked_with_the_recipe(workspace: Path) -> None:
    import yaml

    path = workspace / "r.yaml"
    for arch, message in (("keras:model.py", "write keras:path/to/model.py:function"),
                          ("keras:absent.py:build", "no file absent.py")):
        path.write_text(yaml.safe_dump(recipe(arch)))
        with pytest.raises(RecipeError, match=message):
            load_recipe(path)


def test_keras_models_train_in_one_process(workspace: Path) -> None:
    from zero2one.catalog import get_task

    write(workspace, GUIDE_CNN)
    task_cls = get_task("image-classification")
    with pytest.raises(RecipeError, match="Keras models train in one process"):
        task_cls.check_data_parallel(task_cls.config_model.model_validate(recipe()), 2)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.slow
def test_the_guides_cnn_trains_is_tracked_served_and_predicts(workspace: Path) -> None:
    from sklearn.datasets import load_digits

    write(workspace, GUIDE_CNN)
    result = train(recipe())
    assert result.registered_uri == "models:/keras-cnn/1"
    assert result.metrics["accuracy"] > 0.5  # one epoch; chance is 0.1
    assert (result.model_dir / "model.keras").is_file()
    assert not (result.model_dir / "model.safetensors").exists()

    model = load("models:/keras-cnn/1")
    digits = load_digits()
    images = [png((digits.images[i] * 16).astype("uint8")) for i in range(20)]
    top = model.predict(images)
    assert sum(int(t[0]["label"]) == int(digits.target[i]) for i, t in enumerate(top)) >= 10
    assert model.manifest["libraries"]["keras"].startswith("3.")

    with client_for(result.model_dir) as client:
        answer = client.post("/predict", json={"images": [base64.b64encode(images[0]).decode()]})
    assert answer.status_code == 200, answer.text
    with pytest.raises(UserError, match="Keras models are not exported or compressed yet"):
        model._torch_net()


@pytest.mark.slow
def test_an_interrupted_keras_run_resumes_where_it_stopped(workspace: Path) -> None:
    """Checkpoints hold the Keras model's weights like any torch module's: a run that died in
    epoch 2 resumes from epoch 1's checkpoint and ends where an uninterrupted run ends."""
    write(workspace, GUIDE_CNN)
    cfg = recipe()
    cfg["train"].update(epochs=3, scheduler="cosine")
    cfg.pop("register")
    full = train(cfg, out=workspace / "full")
    task = fit_until_interrupted(cfg, 2)
    assert (task.checkpoint_dir() / "last.pt").exists()
    # the model's file changed since the checkpoint: refused in one line, checkpoint kept
    write(workspace, GUIDE_CNN.replace("Conv2D(32", "Conv2D(16"))
    with pytest.raises(UserError, match="the model's source changed since"):
        train(cfg, out=workspace / "changed", resume=True)
    assert (task.checkpoint_dir() / "last.pt").exists()
    write(workspace, GUIDE_CNN)
    resumed = train(cfg, out=workspace / "resumed", resume=True)
    assert load(workspace / "resumed").manifest["training"]["resumed_from"] == 1
    assert resumed.metrics["accuracy"] == pytest.approx(full.metrics["accuracy"], abs=1e-6)
    assert resumed.metrics["val_loss"] == pytest.approx(full.metrics["val_loss"], rel=1e-4)
    assert (workspace / "resumed" / "model.keras").is_file()


@pytest.mark.slow
@pytest.mark.parametrize(("body", "message"), [
    (GUIDE_CNN.replace("Dense(10", "Dense(4"), "the model has 4 outputs, the data 10 classes"),
    (GUIDE_CNN.replace("(32, 32, 3)", "(28, 28, 1)"),
     r"the model takes \(28, 28, 1\) inputs, the data is \(32, 32, 3\)"),
    (GUIDE_CNN.replace("layers.Flatten(),", "layers.Flatten(), layers.Lambda(lambda x: x * 2),"),
     "Lambda layer"),
    (GUIDE_CNN.replace("return model", "return 3"), "returned a int, not a Keras model"),
    (GUIDE_CNN.replace("def build", "def make"), "defines no build()"),
])
def test_a_model_that_does_not_fit_is_refused_before_training(
        workspace: Path, body: str, message: str) -> None:
    assert body != GUIDE_CNN  # the change applied
    write(workspace, body)
    with pytest.raises(RecipeError, match=message):
        train(recipe())
    assert not (workspace / ".zero2one" / "artifacts").exists() or not list(
        (workspace / ".zero2one" / "artifacts").rglob("model.keras"))


@pytest.mark.slow
def test_a_saved_model_with_code_is_refused_by_safe_mode(tmp_path: Path) -> None:
    from zero2one.tasks.vision import models

    keras = models.keras()
    layer = keras.layers
    unsafe = keras.models.Sequential([layer.Input((4,)), layer.Lambda(lambda x: x + 1),
                                      layer.Dense(2)])
    unsafe.save(tmp_path / "model.keras")
    with pytest.raises(ArtifactError, match="safe_mode refuses"):
        models.load_keras(tmp_path / "model.keras")


@pytest.mark.slow
def test_a_keras_run_reproduces_from_its_commit(workspace: Path) -> None:
    """The model's source is a file of the project: reproduce takes it from the recorded
    commit, even after it changed here."""
    from zero2one.lineage import reproduce

    from ..test_versions import git, init_repo

    init_repo(workspace)
    write(workspace, GUIDE_CNN)
    git(workspace, "add", "model.py")
    git(workspace, "commit", "-qm", "the model")
    first = train(recipe())
    write(workspace, GUIDE_CNN.replace("Dense(10", "Dense(3"))  # today's file would not fit
    again = reproduce(first.run_id or "")
    assert again.reproduced and again.tolerance == 0.01
