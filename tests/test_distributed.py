"""``zero2one train --nproc N``: data-parallel training through torch.distributed.run (gloo on
CPU), against one process with the same global batch; a rank killed mid-run, then --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import nn

from .conftest import REPO, iris_recipe

PLAIN = "tests.test_distributed.PlainCNN"


class PlainCNN(nn.Module):
    """A CNN without batch norm, whose data-parallel step is exactly one process's."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(),
                                  nn.MaxPool2d(2), nn.Flatten(),
                                  nn.Linear(8 * (image_size // 2) ** 2, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def digits(arch: str = PLAIN, **train: Any) -> dict[str, Any]:
    """Digits with augmentation and no dropout, so one process and two draw the same random
    numbers."""
    return {
        "task": "image-classification", "name": "ddp-digits", "seed": 0,
        "data": {"source": "sklearn:digits", "val_size": 0.15, "test_size": 0.15},
        "model": {"arch": arch,
                  "params": {"width": 8, "dropout": 0.0} if arch == "small-cnn" else {}},
        "train": {"epochs": 2, "batch_size": 32, "lr": 0.003, "threads": 1,
                  "augment": {"crop_padding": 1}, **train},
        "track": {"enabled": False},
    }


def cli(*args: str, cwd: Path, **popen: Any) -> Any:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "zero2one.cli.main", *args]
    if popen:
        return subprocess.Popen(command, cwd=cwd, env=env, **popen)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600, check=False)


def weights(model_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(model_dir / "model.safetensors")


def one_and_two(workspace: Path, recipe: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    from zero2one.api import train

    (workspace / "r.yaml").write_text(yaml.safe_dump(recipe))
    one = train(recipe, out=workspace / "one")
    done = cli("train", "r.yaml", "--nproc", "2", "--out", "two", "--json", cwd=workspace)
    assert done.returncode == 0, done.stderr
    return one, json.loads(done.stdout)  # rank 0 alone prints the result


@pytest.mark.slow
def test_two_processes_learn_what_one_learns_from_the_same_global_batch(workspace: Path
                                                                         ) -> None:
    """Each rank takes half of every batch of 32 and DDP averages the gradients: after two
    epochs the weights equal one process's up to float summation order."""
    one, two = one_and_two(workspace, digits())
    ours = weights(workspace / "two")
    for name, tensor in weights(one.model_dir).items():
        torch.testing.assert_close(ours[name], tensor, atol=1e-5, rtol=1e-4, msg=name)
    assert two["metrics"]["accuracy"] == pytest.approx(one.metrics["accuracy"], abs=1e-9)
    manifest = json.loads((workspace / "two" / "manifest.json").read_text())
    assert len(manifest["training"]["history"]) == 2
    assert manifest["training"]["processes"] == 2


@pytest.mark.slow
def test_batch_norm_learns_alike_from_halves_of_the_batch(workspace: Path) -> None:
    """On CPUs batch norm normalises each rank's half of the batch with that half's
    statistics (torch's SyncBatchNorm is GPU-only), so the weights drift apart a little; the
    model is as good (held-out accuracy within 0.03 after four epochs)."""
    one, two = one_and_two(workspace, digits("small-cnn", epochs=4))
    assert two["metrics"]["accuracy"] == pytest.approx(one.metrics["accuracy"], abs=0.03)
    assert two["metrics"]["accuracy"] > 0.8


@pytest.mark.slow
def test_a_killed_rank_stops_the_run_and_resume_finishes_it(workspace: Path) -> None:
    import psutil

    (workspace / "r.yaml").write_text(yaml.safe_dump(digits("small-cnn", epochs=4)))
    launcher = cli("train", "r.yaml", "--nproc", "2", "--out", "m", cwd=workspace,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoints = workspace / ".zero2one" / "checkpoints"
    deadline = time.monotonic() + 300
    while not list(checkpoints.glob("*/last.pt")) and time.monotonic() < deadline:
        assert launcher.poll() is None, launcher.communicate()[1]
        time.sleep(0.2)
    ranks = [p for p in psutil.Process(launcher.pid).children(recursive=True)
             if p.environ().get("RANK") == "1"]
    assert ranks, "no rank 1 process found"
    ranks[0].send_signal(signal.SIGKILL)
    _, err = launcher.communicate(timeout=300)
    assert launcher.returncode == 2
    assert "data-parallel training stopped: a process failed" in err
    assert "--nproc 2 --resume" in err
    assert not (workspace / "m").exists()

    done = cli("train", "r.yaml", "--nproc", "2", "--out", "m", "--resume", cwd=workspace)
    assert done.returncode == 0, done.stderr
    assert "resuming after epoch" in done.stderr
    manifest = json.loads((workspace / "m" / "manifest.json").read_text())
    assert [row["epoch"] for row in manifest["training"]["history"]] == list(range(1, 5))
    assert not list(checkpoints.glob("*/last.pt"))  # done: removed by rank 0


@pytest.mark.slow  # a CLI process for each refusal
def test_nproc_is_refused_where_it_cannot_work(workspace: Path) -> None:
    (workspace / "tab.yaml").write_text(yaml.safe_dump(iris_recipe()))
    done = cli("train", "tab.yaml", "--nproc", "2", cwd=workspace)
    assert done.returncode == 2
    assert "tabular-classification recipes do not train data-parallel" in done.stderr
    (workspace / "r.yaml").write_text(yaml.safe_dump(digits(batch_size=4)))
    done = cli("train", "r.yaml", "--nproc", "8", cwd=workspace)
    assert done.returncode == 2
    assert "8 processes cannot share batches of train.batch_size=4" in done.stderr
    done = cli("train", "r.yaml", "--nproc", "2", "--nnodes", "2", cwd=workspace)
    assert done.returncode == 2 and "--rdzv-endpoint" in done.stderr


@pytest.mark.slow
def test_a_language_model_fine_tunes_in_two_processes(workspace: Path, tiny_lm: Path) -> None:
    """The Trainer's own data-parallel path: each rank takes half of the global batch of 4
    (batch_size 4 → 2 per process); the run trains, evaluates and registers from rank 0."""
    from .cases import CASES

    case = CASES["text-generation"]
    overrides = [o.format(tiny_lm=tiny_lm) for o in case.overrides]
    sets = [a for o in [*overrides, "train.max_steps=4", "train.batch_size=4"]
            for a in ("--set", o)]
    done = cli("train", str(case.recipe), *sets, "--nproc", "2", "--out", "lm", "--json",
               cwd=workspace)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    manifest = json.loads((workspace / "lm" / "manifest.json").read_text())
    assert manifest["training"]["steps"] == 4
    assert result["metrics"]["val_loss"] > 0
    odd = cli("train", str(case.recipe), *sets, "--set", "train.batch_size=3", "--set",
              "train.gradient_accumulation=1", "--nproc", "2", cwd=workspace)
    assert odd.returncode == 2
    assert "2 processes cannot share a global batch of train.batch_size=3" in odd.stderr
