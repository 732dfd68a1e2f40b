"""Scale-out with Dask: multi-file sources, training on partitions, search over a cluster and
partitioned scoring, against a real ``dask scheduler`` with two ``dask worker`` processes on
127.0.0.1 (one of which a test kills mid-scoring)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from zero2one import scale
from zero2one.errors import DataError, UserError

from .conftest import free_port, iris_recipe

pytest.importorskip("distributed")


# ---- data -----------------------------------------------------------------------------------

def write_parts(folder: Path, *, parts: int = 4, rows: int = 1500, seed: int = 0,
                suffix: str = ".parquet") -> Path:
    """``parts`` files of a separable two-class problem: numbers with gaps, a category, an id."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(parts):
        X = rng.normal(size=(rows, 3))
        frame = pd.DataFrame(X, columns=["a", "b", "c"])
        frame["color"] = rng.choice(["red", "green", "blue"], rows)
        frame["label"] = ((X[:, 0] - X[:, 1] + (frame["color"] == "red") * 0.5) > 0).astype(int)
        frame.loc[rng.choice(rows, rows // 20, replace=False), "a"] = np.nan
        frame.insert(0, "id", np.arange(i * rows, (i + 1) * rows))
        path = folder / f"part{i}{suffix}"
        if suffix == ".csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
    return folder


def dask_recipe(source: str, **model: Any) -> dict[str, Any]:
    return {
        "task": "tabular-classification", "name": "parts",
        "data": {"source": source, "target": "label", "drop": ["id"], "engine": "dask",
                 "sample_rows": 1000},
        "model": {"estimator": "sklearn.linear_model.SGDClassifier",
                  "params": {"loss": "log_loss", "random_state": 0}, "epochs": 2, **model},
        "track": {"enabled": False},
    }


# ---- a real cluster -------------------------------------------------------------------------

def _dask(*args: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_" + args[0], *args[1:]],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)


class Cluster:
    """``dask scheduler`` and two ``dask worker`` processes (no nanny: a killed worker stays
    dead) on 127.0.0.1."""

    def __init__(self, tmp: Path) -> None:
        self.log = tmp / "dask.log"
        port = free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        self.scheduler = _dask("scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard", log=self.log)
        self.workers = [_dask("worker", self.address, "--nthreads", "1", "--no-nanny",
                              "--memory-limit", "2GiB", "--no-dashboard", "--host",
                              "127.0.0.1", "--local-directory", str(tmp), log=self.log)
                        for _ in range(2)]
        from distributed import Client

        deadline = time.monotonic() + 60
        while True:
            try:
                with Client(self.address, timeout="2s") as client:
                    client.wait_for_workers(2, timeout=60)
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(self.log.read_text()) from None
                time.sleep(0.5)

    def stop(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [*self.workers, self.scheduler]:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    started = Cluster(tmp_path_factory.mktemp("dask"))
    yield started
    started.stop()


# ---- sources: files that agree, and files that do not ---------------------------------------

def test_a_glob_that_matches_nothing_says_so(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no file matches this pattern"):
        scale.expand(str(tmp_path / "nothing-*.parquet"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no .csv or .parquet files"):
        scale.expand(str(tmp_path / "empty"))


def test_files_with_other_columns_or_types_are_named(tmp_path: Path) -> None:
    folder = write_parts(tmp_path / "p", parts=2, rows=50)
    odd = pd.read_parquet(folder / "part1.parquet").drop(columns=["c"])
    odd.to_parquet(tmp_path / "p" / "part2.parquet", index=False)
    with pytest.raises(DataError, match=r"part2.parquet: its columns differ .*missing c"):
        scale.read_frames(str(folder / "*.parquet"))
    odd = pd.read_parquet(folder / "part1.parquet").astype({"b": str})
    odd.to_parquet(tmp_path / "p" / "part2.parquet", index=False)
    with pytest.raises(DataError, match=r"part2.parquet: column 'b' is text but number"):
        scale.read_frames(str(folder / "*.parquet"))

    csv = write_parts(tmp_path / "c", parts=2, rows=50, suffix=".csv")
    text = pd.read_csv(csv / "part1.csv")
    text["a"] = "unknown"
    text.to_csv(csv / "part2.csv", index=False)
    with pytest.raises(DataError, match=r"part2.csv: column 'a' is text but number"):
        scale.read_frames(str(csv / "*.csv"))
    (csv / "part2.csv").unlink()
    pd.read_parquet(folder / "part0.parquet").to_parquet(csv / "x.parquet")
    with pytest.raises(DataError, match="mixes CSV and Parquet"):
        scale.expand(str(csv))


def test_pandas_engine_reads_a_glob_of_small_files_in_memory(workspace: Path) -> None:
    from zero2one.api import train

    write_parts(workspace / "csv", parts=3, rows=200, suffix=".csv")
    recipe = dask_recipe("csv/*.csv")
    recipe["data"]["engine"] = "auto"  # small: stays in pandas, no cluster
    result = train(recipe)
    manifest = json.loads((result.model_dir / "manifest.json").read_text())
    assert "training" not in manifest
    assert manifest["data"]["rows"] == 600
    assert result.metrics["accuracy"] > 0.85


def test_auto_engine_chooses_dask_for_files_beyond_memory_and_says_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from zero2one.tasks.tabular import scaled

    source = str(write_parts(tmp_path / "p", parts=2, rows=50))
    assert scaled.choose_engine(source, "auto") == ("pandas", None)
    assert scaled.choose_engine("sklearn:iris", "auto") == ("pandas", None)
    monkeypatch.setattr(scaled, "_available_memory", lambda: 1000)  # bytes
    engine, why = scaled.choose_engine(source, "auto")
    assert engine == "dask" and why is not None and "reading it with Dask" in why
    assert scaled.choose_engine(source, "pandas") == ("pandas", None)


def test_the_scheduler_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(scale.ENV_ADDRESS, "tcp://10.1.2.3:8786")
    with scale.using():
        assert scale.configured_address() == "tcp://10.1.2.3:8786"
    with scale.using("tcp://127.0.0.1:9"):  # --scheduler wins
        assert scale.configured_address() == "tcp://127.0.0.1:9"
    with pytest.raises(UserError, match="tcp://HOST:PORT"), scale.using("localhost:8786"):
        pass


@pytest.mark.slow  # waits out the connection timeout
def test_an_unreachable_scheduler_fails_fast(tmp_path: Path) -> None:
    started = time.monotonic()
    with scale.using(f"tcp://127.0.0.1:{free_port()}"), pytest.raises(
            UserError, match=r"cannot reach the Dask scheduler .* within 5 s"):
        scale.client()
    assert time.monotonic() - started < 30  # a bound on a hang, not a speed goal


# ---- training on partitions -----------------------------------------------------------------

@pytest.mark.slow
def test_training_on_partitions_learns_from_every_row(workspace: Path, cluster: Cluster) -> None:
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import StandardScaler

    from zero2one.api import load, train
    from zero2one.catalog import get_task

    write_parts(workspace / "data")
    recipe = dask_recipe("data/*.parquet")
    recipe["model"]["preprocess"] = {"impute_numeric": "mean"}
    with scale.using(cluster.address):
        result = train(recipe, out=workspace / "model")
        # the out-of-core statistics equal scikit-learn's fit on the same training rows
        task = get_task("tabular-classification")(
            get_task("tabular-classification").config_model.model_validate(recipe))
        data = task.load_data()
        rows = data.partitions.train.compute()
    assert data.partitions.train_rows == len(rows) and len(rows) + data.partitions.test_rows \
        == 6000
    numeric = rows[["a", "b", "c"]]
    imputed = SimpleImputer(strategy="mean").fit_transform(numeric)
    scaler = StandardScaler().fit(imputed)
    stats = data.partitions.stats
    np.testing.assert_allclose([stats.mean[c] for c in "abc"], scaler.mean_, rtol=1e-9)
    np.testing.assert_allclose([stats.var[c] for c in "abc"], scaler.var_, rtol=1e-9)
    assert stats.categories["color"] == ["blue", "green", "red"]

    manifest = json.loads((result.model_dir / "manifest.json").read_text())
    assert manifest["training"]["mode"] == "incremental"
    assert manifest["training"]["rows"] == len(rows)
    assert manifest["training"]["epochs"] == 2
    assert result.metrics["accuracy"] > 0.9
    model = load(result.model_dir)  # the usual pipeline: loads and predicts without Dask
    scored = model.predict(pd.read_parquet(workspace / "data" / "part0.parquet"),
                           allow_extra=True)
    assert (scored["prediction"] == scored["label"]).mean() > 0.9


@pytest.mark.slow
def test_an_estimator_without_partial_fit_learns_from_a_stated_sample(
        workspace: Path, cluster: Cluster) -> None:
    from zero2one.api import train

    write_parts(workspace / "data", parts=2)
    recipe = dask_recipe("data", estimator="random_forest", params={"n_estimators": 10})
    with scale.using(cluster.address):
        result = train(recipe)
    training = json.loads((result.model_dir / "manifest.json").read_text())["training"]
    assert training["mode"] == "sample"
    assert 900 <= training["rows"] <= 1100  # data.sample_rows: 1000 of ~2100 training rows
    assert "RandomForestClassifier has no partial_fit" in training["reason"]


@pytest.mark.slow
def test_a_search_on_the_cluster_finds_what_a_local_search_finds(workspace: Path,
                                                                 cluster: Cluster) -> None:
    from distributed import Client

    from zero2one.api import train

    def executed() -> int:
        with Client(cluster.address, timeout="5s") as client:
            return sum(client.run(lambda dask_worker: dask_worker.state.executed_count)
                       .values())

    local = train(iris_recipe())
    before = executed()
    with scale.using(cluster.address):  # search.backend auto + a named scheduler: on Dask
        spread = train(iris_recipe())
        middle = executed()
        bayes = train(iris_recipe(search={"method": "bayes", "n_trials": 4, "cv": 3,
                                          "space": {"C": {"low": 0.1, "high": 10,
                                                          "log": True}}}))
    assert middle - before >= 4  # the 4 candidates' folds ran on the workers
    assert executed() - middle >= 4  # and each Optuna trial's
    assert spread.best_params == local.best_params
    assert spread.cv_score == pytest.approx(local.cv_score)
    def by_candidate(table: pd.DataFrame) -> pd.DataFrame:
        return table.drop(columns="fit_time").sort_values(["kernel", "C"], ignore_index=True)

    pd.testing.assert_frame_equal(by_candidate(spread.search_results),
                                  by_candidate(local.search_results))
    assert len(bayes.search_results) == 4 and bayes.metrics["accuracy"] > 0.85


# ---- partitioned scoring --------------------------------------------------------------------

@pytest.mark.slow
def test_predict_engine_dask_writes_every_row_once(workspace: Path, cluster: Cluster,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from zero2one.api import load, train

    from .test_cli import run

    write_parts(workspace / "data", parts=3, suffix=".csv")
    model_dir = train(dask_recipe("data/*.csv") | {"data": {
        "source": "data/*.csv", "target": "label", "drop": ["id"], "engine": "pandas"}},
        out=workspace / "model").model_dir
    code, out, err = run(["predict", str(model_dir), "--input", "data/*.csv", "--output",
                          "scored", "--engine", "dask", "--scheduler", cluster.address,
                          "--json"], capsys)
    assert code == 0, err
    assert json.loads(out) == {"rows": 4500, "partitions": 3, "output": "scored"}
    scored = pd.read_parquet(workspace / "scored").sort_values("id", ignore_index=True)
    assert scored["id"].tolist() == list(range(4500))
    expected = load(model_dir).predict(pd.concat(
        [pd.read_csv(p) for p in sorted((workspace / "data").glob("*.csv"))],
        ignore_index=True))
    np.testing.assert_array_equal(scored["prediction"], expected["prediction"])
    np.testing.assert_allclose(scored["proba_1"], expected["proba_1"], rtol=1e-12)

    code, _, err = run(["predict", str(model_dir), "--input", "data/*.csv", "--output",
                        "scored", "--engine", "dask", "--scheduler", cluster.address], capsys)
    assert code == 2 and "scored already exists" in err  # nothing overwritten
    code, _, err = run(["predict", str(model_dir), "--input", "data/*.csv", "--engine", "dask",
                        "--scheduler", cluster.address], capsys)
    assert code == 2 and "give --output FOLDER" in err
    code, _, err = run(["predict", str(model_dir), "--input", "nothing/*.csv", "--output",
                        "other", "--engine", "dask", "--scheduler", cluster.address], capsys)
    assert code == 2 and "no file matches" in err and not (workspace / "other").exists()


@pytest.mark.slow
def test_a_worker_killed_mid_scoring_loses_and_repeats_no_row(workspace: Path,
                                                              tmp_path: Path) -> None:
    """Partitions slow enough to score (a k-nearest-neighbours model over many rows) that one
    of the two workers is killed while it holds some; Dask runs them again on the other."""
    from distributed import Client

    from zero2one.api import predict_partitions, train

    write_parts(workspace / "data", parts=12, rows=4000)
    recipe = dask_recipe("data/*.parquet", estimator="knn", params={"n_neighbors": 15})
    recipe["data"]["engine"] = "pandas"
    model_dir = train(recipe, out=workspace / "model").model_dir
    cluster = Cluster(tmp_path)
    try:
        done: dict[str, Any] = {}

        def score() -> None:
            try:
                done["result"] = predict_partitions(model_dir, "data/*.parquet", "scored",
                                                    scheduler=cluster.address)
            except BaseException as exc:
                done["error"] = exc

        thread = threading.Thread(target=score)
        thread.start()
        with Client(cluster.address, timeout="5s") as client:
            deadline = time.monotonic() + 120
            victim = None
            while victim is None and time.monotonic() < deadline and thread.is_alive():
                busy = {w: tasks for w, tasks in client.processing().items()
                        if any("score" in str(t).lower() for t in tasks)}
                if len(busy) == 2:  # both scoring: kill the one whose process we know
                    pids = client.run(os.getpid)
                    victim = pids[sorted(busy)[0]]
                time.sleep(0.05)
        assert victim is not None, "the scoring finished before a worker could be killed"
        os.kill(victim, signal.SIGKILL)
        thread.join(timeout=300)
        assert "error" not in done, done.get("error")
        assert done["result"].rows == 48000 and done["result"].partitions == 12
        scored = pd.read_parquet(workspace / "scored")
        assert sorted(scored["id"]) == list(range(48000))  # every row, once
        assert not list((workspace / "scored").glob("*.tmp"))
        assert sum(p.poll() is None for p in cluster.workers) == 1
    finally:
        cluster.stop()
