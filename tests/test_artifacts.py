import json
import shutil
from pathlib import Path

import pytest

from zero2one.api import load, train
from zero2one.artifacts import MANIFEST, read_manifest, save_model, verify
from zero2one.errors import ArtifactError, IntegrityError
from zero2one.refs import load_model

from .conftest import iris_recipe


@pytest.fixture
def model_copy(iris_model: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(iris_model, target)
    return target


def test_manifest_describes_the_model(iris_model: Path) -> None:
    manifest = read_manifest(iris_model)
    assert manifest["task"] == "tabular-classification"
    assert manifest["name"] == "iris-test"
    assert [c["name"] for c in manifest["input_schema"]["columns"]] == [
        "sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert manifest["classes"] == [0, 1, 2]
    assert manifest["class_names"] == ["setosa", "versicolor", "virginica"]
    assert {"scikit-learn", "skops", "python"} <= set(manifest["libraries"])
    assert manifest["metrics"]["accuracy"] > 0.9
    assert manifest["data"]["sha256"] and manifest["data"]["rows"] == 150
    assert "model.skops" in manifest["files"] and len(manifest["files"]["model.skops"]) == 64
    assert manifest["recipe"]["search"]["cv"] == 3


def test_no_pickle_on_disk(iris_model: Path) -> None:
    names = {p.name for p in iris_model.rglob("*")}
    assert not any(n.endswith((".pkl", ".pickle", ".joblib")) for n in names)


def test_modified_weights_refuse_to_load(model_copy: Path) -> None:
    weights = model_copy / "model.skops"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="model.skops: sha256 .* does not match"):
        load(model_copy)


def test_appended_bytes_refuse_to_load(model_copy: Path) -> None:
    with (model_copy / "model.skops").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(IntegrityError):
        verify(model_copy)


def test_missing_listed_file(model_copy: Path) -> None:
    (model_copy / "model.skops").unlink()
    with pytest.raises(ArtifactError, match="model.skops is listed in the manifest but missing"):
        load(model_copy)


def test_manifest_path_outside_model_is_refused(model_copy: Path) -> None:
    manifest = json.loads((model_copy / MANIFEST).read_text())
    manifest["files"]["../escape"] = "0" * 64
    (model_copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="outside the model"):
        verify(model_copy)


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "not valid JSON"), ("[]", "not a zero2one manifest"),
     ('{"files": {}, "format_version": 99, "task": "x"}', "format 99 is not supported")],
)
def test_bad_manifest(model_copy: Path, content: str, message: str) -> None:
    (model_copy / MANIFEST).write_text(content)
    with pytest.raises(ArtifactError, match=message):
        load(model_copy)


def test_not_a_model_directory(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="manifest.json is missing"):
        load_model(tmp_path)


def test_untrusted_type_is_refused_and_can_be_trusted(workspace: Path) -> None:
    """A FunctionTransformer holding an arbitrary function is not trusted by default."""
    import operator

    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    result = train(iris_recipe(), out=workspace / "m")
    model = load(result.model_dir)
    model.pipeline_.steps.insert(0, ("log", FunctionTransformer(operator.pos)))
    model.pipeline_.fit(model_frame(), [0, 1, 2] * 2)
    save_model(model, workspace / "evil")
    untrusted = sio.get_untrusted_types(file=workspace / "evil" / "model.skops")
    assert "_operator.pos" in untrusted
    with pytest.raises(ArtifactError, match="not trusted: .*--trust TYPE"):
        load(workspace / "evil")
    trusted = load(workspace / "evil", trust=untrusted)
    assert trusted.predict(model_frame())["prediction"].notna().all()


def model_frame():  # type: ignore[no-untyped-def]
    import pandas as pd

    return pd.DataFrame([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]] * 2,
                        columns=["sepal_length", "sepal_width", "petal_length", "petal_width"])


def test_save_is_atomic_on_failure(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = load(train(iris_recipe(), out=workspace / "m").model_dir)

    def broken(path: Path) -> dict:
        (path / "partial.bin").write_bytes(b"x")
        raise OSError("disk full")

    monkeypatch.setattr(model, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        save_model(model, workspace / "new")
    assert not (workspace / "new").exists()
    assert [p.name for p in workspace.iterdir() if p.name.startswith(".new")] == []


def test_save_refuses_to_overwrite(iris_model: Path) -> None:
    model = load(iris_model)
    with pytest.raises(ArtifactError, match="already exists"):
        save_model(model, iris_model)


def test_save_overwrite_replaces(model_copy: Path) -> None:
    model = load(model_copy)
    save_model(model, model_copy, overwrite=True)
    assert verify(model_copy)["task"] == "tabular-classification"
    assert not list(model_copy.parent.glob(".model.*"))
