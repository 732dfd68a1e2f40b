"""Data sense on a messy table: a customer id, missing values, Chinese free-text categories and
a rare positive class (about 7 %)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from zero2one.api import load, train
from zero2one.errors import RecipeError, SchemaError
from zero2one.tasks.tabular.profile import profile_frame


def churn_table(n: int = 1200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, n).astype(float)
    monthly = rng.normal(70, 20, n)
    plan = rng.choice(["基础版", "标准版", "高级版"], n)
    logit = -3.2 + 0.04 * (monthly - 70) - 0.04 * (tenure - 36) + 1.2 * (plan == "基础版")
    churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    monthly[rng.random(n) < 0.1] = np.nan  # missing values
    frame = pd.DataFrame({
        "customer_id": np.arange(100_001, 100_001 + n),  # unique, monotonic: an identifier
        "account": [str(uuid.UUID(int=int(rng.integers(2**62)))) for _ in range(n)],
        "tenure": tenure, "monthly": monthly,
        "plan": pd.Series(plan).where(rng.random(n) > 0.05, None),  # missing categories
        "region": rng.choice(["华北", "华东", "华南", "西部"], n),
        "churned": churned,
    })
    return frame


@pytest.fixture
def churn_csv(workspace: Path) -> Path:
    path = workspace / "churn.csv"
    churn_table().to_csv(path, index=False)
    return path


def recipe(path: Path, **model: Any) -> dict[str, Any]:
    return {"task": "tabular-classification", "name": "churn",
            "data": {"source": str(path), "target": "churned"},
            "model": {"estimator": "logistic_regression", **model},
            "track": {"enabled": False}}


def test_profile_flags_ids_imbalance_and_leaks() -> None:
    frame = churn_table()
    frame["churn_flag_copy"] = frame["churned"].map({0: "no", 1: "yes"})  # a leak
    frame["constant"] = 1
    profile = profile_frame(frame, target="churned", kind="classification")
    flags = {c.name: c.flags for c in profile.columns}
    assert flags["customer_id"] == ["identifier"] and flags["account"] == ["identifier"]
    assert flags["constant"] == ["constant"] and "leak" in flags["churn_flag_copy"]
    assert flags["tenure"] == [] and flags["plan"] == [] and flags["region"] == []
    assert profile.excluded == ["customer_id", "account"]
    assert 0.04 < (profile.minority_share or 0) < 0.12
    text = " ".join(profile.warnings)
    assert "class imbalance" in text and "'customer_id' looks like an identifier" in text
    kept = profile_frame(frame, target="churned", kind="classification",
                         keep=("customer_id",))
    assert kept.excluded == ["account"]


def test_a_rare_class_table_trains_without_ids_and_beats_the_baseline(
        churn_csv: Path, caplog: pytest.LogCaptureFixture) -> None:
    result = train(recipe(churn_csv, class_weight="balanced"), out=churn_csv.parent / "m")
    assert any("class imbalance" in r.getMessage() for r in caplog.records)
    manifest = json.loads((churn_csv.parent / "m/manifest.json").read_text())
    features = [c["name"] for c in manifest["input_schema"]["columns"]]
    assert "customer_id" not in features and "account" not in features
    assert set(manifest["input_schema"]["ignored"]) == {"customer_id", "account"}
    assert manifest["data"]["class_counts"]["1"] < manifest["data"]["class_counts"]["0"] / 5
    m = result.metrics
    assert m["baseline_accuracy"] > 0.85 and m["baseline_recall_macro"] == 0.5
    assert m["pr_auc"] > 2 * m["baseline_pr_auc"], m  # the model finds the rare class
    assert m["recall.1"] > 0.5  # balanced weights: the rare class is not ignored
    # no one-hot of an id column: kept on purpose, the UUIDs make the model far larger
    with_ids = recipe(churn_csv, class_weight="balanced")
    with_ids["data"]["keep"] = ["customer_id", "account"]
    train(with_ids, out=churn_csv.parent / "with-ids")
    size = (churn_csv.parent / "m/model.skops").stat().st_size
    assert (churn_csv.parent / "with-ids/model.skops").stat().st_size > 3 * size  # 4× here

    model = load(churn_csv.parent / "m")
    rows = pd.read_csv(churn_csv).head(5)  # id columns included: accepted and ignored
    assert list(model.predict(rows)["prediction"]) == list(
        model.predict(rows.drop(columns=["customer_id", "account"]))["prediction"])
    with pytest.raises(SchemaError, match="--allow-extra"):
        model.predict(rows.assign(surprise=1))
    assert len(model.predict({"tenure": 3, "monthly": 99.0, "plan": "基础版",
                              "region": "华北"})) == 1


def test_served_records_may_carry_ignored_columns(churn_csv: Path) -> None:
    from fastapi.testclient import TestClient

    from zero2one.serving import ServeSettings, create_app

    train(recipe(churn_csv), out=churn_csv.parent / "m")
    app = create_app(ServeSettings(model=str(churn_csv.parent / "m")))  # type: ignore[call-arg]
    record = {"customer_id": 7, "account": "x", "tenure": 3, "monthly": 99.0,
              "plan": "基础版", "region": "华北"}
    with TestClient(app) as client:
        assert client.post("/predict", json={"records": [record]}).status_code == 200
        refused = client.post("/predict", json={"records": [{**record, "surprise": 1}]})
        assert refused.status_code == 422 and "surprise" in refused.text


def test_class_weight_oversamples_for_estimators_without_weights(churn_csv: Path) -> None:
    """knn has no class_weight: the minority class is oversampled in each training fold; the
    saved model is a plain two-step pipeline (the sampler acts only while fitting)."""
    search = {"method": "grid", "space": {"n_neighbors": [5, 15]}, "cv": 3}
    plain = train({**recipe(churn_csv, estimator="knn"), "search": search},
                  out=churn_csv.parent / "plain").metrics
    balanced = train({**recipe(churn_csv, estimator="knn", class_weight="balanced"),
                      "search": search}, out=churn_csv.parent / "balanced").metrics
    assert balanced["recall.1"] > plain["recall.1"] + 0.2, (balanced, plain)
    model = load(churn_csv.parent / "balanced")
    assert [name for name, _ in model.pipeline_.steps] == ["preprocess", "model"]
    assert type(model.pipeline_).__module__.startswith("sklearn.")


def test_data_profile_command(churn_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from zero2one.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["data", "profile", str(churn_csv), "--target", "churned", "--json"])
    assert exit_info.value.code == 0
    profile = json.loads(capsys.readouterr().out)
    assert profile["excluded"] == ["customer_id", "account"]


def test_decision_threshold_is_chosen_for_the_named_metric(churn_csv: Path) -> None:
    plain = train(recipe(churn_csv), out=churn_csv.parent / "plain").metrics
    chosen = train({**recipe(churn_csv, decision_threshold="f1")},
                   out=churn_csv.parent / "tuned").metrics
    # scores from predict_proba: the default threshold is 0.5; F1 on the rare class wants lower
    assert 0 < chosen["decision_threshold"] < 0.5
    assert chosen["f1.1"] > plain["f1.1"], (chosen["f1.1"], plain["f1.1"])
    model = load(churn_csv.parent / "tuned")  # saved and loaded with the threshold
    rows = pd.read_csv(churn_csv).head(50)
    assert model.predict(rows)["prediction"].sum() >= load(
        churn_csv.parent / "plain").predict(rows)["prediction"].sum()
    from fastapi.testclient import TestClient

    from zero2one.serving import ServeSettings, create_app

    app = create_app(ServeSettings(model=str(churn_csv.parent / "tuned")))  # type: ignore[call-arg]
    records = rows.drop(columns=["churned"]).astype(object).where(rows.notna(), None)
    with TestClient(app) as client:  # the server's fast path applies the same threshold
        served = client.post("/predict", json={"records": records.to_dict("records")})
    assert served.status_code == 200, served.text
    assert served.json()["result"] == model.predict(rows)["prediction"].tolist()
    with pytest.raises(RecipeError, match="applies to two classes"):
        train({"task": "tabular-classification", "name": "iris", "track": {"enabled": False},
               "data": {"source": "sklearn:iris"}, "model": {"estimator": "svc",
                                                             "decision_threshold": "f1"}})


class _Said:
    """A reporter that keeps what it is told."""

    def __init__(self) -> None:
        from zero2one.progress import NullReporter

        self.inner, self.lines = NullReporter(), []

    def step(self, description: str, total: int | None = None) -> Any:
        return self.inner.step(description, total)

    def info(self, message: str) -> None:
        self.lines.append(message)

    def metrics(self, values: dict[str, float], step: int) -> None: ...

    def image(self, tag: str, image: Any, step: int) -> None: ...

    def text(self, tag: str, text: str, step: int) -> None: ...


@pytest.fixture
def yes_no_csv(workspace: Path) -> Path:
    """The churn table with "yes"/"no" labels: binary metrics must not assume pos_label=1."""
    frame = churn_table(n=600)
    frame["churned"] = frame["churned"].map({0: "no", 1: "yes"})
    path = workspace / "yes_no.csv"
    frame.to_csv(path, index=False)
    return path


def test_text_labels_work_with_every_imbalance_remedy(yes_no_csv: Path) -> None:
    """The documented remedies — a binary scorer in the search, a tuned threshold, class
    weights — on "yes"/"no" labels: the minority class is the positive one, and said so."""
    said = _Said()
    tuned = {**recipe(yes_no_csv, decision_threshold="f1", class_weight="balanced"),
             "search": {"method": "grid", "space": {"C": [0.1, 1.0]}, "scoring": "f1",
                        "cv": 3}}
    result = train(tuned, out=yes_no_csv.parent / "f1", reporter=said)
    assert any("positive class: 'yes', the minority" in line for line in said.lines), said.lines
    metrics = result.metrics
    assert metrics["f1"] == pytest.approx(metrics["f1.yes"])  # the binary f1 is about 'yes'
    assert 0 < metrics["pr_auc"] <= 1 and metrics["baseline_pr_auc"] < 0.2
    assert 0 < metrics["decision_threshold"] < 1
    model = load(yes_no_csv.parent / "f1")
    assert model.manifest["positive_class"] == "yes"
    assert set(model.predict(pd.read_csv(yes_no_csv).head(40))["prediction"]) <= {"yes", "no"}
    assert (yes_no_csv.parent / "f1" / "report" / "roc.png").is_file()
    for scoring in ("average_precision", "precision", "recall", "neg_brier_score"):
        searched = train({**recipe(yes_no_csv), "search": {
            "method": "grid", "space": {"C": [1.0]}, "scoring": scoring, "cv": 3}},
            out=yes_no_csv.parent / scoring)
        assert searched.cv_score is not None and np.isfinite(searched.cv_score), scoring


def test_positive_class_chosen_in_the_recipe(yes_no_csv: Path) -> None:
    minority = train({**recipe(yes_no_csv)}, out=yes_no_csv.parent / "a").metrics
    # `no` in YAML (or --set) is a boolean: it still names the class "no"
    majority = train({**recipe(yes_no_csv), "data": {"source": str(yes_no_csv),
                                                     "target": "churned",
                                                     "positive_class": False}},
                     out=yes_no_csv.parent / "b").metrics
    assert majority["f1"] == pytest.approx(majority["f1.no"])
    assert majority["pr_auc"] > minority["pr_auc"]  # the common class is easier to rank
    assert majority["baseline_pr_auc"] == pytest.approx(1 - minority["baseline_pr_auc"])
    assert load(yes_no_csv.parent / "b").manifest["positive_class"] == "no"


def test_positive_class_errors(yes_no_csv: Path) -> None:
    from zero2one.errors import DataError

    bad = {**recipe(yes_no_csv), "data": {"source": str(yes_no_csv), "target": "churned",
                                          "positive_class": "maybe"}}
    with pytest.raises(DataError, match=r"positive_class 'maybe' is not a class .* no, yes"):
        train(bad)
    with pytest.raises(RecipeError, match="positive_class applies to two classes"):
        train({"task": "tabular-classification", "name": "iris", "track": {"enabled": False},
               "data": {"source": "sklearn:iris", "positive_class": 1},
               "model": {"estimator": "svc"}})


def test_breast_cancer_positive_class_by_name() -> None:
    """A built-in data set's class names name the positive class too; without one, the
    minority ("malignant", label 0) is positive."""
    base = {"task": "tabular-classification", "name": "bc", "track": {"enabled": False},
            "model": {"estimator": "logistic_regression", "params": {"max_iter": 2000}}}
    default = train({**base, "data": {"source": "sklearn:breast_cancer"}}).metrics
    named = train({**base, "data": {"source": "sklearn:breast_cancer",
                                    "positive_class": "benign"}}).metrics
    assert default["recall"] == pytest.approx(default["recall.malignant"])
    assert named["recall"] == pytest.approx(named["recall.benign"])
