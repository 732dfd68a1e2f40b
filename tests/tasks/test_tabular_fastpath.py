"""The NumPy replay of the preprocessing must give scikit-learn's answers, or not be used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from zero2one.api import load, train
from zero2one.tasks.tabular.fastpath import compile_pipeline, probe_rows, verified
from zero2one.tasks.tabular.serving import TabularAdapter

from ..conftest import iris_recipe
from ..tasks.test_tabular import csv_recipe, mixed_frame


@pytest.fixture(scope="module")
def mixed_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("mixed")
    frame = mixed_frame(200)
    frame["size"] = np.where(frame["id"] % 2 == 0, "big", "small")
    frame.loc[3::11, "size"] = None
    frame.to_csv(work / "d.csv", index=False)
    recipe = csv_recipe(work / "d.csv", data={"source": str(work / "d.csv"), "target": "label",
                                              "drop": ["id"]},
                        model={"estimator": "random_forest", "params": {"random_state": 0}})
    train(recipe, out=work / "m")
    return work / "m"


def test_mixed_types_missing_and_unseen_values_match_scikit_learn(mixed_model: Path) -> None:
    model = load(mixed_model)
    adapter = TabularAdapter(model, max_rows=1000)
    assert adapter.fast is not None
    rng = np.random.default_rng(1)
    rows = [[float(rng.normal()) if rng.random() > 0.2 else None,
             rng.choice(["red", "green", "blue", "purple", None]),
             rng.choice(["big", "small", "huge", None])] for _ in range(300)]
    fast = adapter.predict([list(r) for r in rows])
    frame = pd.DataFrame(rows, columns=adapter.names)
    expected_labels = model.pipeline_.predict(frame.astype({"x": float}))
    expected_proba = model.pipeline_.predict_proba(frame.astype({"x": float}))
    assert [p for p, _ in fast] == list(expected_labels)
    assert np.allclose([q for _, q in fast], expected_proba)


def test_unsupported_step_keeps_scikit_learns_path(iris_model: Path) -> None:
    from sklearn.preprocessing import FunctionTransformer

    model = load(iris_model)
    pre = model.pipeline_.steps[0][1]
    _, numeric_pipeline, columns = pre.transformers_[0]
    numeric_pipeline.steps.append(("abs", FunctionTransformer(np.abs).fit(np.zeros((1, 4)))))
    try:
        assert compile_pipeline(model.pipeline_, columns, [True] * 4) is None
        adapter = TabularAdapter(model, max_rows=10)
        assert adapter.fast is None
        rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
        expected = model.pipeline_.predict(pd.DataFrame(rows, columns=columns)).tolist()
        assert [p for p, _ in adapter.predict(rows)] == expected
    finally:
        numeric_pipeline.steps.pop()


def test_verification_rejects_a_wrong_transform(iris_model: Path) -> None:
    model = load(iris_model)
    names = [c.name for c in model.columns_]
    probe = probe_rows(model.pipeline_, names, [True] * 4)
    transform = compile_pipeline(model.pipeline_, names, [True] * 4)
    assert transform is not None and verified(model.pipeline_, transform, probe, names)
    assert not verified(model.pipeline_, lambda rows: np.zeros((len(rows), 4)), probe, names)


def test_unscaled_unimputed_pipelines_compile(workspace: Path) -> None:
    recipe = iris_recipe(model={"estimator": "knn", "preprocess": {"scale": False,
                                                                    "impute_numeric": None}},
                         search={"method": "none"})
    train(recipe, out=workspace / "m")
    adapter = TabularAdapter(load(workspace / "m"), max_rows=10)
    assert adapter.fast is not None
    assert adapter.predict([[5.1, 3.5, 1.4, 0.2]])[0][0] == 0


def test_missing_value_without_imputer_is_a_422(workspace: Path) -> None:
    from tests.serving.conftest import client_for

    recipe = iris_recipe(model={"estimator": "svc", "preprocess": {"impute_numeric": None}},
                         search={"method": "none"})
    train(recipe, out=workspace / "m")
    with client_for(workspace / "m") as client:
        response = client.post("/predict", json={"features": [5.1, None, 1.4, 0.2]})
        assert response.status_code == 422
        assert "no imputer" in response.json()["error"]["message"]
        assert client.post("/predict", json={"features": [5.1, 3.5, 1.4, 0.2]}).json()[
            "result"] == [0]
