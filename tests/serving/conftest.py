from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from zero2one.serving import ServeSettings, create_app

ROW = [5.1, 3.5, 1.4, 0.2]
NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def client_for(model: Path | str, **settings: Any) -> TestClient:
    return TestClient(create_app(ServeSettings(model=str(model), **settings)))


@pytest.fixture
def client(iris_model: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.delenv("ZERO2ONE_API_KEY", raising=False)
    with client_for(iris_model) as c:
        yield c


@pytest.fixture(scope="session")
def proba_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A logistic-regression iris model: it has predict_proba."""
    from zero2one.api import train

    from ..conftest import iris_recipe

    out = tmp_path_factory.mktemp("proba") / "model"
    train(iris_recipe(model={"estimator": "logistic_regression"}, search={"method": "none"}),
          out=out)
    return out
