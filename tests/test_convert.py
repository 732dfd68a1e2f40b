"""``zero2one export`` and ``zero2one compress``: every task that declares a format or a method
(contract tests), the tracked and registered result, the report, and the inputs refused."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest

from zero2one import tracking
from zero2one.api import load, train
from zero2one.artifacts import read_manifest
from zero2one.catalog import all_tasks
from zero2one.convert import CompressOptions, compress, export
from zero2one.errors import ConversionError, DataError, IntegrityError, UserError

from .cases import CASES, Trained
from .conftest import iris_recipe

pytest.importorskip("onnxruntime")

EXPORTING = [cls.name for cls in all_tasks() if "onnx" in cls.export_formats]
COMPRESSING = [(cls.name, method) for cls in all_tasks() for method in cls.compress_methods]


def _same_predictions(a: Any, b: Any) -> None:
    if isinstance(a, pd.DataFrame):
        assert list(a["prediction"]) == pytest.approx(list(b["prediction"]), rel=1e-4)
        for column in (c for c in a.columns if c.startswith("proba_")):
            np.testing.assert_allclose(a[column], b[column], atol=1e-3)
    else:  # image classifiers: the same top class, probabilities close
        assert [r[0]["label"] for r in a] == [r[0]["label"] for r in b]
        for x, y in zip(a, b, strict=True):
            assert x[0]["probability"] == pytest.approx(y[0]["probability"], abs=1e-4)


def test_tasks_declare_formats_and_methods() -> None:
    assert {"tabular-classification", "tabular-regression", "image-classification"} <= set(
        EXPORTING)
    assert ("image-classification", "static") in COMPRESSING
    assert ("image-classification", "qat") in COMPRESSING


@pytest.mark.parametrize("name", EXPORTING)
def test_an_exported_model_predicts_like_its_parent(name: str, workspace: Path,
                                                    trained: Callable[[str], Trained]) -> None:
    job = trained(name)
    result = export(str(job.directory), "onnx")
    manifest = read_manifest(result.model_dir)
    assert manifest["runtime"]["engine"] == "onnxruntime"
    assert manifest["parent"]["ref"] == str(job.directory)
    assert manifest["parent"]["manifest_sha256"]
    assert manifest["conversion"]["method"] == "onnx"
    assert any(f.endswith(".onnx") for f in manifest["files"])
    assert "report/conversion.md" in manifest["files"]
    exported = load(result.model_dir)
    assert exported.runtime.startswith("onnxruntime")
    inputs = CASES[name].inputs()
    _same_predictions(job.task.predict(inputs), exported.predict(inputs))
    # the report: parent first, the new model last, every figure measured
    assert [row["model"] for row in result.report] == [job.task.runtime, exported.runtime]
    assert all(row["p50_batch1_ms"] > 0 and row["size_bytes"] > 0 for row in result.report)
    assert "| model |" in result.markdown


@pytest.mark.parametrize("name", EXPORTING)
def test_an_altered_onnx_file_is_refused(name: str, workspace: Path,
                                         trained: Callable[[str], Trained]) -> None:
    result = export(str(trained(name).directory), "onnx")
    copy = workspace / "altered"
    shutil.copytree(result.model_dir, copy)
    for file in copy.glob("*.onnx*"):  # the graph and, for torch exports, its weights file
        altered = workspace / "altered-one"
        shutil.rmtree(altered, ignore_errors=True)
        shutil.copytree(copy, altered)
        target = altered / file.name
        target.write_bytes(target.read_bytes()[:-1] + bytes([target.read_bytes()[-1] ^ 1]))
        with pytest.raises(IntegrityError, match="does not match the manifest"):
            load(altered)


@pytest.mark.parametrize("name", EXPORTING)
def test_an_exported_model_is_served(name: str, workspace: Path,
                                     trained: Callable[[str], Trained]) -> None:
    from fastapi.testclient import TestClient

    from zero2one.serving import ServeSettings, create_app

    result = export(str(trained(name).directory), "onnx")
    app = create_app(ServeSettings(model=str(result.model_dir)))  # type: ignore[call-arg]
    with TestClient(app) as client:
        method, path, body = CASES[name].good
        answer = client.request(method, path, json=body)
        assert answer.status_code == 200, answer.text
        method, path, body = CASES[name].bad
        assert 400 <= client.request(method, path, json=body).status_code < 500


@pytest.mark.parametrize("name", EXPORTING)
def test_an_exported_model_cannot_be_exported_again(
        name: str, workspace: Path, trained: Callable[[str], Trained]) -> None:
    result = export(str(trained(name).directory), "onnx")
    with pytest.raises(UserError, match="already"):
        export(str(result.model_dir), "onnx")


def test_export_is_tracked_and_registered_with_its_parent(workspace: Path) -> None:
    recipe = iris_recipe(track={"enabled": True}, register="iris")
    recipe["search"] = {"method": "none"}
    recipe["model"] = {"estimator": "logistic_regression"}
    train(recipe)
    result = export("models:/iris/latest", "onnx")
    assert result.registered_uri == "models:/iris/2"
    assert result.parent == "models:/iris/1"  # pinned, though given as latest
    version = tracking.model_version("iris", version="2")
    assert version.tags["zero2one.parent"] == "models:/iris/1"
    assert version.tags["zero2one.conversion"] == "onnx"
    listed = tracking.model_versions("iris")
    assert [(v["version"], v["parent"], v["conversion"]) for v in listed] == [
        ("2", "models:/iris/1", "onnx"), ("1", None, None)]
    run = tracking.get_run(result.run_id)
    assert run["tags"]["zero2one.parent"] == "models:/iris/1"
    assert "test_accuracy" in run["metrics"] and "speedup_batch1_vs_parent" in run["metrics"]
    assert "report/conversion.md" in run["artifacts"]
    # --register NAME: a model of its own
    named = export("models:/iris/1", "onnx", register="iris-onnx")
    assert named.registered_uri == "models:/iris-onnx/1"
    scored = load("models:/iris-onnx/1").predict({"sepal_length": 5.1, "sepal_width": 3.5,
                                                  "petal_length": 1.4, "petal_width": 0.2})
    assert scored["prediction_name"][0] == "setosa"


def test_a_mismatching_export_is_refused_and_nothing_is_written(
        workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from zero2one.tasks.tabular.onnx import OnnxPipeline

    recipe = iris_recipe(track={"enabled": True}, register="iris")
    recipe["search"] = {"method": "none"}
    recipe["model"] = {"estimator": "logistic_regression"}
    train(recipe)
    real = OnnxPipeline.outputs

    def shifted(self: OnnxPipeline, feeds: Any) -> Any:
        labels, proba = real(self, feeds)
        return labels, proba + 0.01  # beyond the 1e-3 tolerance of a linear model

    monkeypatch.setattr(OnnxPipeline, "outputs", shifted)
    with pytest.raises(ConversionError, match="disagrees"):
        export("models:/iris/1", "onnx", out=workspace / "exported")
    assert not (workspace / "exported").exists()
    assert [v["version"] for v in tracking.model_versions("iris")] == ["1"]
    assert len(tracking.list_runs()) == 1  # no run was started for it


def test_methods_a_task_does_not_take_are_refused_naming_what_does(
        workspace: Path, iris_model: Path) -> None:
    with pytest.raises(UserError, match=r"--method static does not apply to "
                       r"tabular-classification models; compress applies to "
                       r".*image-classification \(static, qat, dynamic\)"):
        compress(str(iris_model), "static")
    with pytest.raises(UserError, match="cannot be exported to tflite; --format tflite applies "
                       "to no installed task"):
        export(str(iris_model), "tflite")


def test_a_language_model_cannot_be_exported_to_onnx(
        workspace: Path, trained: Callable[[str], Trained]) -> None:
    with pytest.raises(UserError, match="text-generation models cannot be exported to onnx; "
                       "--format onnx applies to .*image-classification"):
        export(str(trained("text-generation").directory), "onnx")


def test_cli_export_json_and_errors(workspace: Path, iris_model: Path) -> None:
    from typer.testing import CliRunner

    from zero2one.cli.main import app

    runner = CliRunner()
    done = runner.invoke(app, ["export", str(iris_model), "--json",
                               "--out", str(workspace / "onnx")])
    assert done.exit_code == 0, done.output
    body = json.loads(done.stdout)
    assert body["method"] == "onnx" and body["model_dir"] == str(workspace / "onnx")
    assert body["report"][1]["model"] == "onnxruntime float32"
    again = runner.invoke(app, ["export", str(iris_model), "--out", str(workspace / "onnx")])
    assert again.exit_code != 0 and "already exists" in str(again.exception)


# ---- image classifiers: INT8 --------------------------------------------------------------

@pytest.fixture(scope="module")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CNN on the digits, well enough trained for quantization to be measurable."""
    out = tmp_path_factory.mktemp("digits") / "model"
    from zero2one.catalog import load_recipe

    REPO = Path(__file__).resolve().parents[1]
    config = load_recipe(REPO / "recipes/digits-cnn.yaml", [
        "train.epochs=3", "model.params={width: 16, dropout: 0.0}", "track.enabled=false"])
    train(config, out=out)
    return out


@pytest.mark.slow  # calibration and quantization-aware training
@pytest.mark.parametrize("method", ["static", "qat", "dynamic"])
def test_int8_image_classifier(method: str, workspace: Path, digits_model: Path) -> None:
    options = CompressOptions(epochs=1) if method == "qat" else CompressOptions()
    root = logging.getLogger().level
    result = compress(str(digits_model), method, options=options)
    assert logging.getLogger().level == root  # the quantizer's chatter was quieted, then put back
    manifest = read_manifest(result.model_dir)
    assert manifest["runtime"] == {"engine": "onnxruntime", "file": "model.int8.onnx",
                                   "precision": "int8", "method": method}
    parent, fp32, new = result.report
    assert (parent["model"], fp32["model"]) == ("torch eager float32", "onnxruntime float32")
    assert new["model"] == f"onnxruntime int8 ({method})"
    # int8 weights are a quarter of the bytes; names and scales weigh more on a model this small
    assert new["size_bytes"] < 0.45 * fp32["size_bytes"]
    assert new["value"] >= parent["value"] - 0.05  # accuracy kept
    assert manifest["conversion"]["label_agreement_decided"] >= 0.98
    # the parent runs in another runtime: no "× same runtime" figure on its row
    table = [line for line in result.markdown.splitlines() if line.startswith("| torch")]
    assert table and table[0].split(" | ")[6] == "-" and table[0].rstrip(" |").endswith("-")
    if method != "dynamic":
        assert manifest["conversion"]["calibration_images"] == 512
    # 7-bit weights: ONNX Runtime's integer kernels saturate on CPUs without VNNI otherwise
    weights = [onnx.numpy_helper.to_array(t) for t in
               onnx.load(str(result.model_dir / "model.int8.onnx")).graph.initializer
               if t.data_type == onnx.TensorProto.INT8]
    assert weights and max(int(np.abs(w.astype(np.int16)).max()) for w in weights) <= 64
    if method == "qat":
        assert manifest["conversion"]["qat_epochs"] == 1
        assert len(manifest["training"]["qat_history"]) == 1
    model = load(result.model_dir)
    images = CASES["image-classification"].inputs()
    assert [r[0]["label"] for r in model.predict(images)]


def test_int8_model_is_served(workspace: Path, digits_model: Path) -> None:
    from fastapi.testclient import TestClient

    from zero2one.serving import ServeSettings, create_app

    result = compress(str(digits_model), "static")
    app = create_app(ServeSettings(model=str(result.model_dir)))  # type: ignore[call-arg]
    with TestClient(app) as client:
        method, path, body = CASES["image-classification"].good
        answer = client.request(method, path, json=body)
        assert answer.status_code == 200 and len(answer.json()["top_k"]) == 1


def test_deployed_image_installs_onnxruntime(workspace: Path, digits_model: Path) -> None:
    from zero2one.catalog import get_task

    result = compress(str(digits_model), "static")
    cls = get_task("image-classification")
    assert "onnxruntime" in cls.deploy_requirements(read_manifest(result.model_dir))
    assert "onnxruntime" not in cls.deploy_requirements(read_manifest(digits_model))


def test_calibration_too_small_or_misapplied_is_refused(workspace: Path,
                                                        digits_model: Path) -> None:
    with pytest.raises(DataError, match="--calibration 5: at least 32 images"):
        compress(str(digits_model), "static", options=CompressOptions(calibration=5))
    with pytest.raises(DataError, match="--calibration applies to --method static and qat"):
        compress(str(digits_model), "dynamic", options=CompressOptions(calibration=64))
    with pytest.raises(DataError, match="--epochs applies to --method qat"):
        compress(str(digits_model), "static", options=CompressOptions(epochs=2))
    assert not (workspace / ".zero2one" / "models").exists()  # nothing written


def test_calibration_images_of_the_wrong_shape_or_too_few() -> None:
    import torch

    from zero2one.tasks.vision.compress import calibration_images

    with pytest.raises(DataError, match=r"calibration images are 3×16×16 \(C×H×W\); the "
                       r"model takes 1×8×8"):
        calibration_images(torch.zeros(64, 3, 16, 16), None, shape=(1, 8, 8), seed=0)
    with pytest.raises(DataError, match="the data has 10 training images; calibration needs"):
        calibration_images(torch.zeros(10, 1, 8, 8), None, shape=(1, 8, 8), seed=0)
    assert len(calibration_images(torch.zeros(100, 1, 8, 8), 64, shape=(1, 8, 8),
                                  seed=0)) == 64


def test_data_of_another_shape_is_refused(workspace: Path, digits_model: Path) -> None:
    with pytest.raises(DataError, match=r"the data's images are 1×16×16; the model takes "
                       r"1×8×8"):
        compress(str(digits_model), "static", overrides=["data.image_size=16"])
    with pytest.raises(DataError, match=r"the data's images are 1×16×16"):
        export(str(digits_model), "onnx", overrides=["data.image_size=16"])


# ---- language models: int8 weights -------------------------------------------------------

def test_int8_language_model(workspace: Path, trained: Callable[[str], Trained]) -> None:
    job = trained("text-generation")
    result = compress(str(job.directory), "int8-weights")
    manifest = read_manifest(result.model_dir)
    assert manifest["parts"] == {"int8": "int8"}
    assert "int8/model.safetensors" in manifest["files"]
    parent, fp32, new = result.report
    assert [parent["model"], fp32["model"], new["model"]] == [
        "transformers float32", "zero2one step float32", "zero2one step int8"]
    assert new["size_bytes"] < 0.5 * parent["size_bytes"]
    assert new["metric"] == "val_perplexity"
    change = manifest["conversion"]["perplexity_change"]
    assert change <= 0.02 and new["value"] == pytest.approx(
        manifest["conversion"]["perplexity_int8"])
    model = load(result.model_dir)
    assert model.precision_ == "int8" and model.model_.__dict__["_zero2one_precision"] == "int8"
    # the loaded model computes with exactly the rounded weights that were measured
    assert model.evaluate(job.data)["val_perplexity"] == pytest.approx(
        manifest["conversion"]["perplexity_int8"], rel=1e-5)
    assert isinstance(model.predict("zero2one"), str)
    from zero2one.tasks.textgen.batch import Decoder

    assert Decoder(model.model_, model.tokenizer_).precision == "int8"  # its default step
    assert Decoder(load(job.directory).model_, model.tokenizer_).precision == "bfloat16"


def test_int8_language_model_is_served(workspace: Path,
                                       trained: Callable[[str], Trained]) -> None:
    from fastapi.testclient import TestClient

    from zero2one.serving import ServeSettings, create_app

    result = compress(str(trained("text-generation").directory), "int8-weights")
    app = create_app(ServeSettings(model=str(result.model_dir)))  # type: ignore[call-arg]
    with TestClient(app) as client:
        method, path, body = CASES["text-generation"].good
        answer = client.request(method, path, json=body)
        assert answer.status_code == 200, answer.text
        assert client.app.state.holder.current.adapter.precision is None  # the model's own


def test_int8_language_model_refused_beyond_the_perplexity_budget(
        workspace: Path, trained: Callable[[str], Trained],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from zero2one.tasks.textgen import compress as lm_compress

    monkeypatch.setattr(lm_compress, "MAX_PERPLEXITY_RISE", -1.0)
    with pytest.raises(ConversionError, match="raise the held-out perplexity"):
        compress(str(trained("text-generation").directory), "int8-weights",
                 out=workspace / "int8")
    assert not (workspace / "int8").exists()
    with pytest.raises(DataError, match="do not apply to --method int8-weights"):
        compress(str(trained("text-generation").directory), "int8-weights",
                 options=CompressOptions(calibration=64))


def test_an_image_export_that_disagrees_is_refused(
        workspace: Path, digits_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from zero2one.tasks.vision.compress import OnnxNet

    real = OnnxNet.__call__
    # sharper logits: the same labels, probabilities beyond the 1e-4 tolerance
    monkeypatch.setattr(OnnxNet, "__call__", lambda self, x: real(self, x) * 1.5)
    with pytest.raises(ConversionError, match="the ONNX graph disagrees with the original"):
        export(str(digits_model), "onnx", out=workspace / "onnx")
    assert not (workspace / "onnx").exists()
    # a quantized graph whose labels moved on decided images: refused too
    monkeypatch.setattr(OnnxNet, "__call__", lambda self, x: -real(self, x)
                        if self.precision == "int8" else real(self, x))
    with pytest.raises(ConversionError, match=r"labels agree on 0\.00% of the \d+ images the "
                       r"original is decided about \(at least 98\.00% needed\); nothing was "
                       r"written; train the network longer, try --method qat, or accept it "
                       r"with --min-agreement$"):
        compress(str(digits_model), "static", out=workspace / "onnx")
    assert not (workspace / "onnx").exists()
    # a threshold the user chose is the one applied (and said)
    with pytest.raises(ConversionError, match=r"at least 50\.00% needed"):
        compress(str(digits_model), "static", options=CompressOptions(min_agreement=0.5))
    with pytest.raises(UserError, match="--min-agreement 1.5: a share between 0 and 1"):
        compress(str(digits_model), "static", options=CompressOptions(min_agreement=1.5))
