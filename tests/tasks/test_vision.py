"""Image classification: data sources and their bad inputs, training, resume, predict, serve."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from zero2one.api import load, train
from zero2one.catalog import get_task, validate
from zero2one.errors import DataError, SchemaError
from zero2one.tasks.vision.config import ImageDataConfig
from zero2one.tasks.vision.data import load_images, read_image
from zero2one.tasks.vision.predict import predict_images
from zero2one.tasks.vision.shapes import CLASSES, make_shapes

from ..conftest import Interrupt, StopAt, fit_until_interrupted, train_killed_at_checkpoint


def recipe(source: str = "sklearn:digits", **train_cfg: Any) -> dict[str, Any]:
    return {
        "task": "image-classification", "name": "vision-test", "seed": 0,
        "data": {"source": source},
        "model": {"arch": "seed-cnn"},
        "train": {"epochs": 2, "batch_size": 64, "lr": 0.003, **train_cfg},
        "track": {"enabled": False},
    }


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def image_folder(root: Path, classes: dict[str, list[np.ndarray]]) -> Path:
    for name, images in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images):
            (root / name / f"{i}.png").write_bytes(png(image))
    return root


def noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 256, shape, dtype=np.uint8)


# ---- the shapes data set ----

def test_shapes_are_deterministic_by_seed(tmp_path: Path) -> None:
    assert make_shapes(tmp_path / "a", size=16, per_class=3, seed=1) == 12
    make_shapes(tmp_path / "b", size=16, per_class=3, seed=1)
    make_shapes(tmp_path / "c", size=16, per_class=3, seed=2)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert len(files) == 12 and {f.parts[0] for f in files} == set(CLASSES)
    same = [(tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files]
    other = [(tmp_path / "a" / f).read_bytes() == (tmp_path / "c" / f).read_bytes()
             for f in files]
    assert all(same) and not any(other)
    image = Image.open(tmp_path / "a" / files[0])
    assert image.size == (16, 16) and image.mode == "RGB"
    with pytest.raises(Exception, match="already exists"):
        make_shapes(tmp_path / "a", size=16, per_class=1)


# ---- sources and bad inputs ----

def test_folder_with_mixed_sizes_modes_and_bad_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    root = image_folder(tmp_path / "imgs", {
        "cat": [noise(rng, (12, 12, 3)) for _ in range(4)] + [noise(rng, (20, 16, 3))],
        "dog": [noise(rng, (12, 12)) for _ in range(5)],  # greyscale
    })
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "dog" / "notes.txt").write_text("not an image")
    images = load_images(ImageDataConfig(source=f"folder:{root}"))
    assert images.x.shape == (10, 12, 12, 3)  # most common size; colour because some are RGB
    assert images.class_names == ["cat", "dog"] and list(np.bincount(images.y)) == [5, 5]
    assert len(images.skipped) == 2
    with pytest.raises(DataError, match="broken.png: not an image"):
        load_images(ImageDataConfig(source=f"folder:{root}", on_bad_file="fail"))
    grey = load_images(ImageDataConfig(source=f"folder:{root}", channels=1, image_size=8))
    assert grey.x.shape == (10, 8, 8, 1)


def test_empty_class_folder(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    root = image_folder(tmp_path / "imgs", {"a": [noise(rng, (8, 8))] * 3})
    (root / "b").mkdir()
    with pytest.raises(DataError, match="class folder\\(s\\) with no readable image: b"):
        load_images(ImageDataConfig(source=f"folder:{root}"))


def test_single_class(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    root = image_folder(tmp_path / "imgs", {"only": [noise(rng, (8, 8))] * 3})
    with pytest.raises(DataError, match="a single class \\('only'\\)"):
        load_images(ImageDataConfig(source=f"folder:{root}"))


def test_missing_folder_and_unknown_source(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="image folder not found"):
        load_images(ImageDataConfig(source=f"folder:{tmp_path / 'none'}"))
    with pytest.raises(DataError, match="use sklearn:digits, folder:PATH or npz:PATH"):
        load_images(ImageDataConfig(source="sklearn:iris"))


def test_npz_source(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.random((12, 6, 6)), y=np.array([3, 7] * 6),
             class_names=np.array(["three", "seven"]))
    images = load_images(ImageDataConfig(source=f"npz:{tmp_path / 'd.npz'}"))
    assert images.x.shape == (12, 6, 6, 1) and images.x.dtype == np.uint8
    assert images.class_names == ["three", "seven"] and set(images.y) == {0, 1}
    np.savez(tmp_path / "bad.npz", x=np.zeros((3, 4, 5)), y=np.zeros(3))
    with pytest.raises(DataError, match="x must be"):
        load_images(ImageDataConfig(source=f"npz:{tmp_path / 'bad.npz'}"))
    np.savez(tmp_path / "nolabels.npz", x=np.zeros((3, 4, 4)))
    with pytest.raises(DataError, match="needs arrays 'x' and 'y'"):
        load_images(ImageDataConfig(source=f"npz:{tmp_path / 'nolabels.npz'}"))


def test_decompression_bomb_is_refused_from_the_header() -> None:
    big = png(np.zeros((3000, 3000), dtype=np.uint8))  # tiny file, 9 M pixels
    assert len(big) < 100_000
    with pytest.raises(DataError, match="over the limit"):
        read_image(big, max_pixels=1_000_000)
    assert read_image(big, max_pixels=10_000_000).size == (3000, 3000)


def test_bad_arch_and_params() -> None:
    from zero2one.errors import RecipeError

    with pytest.raises(RecipeError, match="unknown architecture 'resnet'"):
        validate({**recipe(), "model": {"arch": "resnet"}})
    with pytest.raises(RecipeError, match="not a torch.nn.Module"):
        validate({**recipe(), "model": {"arch": "collections.OrderedDict"}})


# ---- training, resume, predict ----

def test_digits_train_save_load_predict(workspace: Path) -> None:
    result = train(recipe(epochs=3, scheduler="cosine",
                          augment={"crop_padding": 1, "rotation": 10, "color_jitter": 0.1,
                                   "erasing": 0.2, "hflip": False}), out=workspace / "m")
    assert result.metrics["accuracy"] > 0.8
    assert result.metrics["epochs"] == 3.0
    report = workspace / "m" / "report"
    assert (report / "learning_curves.png").exists() and (report / "confusion_matrix.png").exists()
    model = load(workspace / "m")
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = [Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)) for i in range(20)]
    top = model.predict(images, top_k=2)
    assert len(top) == 20 and len(top[0]) == 2
    assert top[0][0]["probability"] >= top[0][1]["probability"]
    hits = sum(t[0]["index"] == digits.target[i] for i, t in enumerate(top))
    assert hits >= 15


def test_early_stopping_and_plateau(workspace: Path) -> None:
    result = train(recipe(epochs=30, lr=0.5, optimizer="sgd", scheduler="plateau",
                          plateau_patience=0, early_stopping={"patience": 2}),
                   out=workspace / "m")
    history = load(workspace / "m").manifest["training"]
    assert history["stopped_early"] is True and result.metrics["epochs"] < 30
    lrs = [h["lr"] for h in history["history"]]
    assert min(lrs) < max(lrs)  # the plateau scheduler cut the rate


def test_resume_ends_where_an_uninterrupted_run_ends(workspace: Path) -> None:
    cfg = recipe(epochs=4, augment={"crop_padding": 1}, scheduler="cosine")
    cfg["model"] = {"arch": "small-cnn", "params": {"width": 8}}
    full = train(cfg, out=workspace / "full")
    task = fit_until_interrupted(cfg, 2)
    assert (task.checkpoint_dir() / "last.pt").exists()
    resumed = train(cfg, out=workspace / "resumed", resume=True)
    manifest = load(workspace / "resumed").manifest["training"]
    assert manifest["resumed_from"] == 1  # died in epoch 2, before its checkpoint
    assert resumed.metrics["accuracy"] == pytest.approx(full.metrics["accuracy"], abs=1e-6)
    assert resumed.metrics["val_loss"] == pytest.approx(full.metrics["val_loss"], rel=1e-4)
    assert not task.checkpoint_dir().exists()  # cleaned up after success


@pytest.mark.slow
def test_resume_after_kill_9(workspace: Path) -> None:
    """A real process killed with SIGKILL mid-training; --resume finishes the job."""
    cfg = recipe(epochs=6)
    cfg["model"] = {"arch": "small-cnn", "params": {"width": 16}}
    path = train_killed_at_checkpoint(cfg, workspace, timeout=120)
    resumed = train(path, out=workspace / "resumed", resume=True)
    full = train(cfg, out=workspace / "full")
    assert load(workspace / "resumed").manifest["training"]["resumed_from"] >= 1
    assert resumed.metrics["accuracy"] == pytest.approx(full.metrics["accuracy"], abs=1e-6)


def test_predict_images_from_a_folder(workspace: Path) -> None:
    train(recipe(epochs=1), out=workspace / "m")
    model = load(workspace / "m")
    folder = workspace / "in"
    folder.mkdir()
    (folder / "a.png").write_bytes(png(np.zeros((8, 8), dtype=np.uint8)))
    (folder / "big.png").write_bytes(png(np.full((32, 24, 3), 200, dtype=np.uint8)))
    (folder / "bad.png").write_bytes(b"nope")
    with pytest.raises(DataError, match=r"bad.png.*not an image.*--skip-bad"):
        predict_images(model, folder, top_k=3)
    scored = predict_images(model, folder, top_k=3, skip_bad=True)
    assert list(scored["file"]) == [str(folder / n) for n in ("a.png", "bad.png", "big.png")]
    assert scored.loc[1, "error"].endswith("not an image, or a corrupt one (unknown format)")
    assert len(json.loads(scored.loc[0, "top_k"])) == 3  # JSON text: one cell in CSV or Parquet
    (workspace / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        predict_images(model, workspace / "empty")
    with pytest.raises(DataError, match="input not found"):
        predict_images(model, workspace / "nowhere")


def test_predict_cli_stops_at_an_unreadable_image(workspace: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from zero2one.cli.main import main

    train(recipe(epochs=1), out=workspace / "m")
    (workspace / "not-an-image.png").write_text("hello")
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(workspace / "m"), "--input", str(workspace / "not-an-image.png")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress line
    assert err.startswith("error:") and "not an image" in err and "--skip-bad" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(workspace / "m"), "--input", str(workspace / "not-an-image.png"),
              "--skip-bad"])
    assert exit_info.value.code == 0
    assert "not an image" in capsys.readouterr().out


# ---- serving ----

def test_server_answers_uploads_and_base64(workspace: Path) -> None:
    from fastapi.testclient import TestClient

    from zero2one.serving import ServeSettings, create_app

    train(recipe(epochs=1), out=workspace / "m")
    digit = png(np.zeros((8, 8), dtype=np.uint8))
    settings = ServeSettings(model=str(workspace / "m"), max_image_pixels=10_000,
                             max_image_bytes=50_000)
    with TestClient(create_app(settings)) as client:
        upload = client.post("/predict", files={"file": ("d.png", digit, "image/png")},
                             data={"top_k": "2"})
        assert upload.status_code == 200, upload.text
        body = upload.json()
        assert len(body["top_k"][0]) == 2 and body["labels"][0] in [str(i) for i in range(10)]
        encoded = base64.b64encode(digit).decode()
        both = client.post("/predict", json={"images": [encoded, f"data:image/png;base64,"
                                                                  f"{encoded}"], "top_k": 1})
        assert both.status_code == 200 and len(both.json()["result"]) == 2
        for bad, message in [
            ({"image": "###"}, "not valid base64"),
            ({"image": base64.b64encode(b"junk").decode()}, "not an image"),
            ({"image": base64.b64encode(png(np.zeros((200, 200), np.uint8))).decode()},
             "over the limit"),
            ({"images": []}, "no images"),
            ({"image": encoded, "images": [encoded]}, "exactly one of image or images"),
            ({"image": encoded, "top_k": 0}, "top_k"),
        ]:
            response = client.post("/predict", json=bad)
            assert response.status_code == 422, (bad, response.text)
            assert message in response.json()["error"]["message"]
        assert client.post("/predict", files={"file": ("x.png", b"junk", "image/png")}
                           ).status_code == 422
        assert client.post("/predict", content=b"{", headers={
            "content-type": "application/json"}).status_code == 400
        spec = client.get("/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]
        assert "multipart/form-data" in spec["content"]


def test_tracked_run_has_per_epoch_metrics_and_resume_reuses_it(workspace: Path) -> None:
    from zero2one import tracking

    cfg = {**recipe(epochs=3), "track": {"enabled": True, "experiment": "vision"}}
    config = validate(cfg)
    task = get_task(config.task)(config)
    # an interrupted tracked fit leaves its run id beside the checkpoint
    from zero2one.progress import RunReporter

    with pytest.raises(Interrupt), tracking.start_run("vision", run_name="vision-test",
                                                       tags={}) as run:
        task.run_id = run.run_id
        reporter = RunReporter(StopAt(2), run.log_metrics)  # type: ignore[arg-type]
        task.fit(task.load_data(), reporter=reporter)
    assert task.interrupted_run() == run.run_id
    result = train(cfg, resume=True)
    assert result.run_id == run.run_id  # the same run goes on
    history = tracking.client().get_metric_history(result.run_id, "val_accuracy")
    assert sorted(m.step for m in history) == [1, 2, 2, 3]  # epoch 2 ran twice: killed, redone
    assert tracking.get_run(result.run_id)["status"] == "FINISHED"


def test_python_predict_takes_what_users_pass(workspace: Path) -> None:
    from PIL import Image

    train(recipe(epochs=1), out=workspace / "m")
    model = load(workspace / "m")
    (workspace / "d.png").write_bytes(png(np.zeros((8, 8), dtype=np.uint8)))
    one = model.predict(str(workspace / "d.png"))  # a path, not a list of characters
    assert len(one) == 1 and len(one[0]) == 3
    image = Image.open(workspace / "d.png")
    assert model.predict(image) == one == model.predict([workspace / "d.png"])
    with pytest.raises(DataError, match="cannot read image digit.png"):
        model.predict("digit.png")
    with pytest.raises(SchemaError, match="an image model predicts a path"):
        model.predict({"x": 1})
