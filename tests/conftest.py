"""Shared fixtures: an isolated workspace per test, tiny recipes, a trained iris model."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def _template_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store, created once (its migrations take seconds) and copied."""
    import os

    from zero2one import tracking

    home = tmp_path_factory.mktemp("template")
    old = os.environ.get("ZERO2ONE_HOME")
    os.environ["ZERO2ONE_HOME"] = str(home)
    try:
        tracking.client().search_experiments()
    finally:
        if old is None:
            os.environ.pop("ZERO2ONE_HOME", None)
        else:
            os.environ["ZERO2ONE_HOME"] = old
    return home / "mlflow.db"


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _template_store: Path) -> Path:
    """A fresh working directory whose ``.zero2one`` store starts empty."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    home = tmp_path / ".zero2one"
    home.mkdir()
    shutil.copy(_template_store, home / "mlflow.db")
    monkeypatch.setenv("ZERO2ONE_HOME", str(home))
    return tmp_path


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for a server a test starts."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def iris_recipe(**changes: Any) -> dict[str, Any]:
    """A small, fast iris recipe (a 4-candidate grid, 3 folds); ``changes`` replace sections."""
    recipe: dict[str, Any] = {
        "task": "tabular-classification",
        "name": "iris-test",
        "data": {"source": "sklearn:iris"},
        "model": {"estimator": "svc"},
        "search": {"method": "grid", "space": {"kernel": ["linear", "rbf"], "C": [1, 10]},
                   "cv": 3},
        "track": {"enabled": False},
    }
    recipe.update(changes)
    return recipe


@pytest.fixture(scope="session")
def iris_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained, untracked iris model directory shared by read-only tests."""
    from zero2one.api import train

    out = tmp_path_factory.mktemp("iris") / "model"
    train(iris_recipe(), out=out)
    return out
