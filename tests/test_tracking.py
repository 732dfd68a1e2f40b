import json
from pathlib import Path

import pandas as pd
import pytest

from zero2one import tracking
from zero2one.api import load, train
from zero2one.errors import DataError, IntegrityError, ModelRefError
from zero2one.refs import resolve
from zero2one.tracking import downloads, store
from zero2one.tracking import sql as tracking_sql

from .conftest import iris_recipe


def tracked(**changes) -> dict:  # type: ignore[no-untyped-def]
    recipe = iris_recipe(track={"enabled": True, "experiment": "tests"}, register="iris-test")
    recipe.update(changes)
    return recipe


def test_train_records_a_complete_run(workspace: Path) -> None:
    result = train(tracked())
    assert result.run_id and result.registered_version == "1"
    run = tracking.get_run(result.run_id)
    assert run["status"] == "FINISHED" and run["experiment"] == "tests"
    assert run["params"]["search.cv"] == "3"
    assert run["params"]["data.source"] == "sklearn:iris"
    assert json.loads(run["params"]["search.space.kernel"]) == ["linear", "rbf"]
    assert run["metrics"]["test_accuracy"] == pytest.approx(result.metrics["accuracy"])
    assert "cv_best_score" in run["metrics"]
    assert run["tags"]["zero2one.task"] == "tabular-classification"
    assert len(run["tags"]["zero2one.data.sha256"]) == 64
    assert len(run["tags"][tracking.MANIFEST_TAG]) == 64
    assert {"recipe.yaml", "data_fingerprint.json", "model/manifest.json", "model/model.skops",
            "plots/confusion_matrix.png", "plots/roc.png", "plots/search_results.png",
            "plots/search_results.csv"} <= set(run["artifacts"])
    assert str(result.model_dir).startswith(str(workspace / ".zero2one" / "artifacts"))
    runs = tracking.list_runs()
    assert [r["run_id"] for r in runs] == [result.run_id]


def test_registry_versions_aliases_and_refs(workspace: Path) -> None:
    first = train(tracked())
    second = train(tracked(seed=1))
    assert (first.registered_version, second.registered_version) == ("1", "2")
    assert tracking.list_models() == [
        {"name": "iris-test", "latest_version": 2, "versions": 2, "aliases": {}}]
    assert tracking.set_alias("iris-test", "champion", "1") == "1"
    champion = load("models:/iris-test@champion")
    assert champion.ref.version == "1"
    assert load("models:/iris-test/2").ref.version == "2"
    assert tracking.set_alias("iris-test", "champion", "latest") == "2"
    assert load("models:/iris-test@champion").ref.version == "2"
    by_run = load(first.model_uri)
    row = pd.DataFrame([{"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2,
                         "petal_width": 2.3}])
    assert by_run.predict(row)["prediction_name"].tolist() == ["virginica"]
    versions = tracking.model_versions("iris-test")
    assert [v["version"] for v in versions] == ["2", "1"]
    assert versions[0]["aliases"] == ["champion"]
    latest = resolve("models:/iris-test/latest")  # MLflow's form, accepted everywhere
    assert (latest.version, latest.task, latest.kind) == ("2", "tabular-classification",
                                                          "registry")
    assert load("models:/iris-test/latest").ref.version == "2"
    with pytest.raises(ModelRefError, match="no registered model named 'nope'"):
        resolve("models:/nope/latest")


def test_tampered_manifest_in_store_is_refused(workspace: Path) -> None:
    result = train(tracked())
    manifest = result.model_dir / "manifest.json"
    data = json.loads(manifest.read_text())
    data["metrics"]["accuracy"] = 1.0
    manifest.write_text(json.dumps(data))
    with pytest.raises(IntegrityError, match="manifest.json changed since the model was logged"):
        load("models:/iris-test/1")
    with pytest.raises(IntegrityError):
        load(result.model_uri)


def test_user_error_leaves_no_run(workspace: Path) -> None:
    recipe = tracked(model={"estimator": "svc", "params": {"C": -1}}, search={"method": "none"})
    with pytest.raises(Exception, match="training failed"):
        train(recipe)
    assert tracking.list_runs() == []
    assert tracking.list_models() == []


def test_data_error_starts_no_run(workspace: Path) -> None:
    recipe = tracked(data={"source": "missing.csv", "target": "y"})
    with pytest.raises(DataError):
        train(recipe)
    assert tracking.list_runs() == []


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("models:/nope/1", "model 'nope' has no version '1'"),
        ("models:/nope@champion", "has no alias 'champion'"),
        ("models:/nope", "bad model reference"),
        ("models:/nope/newest", "bad model reference"),
        ("runs:/0123456789abcdef0123456789abcdef/model", "no run"),
        ("runs:/xyz", "bad run reference"),
        ("builtin:nothing", "unknown built-in model 'nothing'"),
        ("no/such/dir", "not found"),
    ],
)
def test_bad_references(workspace: Path, ref: str, message: str) -> None:
    with pytest.raises(ModelRefError, match=message):
        resolve(ref)


def test_reference_to_a_file(workspace: Path) -> None:
    Path("f.txt").write_text("x")
    with pytest.raises(ModelRefError, match="is a file"):
        resolve("f.txt")


def test_alias_on_missing_version(workspace: Path) -> None:
    train(tracked())
    with pytest.raises(ModelRefError, match="has no version '9'"):
        tracking.set_alias("iris-test", "champion", "9")


def test_tracking_uri_env_points_elsewhere(workspace: Path, monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{other}")
    assert not tracking.is_embedded()
    assert tracking.tracking_uri() == f"sqlite:///{other}"


def test_read_only_queries_match_mlflow(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The listing commands read the embedded SQLite store directly (no MLflow import, ~0.35 s
    instead of ~2.9 s here); they must say exactly what MLflow says."""
    first = train(tracked())
    train(tracked(seed=1))
    tracking.set_alias("iris-test", "champion", "1")
    assert tracking_sql.connect() is not None
    fast = (tracking.list_runs(), tracking.get_run(first.run_id), tracking.list_models(),
            tracking.model_versions("iris-test"), tracking.run_tags(first.run_id),
            tracking.model_version("iris-test", alias="champion").source)
    monkeypatch.setattr(store, "read_only", lambda: None)
    slow = (tracking.list_runs(), tracking.get_run(first.run_id), tracking.list_models(),
            tracking.model_versions("iris-test"), tracking.run_tags(first.run_id),
            tracking.model_version("iris-test", alias="champion").source)
    assert fast == slow


def test_listing_commands_do_not_import_mlflow(workspace: Path) -> None:
    import subprocess
    import sys

    train(tracked())
    code = ("import sys\nfrom zero2one.cli.main import main\n"
            "try:\n    main(['runs', 'list'])\nexcept SystemExit:\n    pass\n"
            "try:\n    main(['models', 'list'])\nexcept SystemExit:\n    pass\n"
            "print('MLFLOW' if 'mlflow' in sys.modules else 'CLEAN')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=workspace)
    assert done.stdout.strip().splitlines()[-1] == "CLEAN"
    assert "iris-test" in done.stdout


def test_a_remote_model_is_downloaded_once_per_version(workspace: Path, iris_model: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A store whose artifacts are not on this disk (a tracking server): a version whose
    manifest digest is known comes from the cache after the first download, by every command
    and server worker; a changed cached copy, or an unknown digest, is fetched again."""
    import shutil

    from zero2one.artifacts import manifest_digest

    fetched: list[str] = []

    def fetch(uri: str, directory: Path) -> Path:
        fetched.append(uri)
        shutil.copytree(iris_model, directory / "model")
        return directory / "model"

    monkeypatch.setattr(tracking_sql, "local_path", lambda uri: None)
    monkeypatch.setattr(downloads, "fetch", fetch)
    digest = manifest_digest(iris_model)
    uri = "mlflow-artifacts:/1/abc/artifacts/model"
    first = tracking.download(uri, expected_manifest=digest)
    again = tracking.download(uri, expected_manifest=digest)
    assert first == again and len(fetched) == 1
    assert manifest_digest(first) == digest and load(first).predict(
        {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    )["prediction"].tolist() == [0]
    assert not [p for p in (workspace / ".zero2one" / "cache").iterdir()
                if p.name.startswith(".")]  # no staging folder left
    (first / "manifest.json").write_text("{}")  # the cached copy changed: fetched again
    repaired = tracking.download(uri, expected_manifest=digest)
    assert len(fetched) == 2 and manifest_digest(repaired) == digest
    tracking.download(uri, expected_manifest="0" * 64)  # another version: its own copy
    tracking.download(uri)
    tracking.download(uri)  # without a digest to check, never trusted: fetched each time
    assert len(fetched) == 5


def test_a_run_the_store_could_not_end_is_marked_failed_by_the_next(
        workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store stops answering as a train ends: the command says so and the run would stay
    RUNNING; the next run started in this workspace marks it FAILED."""
    from mlflow import MlflowClient

    from zero2one.errors import TrackingError

    real = MlflowClient.set_terminated

    def down(self: MlflowClient, run_id: str, status: str | None = None, **kw: object) -> None:
        raise ConnectionError("Connection refused")

    monkeypatch.setattr(MlflowClient, "set_terminated", down)
    with pytest.raises(TrackingError, match="did not record it.*the next command marks it"):
        train(iris_recipe(track={"enabled": True}))
    monkeypatch.setattr(MlflowClient, "set_terminated", real)
    (left,) = (workspace / ".zero2one" / tracking.OPEN_RUNS).iterdir()
    assert tracking.client().get_run(left.name).info.status == "RUNNING"
    result = train(iris_recipe(track={"enabled": True}))
    run = tracking.client().get_run(left.name)
    assert run.info.status == "FAILED" and run.data.tags["zero2one.abandoned"] == "true"
    assert tracking.client().get_run(result.run_id).info.status == "FINISHED"
    assert not list((workspace / ".zero2one" / tracking.OPEN_RUNS).iterdir())


def test_failures_of_the_store_are_told_from_its_answers(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    from mlflow.exceptions import MlflowException

    from zero2one.errors import TrackingError, UserError

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ann")

    def error(code: str) -> object:
        from mlflow.protos.databricks_pb2 import ErrorCode

        return tracking.store_error(MlflowException("x", error_code=ErrorCode.Value(code)),
                                    action="delete run")

    assert isinstance(error("UNAUTHENTICATED"), UserError)
    assert "refused the credentials (HTTP 401)" in str(error("UNAUTHENTICATED"))
    assert str(error("PERMISSION_DENIED")) == (
        "http://127.0.0.1:9: ann may not delete run (HTTP 403); an admin of the server grants "
        "permissions")
    assert error("RESOURCE_DOES_NOT_EXIST") is None  # an answer: callers handle it
    assert error("INVALID_PARAMETER_VALUE") is None
    failed = error("INTERNAL_ERROR")
    assert isinstance(failed, TrackingError) and not isinstance(failed, tracking.Unreachable)
    down = tracking.store_error(ConnectionError("[Errno 111] Connection refused"))
    assert isinstance(down, tracking.Unreachable) and "does not answer (connection refused" in str(
        down)
    cut = tracking.store_error(MlflowException(  # the server killed while it answered
        "API request to http://127.0.0.1:1/api/2.0/mlflow/runs/log-batch failed with exception "
        "('Connection broken: IncompleteRead(0 bytes read, 2 more expected)')"))
    assert isinstance(cut, tracking.Unreachable) and "stopped answering mid-request" in str(cut)
    assert tracking.store_error(UserError("mine")) is None


def test_a_failed_registration_leaves_no_empty_registered_model(
        workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    from zero2one.errors import TrackingError

    def down(self: MlflowClient, *args: object, **kwargs: object) -> None:
        raise ConnectionError("Connection refused")

    monkeypatch.setattr(MlflowClient, "create_model_version", down)
    with pytest.raises(TrackingError, match="does not answer"):
        train(iris_recipe(track={"enabled": True}, register="half"))
    assert tracking.list_models() == []
    (run,) = tracking.list_runs()
    assert run["status"] == "RUNNING"  # the store "was down": the next run marks it failed


def test_promote_writes_the_alias_mlflow_reads(workspace: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """`models promote` on the embedded store writes the alias row itself (0.3 s instead of
    3 s through MLflow): MLflow's own client reads it back, a repoint moves it, and the
    refusals are one line, exit 2."""
    from zero2one.cli.main import main

    for _ in range(2):
        train(iris_recipe(track={"enabled": True}, register="iris-alias"))
    for version in ("1", "latest"):
        with pytest.raises(SystemExit) as done:
            main(["models", "promote", "iris-alias", version, "--alias", "champion"])
        assert done.value.code in (0, None)
        expected = "1" if version == "1" else "2"
        found = tracking.client().get_model_version_by_alias("iris-alias", "champion")
        assert str(found.version) == expected
    for args, message in ((["iris-alias", "1", "--alias", "latest"], "alias 'latest' is "
                           "reserved"), (["iris-alias", "9"], "has no version '9'"),
                          (["nobody", "1"], "has no version")):
        with pytest.raises(SystemExit) as done:
            main(["models", "promote", *args])
        err = capsys.readouterr().err
        assert done.value.code == 2 and message in err and err.count("\n") == 1, err


def test_a_new_workspace_store_starts_from_the_cached_empty_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's schema migrations run once per MLflow version (into the user's cache), not in
    every new workspace; a store that exists is never replaced."""
    import mlflow

    monkeypatch.setenv("ZERO2ONE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(store, "_clients", {})
    for name in ("one", "two"):
        monkeypatch.setenv("ZERO2ONE_HOME", str(tmp_path / name))
        client = tracking.client()
        client.create_experiment(f"made-in-{name}")
        assert [e.name for e in client.search_experiments()] == [f"made-in-{name}", "Default"]
    template = tmp_path / "cache" / "mlflow" / f"empty-store-{mlflow.__version__}.db"
    assert template.is_file() and sorted(p.name for p in template.parent.iterdir()) == [
        template.name]  # no temporary file left
    before = (tmp_path / "one" / "mlflow.db").read_bytes()
    store._seed(tmp_path / "one" / "mlflow.db")
    assert (tmp_path / "one" / "mlflow.db").read_bytes() == before
