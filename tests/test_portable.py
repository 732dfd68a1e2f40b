"""Every zero2one model is also an MLflow model (python_function flavor, models from code) and
carries a model card: MLflow's own loader, validator and server use them, the hash checks run
inside MLflow's load, and ``zero2one models upgrade`` gives older models both."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from zero2one.catalog import get_task, task_names
from zero2one.cli.main import app
from zero2one.portable import CARD, CODE_FILE, MLMODEL
from zero2one.refs import load
from zero2one.testing import check_mlflow_model

from .conftest import REPO, free_port, iris_recipe, wait_healthy
from .serving.test_process import call

mlflow = pytest.importorskip("mlflow")


def _register(directory: Path, name: str) -> str:
    """``directory`` logged to a run and registered as ``name``, as training does; MLflow's
    client pointed at the workspace's store."""
    from zero2one import tracking
    from zero2one.artifacts import manifest_digest

    with tracking.start_run("portable", run_name=name, tags={}) as run:
        run.log_artifacts(directory, tracking.MODEL_PATH)
    version = tracking.register_model(name, run, manifest_sha256=manifest_digest(directory))
    mlflow.set_tracking_uri(tracking.tracking_uri())
    mlflow.set_registry_uri(tracking.tracking_uri())
    return f"models:/{name}/{version}"


def _native(name: str, ref: str, frame: pd.DataFrame, params: dict[str, Any]) -> list[Any]:
    """What zero2one's own API predicts for the same inputs, in the flavor's first column."""
    model = load(ref)
    if name in ("tabular-classification", "tabular-regression"):
        return model.predict(frame)["prediction"].tolist()
    if name == "image-classification":
        return [top[0]["label"] for top in model.predict(frame["image"].tolist(),
                                                         top_k=params["top_k"])]
    if name == "text-generation":
        return model.predict(frame["prompt"].tolist(), max_new_tokens=params["max_new_tokens"])
    if name == "image-generation":
        return model.predict(frame, seed=params["seed"])["image"].tolist()
    if name == "vision-language":
        return model.predict([{"image": i, "question": q} for i, q in
                              zip(frame["image"], frame["question"], strict=True)],
                             max_new_tokens=params["max_new_tokens"])
    return list(model.predict(frame))  # a task from another package: rows in, one value each


@pytest.mark.parametrize("name", task_names())
def test_every_task_is_an_mlflow_model(name: str, trained: Any) -> None:
    """zero2one.testing's check (MLflow's loader and serving validation on the logged example),
    then MLflow's answer against what zero2one.load answers for the same inputs; the card
    parses as a Hugging Face model card and names the metrics and baselines."""
    from huggingface_hub import ModelCard

    job = trained(name)
    directory = job.directory
    check_mlflow_model(get_task(name), job)
    for file in (MLMODEL, CODE_FILE, "requirements.txt", "python_env.yaml", CARD):
        assert (directory / file).is_file(), file
    uri = _register(directory, f"case-{name}")
    model = mlflow.pyfunc.load_model(uri)  # MLflow downloads the version, then loads it
    example = model.input_example
    assert isinstance(example, pd.DataFrame) and len(example) >= 1
    params = {p.name: p.default for p in (model.metadata.signature.params or [])}
    got = model.predict(example)
    assert len(got) == len(example)
    assert got.iloc[:, 0].tolist() == _native(name, uri, example, params)
    requirements = (directory / "requirements.txt").read_text().splitlines()
    assert requirements[0].startswith("zero2one==") and any(
        r.startswith("mlflow==") for r in requirements)
    card = ModelCard.load(directory / CARD)
    assert card.data.library_name == "zero2one" and name in card.data.tags
    manifest = json.loads((directory / "manifest.json").read_text())
    assert card.data.zero2one["data"]["sha256"] == manifest["data"]["sha256"]
    metrics = {k for k, v in manifest["metrics"].items() if isinstance(v, int | float)}
    if metrics:
        assert {r.metric_type for r in card.data.eval_results} == metrics
        assert all(f"| {k} |" in card.text for k in metrics if not k.startswith("baseline_"))


def test_a_tampered_file_fails_mlflows_load_as_it_fails_zero2ones(trained: Any,
                                                                  tmp_path: Path) -> None:
    source = trained("tabular-classification").directory
    weights, manifest = tmp_path / "weights", tmp_path / "manifest"
    for copy in (weights, manifest):
        shutil.copytree(source, copy)
    with (weights / "model.skops").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(Exception, match="does not match the manifest"):
        load(weights)
    with pytest.raises(Exception, match="does not match the manifest"):
        mlflow.pyfunc.load_model(str(weights))
    # a manifest rewritten to list other hashes: not the one the MLmodel was written for
    text = json.loads((manifest / "manifest.json").read_text())
    text["metrics"]["accuracy"] = 1.0
    (manifest / "manifest.json").write_text(json.dumps(text))
    with pytest.raises(Exception, match="not the .* its MLmodel was written for"):
        mlflow.pyfunc.load_model(str(manifest))


def test_bad_inputs_to_the_flavor_are_one_line_errors(trained: Any) -> None:
    from zero2one.errors import SchemaError

    image = load(trained("image-classification").directory)
    with pytest.raises(SchemaError, match="needs an `image` column"):
        image.pyfunc_predict(pd.DataFrame({"picture": [b"x"]}), {})
    with pytest.raises(SchemaError, match="row 0: `image` is not valid base64"):
        image.pyfunc_predict(pd.DataFrame({"image": ["not base64!"]}), {})
    with pytest.raises(SchemaError, match="row 0: `image` is a int"):
        image.pyfunc_predict(pd.DataFrame({"image": [3]}), {})
    model = mlflow.pyfunc.load_model(str(trained("tabular-classification").directory))
    with pytest.raises(Exception, match="petal_width"):  # MLflow's schema check names it
        model.predict(pd.DataFrame({"sepal_length": [5.0]}))


def test_a_registered_version_loads_serves_and_upgrades(workspace: Path) -> None:
    """A tracked training's registered version: MLflow's loader on models:/NAME/VERSION; a
    version saved without the files gains them from `models upgrade` (manifest unchanged);
    `models show --card` prints the card."""
    from zero2one import tracking
    from zero2one.api import train

    done = train(iris_recipe(name="iris-mlflow", register="iris-mlflow",
                             track={"enabled": True}))
    assert done.registered_version == "1"
    mlflow.set_tracking_uri(tracking.tracking_uri())
    mlflow.set_registry_uri(tracking.tracking_uri())
    uri = "models:/iris-mlflow/1"
    rows = pd.DataFrame({"sepal_length": [5.1, 6.7], "sepal_width": [3.5, 3.0],
                         "petal_length": [1.4, 5.2], "petal_width": [0.2, 2.3]})
    assert mlflow.pyfunc.load_model(uri).predict(rows)["prediction"].tolist() == \
        load(uri).predict(rows)["prediction"].tolist()
    runner = CliRunner()
    shown = runner.invoke(app, ["models", "show", "iris-mlflow", "--card"])
    assert shown.exit_code == 0 and shown.stdout.startswith("---\nlibrary_name: zero2one")
    assert "| accuracy |" in shown.stdout

    stored = tracking.download(tracking.model_version("iris-mlflow", version="1").source)
    digest = (stored / "manifest.json").read_bytes()
    for file in (MLMODEL, CODE_FILE, CARD, "input_example.json"):  # as saved before
        (stored / file).unlink()
    gone = runner.invoke(app, ["models", "show", "iris-mlflow", "--card"])
    assert gone.exit_code != 0 and "models upgrade iris-mlflow" in str(gone.exception)
    upgraded = runner.invoke(app, ["models", "upgrade", "iris-mlflow", "--json"])
    assert upgraded.exit_code == 0, upgraded.output
    (entry,) = json.loads(upgraded.stdout)
    assert entry["ref"] == uri and MLMODEL in entry["files"] and CARD in entry["files"]
    assert (stored / "manifest.json").read_bytes() == digest  # the registry's pin holds
    assert mlflow.pyfunc.load_model(uri).predict(rows)["prediction"].tolist() == [0, 2]
    missing = runner.invoke(app, ["models", "upgrade", "iris-mlflow", "--version", "7"])
    assert missing.exit_code != 0 and "no version '7'" in str(missing.exception)


def _serve_mlflow(uri: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", uri, "--env-manager",
         "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(f"{url}/ping", process, timeout=120, what="mlflow models serve")
    except AssertionError:
        _stop(process)
        raise AssertionError(process.stdout.read() if process.stdout else "") from None
    return process, url


def _stop(process: subprocess.Popen[str]) -> None:
    import signal

    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.slow
def test_mlflow_models_serve_answers_invocations(workspace: Path) -> None:
    """``mlflow models serve -m models:/NAME/VERSION --env-manager local`` for a tabular and an
    image model trained and registered by zero2one: /invocations with the logged example."""
    import base64

    from PIL import Image

    from zero2one import tracking
    from zero2one.api import train

    train(iris_recipe(name="iris-served", register="iris-served", track={"enabled": True}))
    train(REPO / "recipes/digits-cnn.yaml", overrides=[
        "train.epochs=1", "model.arch=seed-cnn", "model.params={}", "register=digits-served",
        "name=digits-served"])
    # MLflow starts `uvicorn` from PATH: the environment's, as in an activated one
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking.tracking_uri(),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for uri, check in [("models:/iris-served/1", "prediction_name"),
                       ("models:/digits-served/1", "label")]:
        process, url = _serve_mlflow(uri, env)
        try:
            directory = tracking.download(tracking.model_version(
                uri.split("/")[1], version="1").source)
            body = json.loads((directory / "serving_input_example.json").read_text())
            status, answer = call(f"{url}/invocations", body, timeout=60)
            assert status == 200, answer
            (row,) = answer["predictions"]
            assert row[check]
            if check == "label":  # a real digit, base64 as MLflow's JSON carries bytes
                buffer = io.BytesIO()
                Image.new("L", (8, 8), 0).save(buffer, format="PNG")
                picture = base64.b64encode(buffer.getvalue()).decode()
                status, answer = call(f"{url}/invocations", {"dataframe_split": {
                    "columns": ["image"], "data": [[picture]]}, "params": {"top_k": 2}})
                assert status == 200 and len(json.loads(answer["predictions"][0]["top_k"])) == 2
            status, answer = call(f"{url}/invocations", {"dataframe_split": {
                "columns": ["nothing"], "data": [[1]]}})
            assert status == 400, answer  # MLflow's schema check, before zero2one's code
        finally:
            _stop(process)


def test_a_failing_schema_hook_still_saves_the_model(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """A task's pyfunc_schema() that raises costs the MLmodel its signature and example, not
    the model just trained; MLflow still loads and predicts it."""
    import yaml

    from zero2one.api import save_model_dir
    from zero2one.catalog import load_recipe
    from zero2one.progress import NullReporter

    class Broken(get_task("nearest-centroid")):  # type: ignore[misc]
        def pyfunc_schema(self) -> Any:
            raise ValueError("boom")

    task = Broken(load_recipe(REPO / "examples/plugin-task/centroid.yaml",
                              ["track.enabled=false"]))
    data = task.load_data()
    task.fit(data, reporter=NullReporter())
    directory = save_model_dir(task, tmp_path / "model", task.evaluate(data), data)
    assert "pyfunc_schema() failed (boom)" in caplog.text
    written = yaml.safe_load((directory / MLMODEL).read_text())
    assert "signature" not in written and not (directory / "input_example.json").exists()
    rows = pd.DataFrame({"sepal length (cm)": [5.1], "sepal width (cm)": [3.5],
                         "petal length (cm)": [1.4], "petal width (cm)": [0.2]})
    features = load(directory).features_
    rows.columns = features
    assert mlflow.pyfunc.load_model(str(directory)).predict(rows)["prediction"].tolist() == \
        load(directory).predict(rows)


def test_a_converted_models_card_names_its_parent(trained: Any) -> None:
    """An export's card says what it was converted from, and does not send readers to the
    parent's registered name."""
    from zero2one.portable.card import card_text

    manifest = json.loads((trained("tabular-classification").directory / "manifest.json")
                          .read_text())
    plain = card_text(manifest)
    assert "models:/iris-svc/latest" in plain and "Converted from" not in plain
    converted = card_text({**manifest, "parent": {"ref": "models:/iris-svc/3"},
                           "conversion": {"method": "onnx"}})
    assert "- Converted from `models:/iris-svc/3` by `onnx`" in converted
    assert "models:/iris-svc/latest" not in converted
