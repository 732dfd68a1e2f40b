"""track.tensorboard: TensorBoard event files beside MLflow for the deep-learning tasks, and
``zero2one tensorboard``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from zero2one import tracking
from zero2one.api import train
from zero2one.catalog import load_recipe
from zero2one.errors import UserError

from .cases import CASES
from .conftest import free_port, iris_recipe, wait_healthy
from .test_cli import run

pytest.importorskip("tensorboard")


def events(workspace: Path) -> object:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (logdir,) = (workspace / ".zero2one" / "tensorboard").iterdir()
    accumulator = EventAccumulator(str(logdir), size_guidance={"images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def case_recipe(name: str, request: pytest.FixtureRequest, *more: str) -> object:
    case = CASES[name]
    values = {f: str(request.getfixturevalue(f)) for f in case.fixtures}
    overrides = [o.format(**values) if "{" in o and values else o for o in case.overrides]
    return load_recipe(case.recipe, [*overrides, "track.tensorboard=true", *more])


def test_an_image_classifier_writes_its_curves(workspace: Path,
                                               request: pytest.FixtureRequest) -> None:
    result = train(case_recipe("image-classification", request, "train.epochs=2",
                               "register=null"))
    board = events(workspace)
    scalars = board.Tags()["scalars"]  # type: ignore[attr-defined]
    assert {"train_loss", "val_loss", "val_accuracy", "lr"} <= set(scalars)
    assert [e.step for e in board.Scalars("val_loss")] == [1, 2]  # type: ignore[attr-defined]
    tags = tracking.run_tags(result.run_id or "")
    assert Path(tags["zero2one.tensorboard"]).parent == workspace / ".zero2one" / "tensorboard"


def test_an_image_generator_writes_its_sample_grids(workspace: Path,
                                                    request: pytest.FixtureRequest) -> None:
    train(case_recipe("image-generation", request, "track.enabled=false"))
    board = events(workspace)
    assert "samples" in board.Tags()["images"]  # type: ignore[attr-defined]
    assert {"loss", "lr"} <= set(board.Tags()["scalars"])  # type: ignore[attr-defined]


def test_a_language_model_writes_its_sample_answers(workspace: Path,
                                                    request: pytest.FixtureRequest) -> None:
    train(case_recipe("text-generation", request, "track.enabled=false"))
    board = events(workspace)
    (tag,) = [t for t in board.Tags()["tensors"] if t.startswith("samples")]  # type: ignore[attr-defined]
    text = board.Tensors(tag)[0].tensor_proto.string_val[0].decode()  # type: ignore[attr-defined]
    assert "*base*:" in text and "*tuned*:" in text


def test_tabular_training_has_no_curves_to_show(workspace: Path) -> None:
    with pytest.raises(UserError, match="TensorBoard is for the deep-learning tasks"):
        train(iris_recipe(track={"enabled": False, "tensorboard": True}))
    assert not (workspace / ".zero2one" / "tensorboard").exists()


def test_the_command_needs_event_files(workspace: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["tensorboard"], capsys)
    assert code == 2 and "no TensorBoard event files" in err


@pytest.mark.slow
def test_the_command_serves_them(workspace: Path) -> None:
    (workspace / ".zero2one" / "tensorboard" / "x").mkdir(parents=True)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "zero2one.cli.main", "tensorboard", "--port", str(port)],
        cwd=workspace, env={**os.environ}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/", process, timeout=90, what="tensorboard")
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)
