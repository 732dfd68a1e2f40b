"""Image generation: captioned data and its bad inputs, the pixel pipeline (batching, guidance,
negative prompts, save/load), training and resume, evaluation, generate-image, the OpenAI images
route and its limits, and pretrained diffusers pipelines (a tiny Stable Diffusion)."""

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
from zero2one.cli.main import main
from zero2one.errors import ArtifactError, DataError, SchemaError, UserError
from zero2one.tasks.imagegen.config import CaptionedDataConfig
from zero2one.tasks.imagegen.data import load_captioned
from zero2one.tasks.imagegen.evaluate import diversity

from ..conftest import fit_until_interrupted, train_killed_at_checkpoint


def recipe(encoder: Path, **train_cfg: Any) -> dict[str, Any]:
    return {
        "task": "image-generation", "name": "imagegen-test", "seed": 0,
        "data": {"source": "sklearn:digits", "template": "a handwritten digit {label}",
                 "image_size": 8, "holdout": 0.3},
        "model": {"text_encoder": str(encoder), "block_out_channels": [8, 16],
                  "norm_num_groups": 4, "attention_head_dim": 4},
        "train": {"steps": 6, "batch_size": 8, "sample_every": 3, "checkpoint_every": 2,
                  "warmup_steps": 2, **train_cfg},
        "sample": {"steps": 2, "guidance_scale": 3.0},
        "eval": {"images_per_prompt": 2, "guidance_scales": [1, 3], "judge_epochs": 1},
        "track": {"enabled": False},
    }


@pytest.fixture(scope="module")
def model(tiny_text_encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("imagegen") / "model"
    train(recipe(tiny_text_encoder), out=out)
    return load(out)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def write_image(path: Path, size: tuple[int, int] = (8, 8), caption: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png(np.zeros((size[1], size[0]), dtype=np.uint8)))
    if caption is not None:
        path.with_suffix(".txt").write_text(caption)


# ---- captioned data ----

def data(source: str, **cfg: Any) -> Any:
    return load_captioned(CaptionedDataConfig(source=source, **cfg))


def test_digits_get_word_captions() -> None:
    digits = data("sklearn:digits", template="a handwritten digit {label}", image_size=16)
    assert digits.x.shape == (1797, 16, 16, 1)
    assert digits.captions[0] == "a handwritten digit zero"
    assert len(digits.prompts) == 10 and digits.names["a handwritten digit seven"] == "7"


def test_class_folders_use_the_template(tmp_path: Path) -> None:
    for name in ("red_star", "blue_circle"):
        for i in range(5):
            write_image(tmp_path / name / f"{i}.png")
    captioned = data(f"folder:{tmp_path}", template="a {label}")
    assert sorted(captioned.prompts) == ["a blue circle", "a red star"]
    assert captioned.labels().min() == 0


def test_caption_files(tmp_path: Path) -> None:
    for i in range(6):
        write_image(tmp_path / f"{i}.png", caption=f"  a  red\nstar {i % 2} ")
    captioned = data(f"folder:{tmp_path}")
    assert set(captioned.captions) == {"a red star 0", "a red star 1"}  # whitespace folded


def test_shapes_with_captions(tmp_path: Path) -> None:
    from zero2one.tasks.vision.config import ImageDataConfig
    from zero2one.tasks.vision.data import load_images
    from zero2one.tasks.vision.shapes import make_shapes

    make_shapes(tmp_path / "s", size=16, per_class=20, seed=0, captions=True)
    captioned = data(f"folder:{tmp_path / 's'}")
    assert len(captioned.prompts) == 16 and "a red star" in captioned.prompts
    assert captioned.x.shape == (80, 16, 16, 3)
    red = captioned.x[captioned.captions.index("a red circle")].reshape(-1, 3)
    assert (red[:, 0].astype(int) - red[:, 2] > 100).any()  # red pixels are there
    # image classification reads the same folder by shape and leaves the captions alone
    images = load_images(ImageDataConfig(source=f"folder:{tmp_path / 's'}"))
    assert images.class_names == sorted(["circle", "square", "triangle", "star"])
    assert not images.skipped and len(images.x) == 80


def test_missing_and_empty_captions(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", caption="a cat")
    write_image(tmp_path / "b.png")
    write_image(tmp_path / "c.png")
    with pytest.raises(DataError, match=r"2 image\(s\) have no caption file.*b.png, c.png"):
        data(f"folder:{tmp_path}")
    (tmp_path / "b.txt").write_text("a dog")
    (tmp_path / "c.txt").write_text("  \n")
    with pytest.raises(DataError, match="c.txt: empty caption"):
        data(f"folder:{tmp_path}")


def test_mixed_and_non_square_sizes(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", (8, 8), caption="a cat")
    write_image(tmp_path / "b.png", (16, 16), caption="a dog")
    with pytest.raises(DataError, match=r"mixed sizes \(8×8 \(1\), 16×16 \(1\)\).*image_size"):
        data(f"folder:{tmp_path}")
    assert data(f"folder:{tmp_path}", image_size=8).x.shape == (2, 8, 8, 1)
    wide = tmp_path / "wide"
    write_image(wide / "a.png", (16, 8), caption="a cat")
    with pytest.raises(DataError, match="16×8.*square"):
        data(f"folder:{wide}")


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        data(f"folder:{tmp_path / 'nope'}")
    with pytest.raises(DataError, match="no images"):
        data(f"folder:{tmp_path}")
    with pytest.raises(DataError, match="use sklearn:digits or folder:PATH"):
        data("csv:x")
    write_image(tmp_path / "loose.png")
    with pytest.raises(DataError, match="need caption files"):
        data(f"folder:{tmp_path}", captions="template")


def test_recipe_values_are_checked(tiny_text_encoder: Path) -> None:
    from zero2one.errors import RecipeError

    cfg = recipe(tiny_text_encoder)
    with pytest.raises(RecipeError, match="template"):
        validate({**cfg, "data": {**cfg["data"], "template": "a {kind}"}})
    with pytest.raises(RecipeError, match="guidance scales start at 1"):
        validate({**cfg, "eval": {"guidance_scales": [0.5]}})
    with pytest.raises(RecipeError, match="norm_num_groups"):
        validate({**cfg, "model": {**cfg["model"], "block_out_channels": [6, 16]}})


# ---- the pipeline ----

def test_a_batch_draws_what_single_calls_draw(model: Any) -> None:
    """Requests with different prompts, guidance scales, negative prompts and seeds share one
    denoising loop and get exactly the images they would get alone."""
    requests = [model.options(prompt="a handwritten digit one", guidance_scale=3, seed=1, n=2),
                model.options(prompt="a handwritten digit two", guidance_scale=1, seed=7),
                model.options(prompt="a handwritten digit two", guidance_scale=5, seed=7,
                              negative_prompt="a handwritten digit three")]
    together = model.generate_many(requests)
    for options, (images, seeds) in zip(requests, together, strict=True):
        alone, alone_seeds = model.generate_many([options])[0]
        assert seeds == alone_seeds == [options.seed + i for i in range(options.n)]
        for a, b in zip(images, alone, strict=True):
            np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), atol=1)


def test_seed_negative_prompt_and_guidance_change_the_image(model: Any) -> None:
    def draw(**options: Any) -> np.ndarray:
        return np.asarray(model.generate("a handwritten digit one", steps=3, **options)[0],
                          dtype=float)

    base = draw(seed=3, guidance_scale=4)
    assert np.array_equal(base, draw(seed=3, guidance_scale=4))  # reproducible
    assert not np.array_equal(base, draw(seed=4, guidance_scale=4))
    assert not np.array_equal(base, draw(seed=3, guidance_scale=4,
                                         negative_prompt="a handwritten digit seven"))
    # at guidance 1 the negative prompt plays no part (no guidance)
    assert np.array_equal(draw(seed=3, guidance_scale=1),
                          draw(seed=3, guidance_scale=1, negative_prompt="a handwritten digit"))
    for scheduler in ("ddim", "dpm++", "euler", "ddpm"):
        image = model.generate("a handwritten digit one", steps=3, seed=0, scheduler=scheduler)
        assert image[0].size == (8, 8) and image[0].mode == "L"


@pytest.mark.parametrize(("options", "message"), [
    ({"prompt": ""}, "the prompt is empty"),
    ({"prompt": "   "}, "the prompt is empty"),
    ({"prompt": "a", "guidance_scale": 0.5}, "guidance_scale: Input should be greater than or "
     "equal to 1"),
    ({"prompt": "a", "steps": 0}, "steps: Input should be greater than or equal to 1"),
    ({"prompt": "a", "steps": 100_000}, "steps: Input should be less than or equal to 1000"),
    ({"prompt": "a", "n": 0}, "n: Input should be greater than or equal to 1"),
    ({"prompt": "a", "scheduler": "plms"}, "scheduler: Input should be"),
    ({"prompt": "a", "width": 16, "height": 8}, "this model draws 8×8 images; got 16×8"),
    ({"prompt": "a " * 40}, "the prompt is 42 tokens; this model reads at most 24"),
    ({"prompt": "a", "negative_prompt": "a " * 40}, "reads at most 24"),
])
def test_bad_generation_options(model: Any, options: dict[str, Any], message: str) -> None:
    with pytest.raises(SchemaError) as info:
        model.generate(**options)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_the_saved_pipeline_is_a_diffusers_directory(model: Any) -> None:
    from zero2one.tasks.imagegen.pipeline import PixelTextToImagePipeline

    directory = model.ref.path / "pipeline"
    index = json.loads((directory / "model_index.json").read_text())
    assert index["_class_name"] == "PixelTextToImagePipeline"
    assert index["scheduler"] == ["diffusers", "DDIMScheduler"]  # the recipe's sampler
    assert not list(directory.rglob("*.bin")) and list(directory.rglob("*.safetensors"))
    pipe = PixelTextToImagePipeline.from_pretrained(directory)
    import torch

    ours = pipe("a handwritten digit two", guidance_scale=3, num_inference_steps=2,
                generator=torch.Generator().manual_seed(5)).images[0]
    theirs = model.generate("a handwritten digit two", guidance_scale=3, steps=2, seed=5)[0]
    assert np.array_equal(np.asarray(ours), np.asarray(theirs))
    # the pipeline directory alone is a model reference too (claimed by the task)
    again = load(str(directory))
    assert again.name == "image-generation" and again.defaults_.guidance_scale == 3.0


def test_predict_forms(model: Any, tmp_path: Path) -> None:
    import pandas as pd

    from zero2one.api import predict_file

    one = model.predict("a handwritten digit one")
    assert np.array_equal(np.asarray(one), np.asarray(model.predict("a handwritten digit one")))
    assert len(model.predict(["a handwritten digit one", "a handwritten digit two"])) == 2
    with pytest.raises(SchemaError, match="prompt string"):
        model.predict(3)
    with pytest.raises(SchemaError, match="`prompt` column"):
        model.predict(pd.DataFrame({"text": ["x"]}))
    path = tmp_path / "prompts.csv"
    pd.DataFrame({"prompt": ["a handwritten digit one", "a handwritten digit two"],
                  "negative_prompt": ["", "a handwritten digit three"]}).to_csv(path, index=False)
    scored = predict_file(model, path, tmp_path / "out.csv", steps="2", seed="4")
    image = Image.open(io.BytesIO(base64.b64decode(scored["image"][0])))
    assert image.size == (8, 8) and list(scored["seed"]) == [4, 4]
    with pytest.raises(UserError, match="top_k do not apply"):
        predict_file(model, path, top_k=3)
    with pytest.raises(SchemaError, match="steps: 'many' is not a number"):
        predict_file(model, path, steps="many")


# ---- training ----

def test_training_leaves_a_report_and_honest_metrics(model: Any, tiny_text_encoder: Path,
                                                     tmp_path: Path) -> None:
    manifest = model.manifest
    assert manifest["training"]["steps"] == 6
    assert [h["step"] for h in manifest["training"]["history"]][-1] == 6.0
    metrics = manifest["metrics"]
    assert {"adherence_g1", "adherence_g3", "adherence_best", "diversity", "judge_accuracy",
            "real_diversity"} <= set(metrics)
    assert 0 <= metrics["adherence_best"] <= 1 and metrics["diversity"] > 0
    report = sorted(p.name for p in (model.ref.path / "report").iterdir())
    assert {"loss.png", "samples-step000003.png", "samples-step000006.png", "guidance-1.png",
            "guidance-3.png", "adherence.csv"} <= set(report)
    table = (model.ref.path / "report" / "adherence.csv").read_text().splitlines()
    assert table[0] == "prompt,guidance 1,guidance 3" and len(table) == 11


def test_resume_ends_where_an_uninterrupted_run_ends(workspace: Path,
                                                     tiny_text_encoder: Path) -> None:
    cfg = recipe(tiny_text_encoder, sample_every=None, log_every=1)
    cfg["eval"]["judge"] = None
    full = load(train(cfg, out=workspace / "full").model_dir)
    task = fit_until_interrupted(cfg, 5)
    assert (task.checkpoint_dir() / "last.pt").exists()
    train(cfg, out=workspace / "resumed", resume=True)
    resumed = load(workspace / "resumed")
    assert resumed.manifest["training"]["resumed_from"] == 4  # the last checkpoint
    a = full.generate("a handwritten digit one", seed=0, steps=2)[0]
    b = resumed.generate("a handwritten digit one", seed=0, steps=2)[0]
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not task.checkpoint_dir().exists()


@pytest.mark.slow
def test_resume_after_kill_9(workspace: Path, tiny_text_encoder: Path) -> None:
    """A real training process killed with SIGKILL; --resume finishes the job."""
    cfg = recipe(tiny_text_encoder, steps=100, sample_every=None, checkpoint_every=20)
    cfg["eval"]["judge"] = None
    path = train_killed_at_checkpoint(cfg, workspace)
    train(path, out=workspace / "resumed", resume=True)
    resumed = load(workspace / "resumed")
    assert resumed.manifest["training"]["resumed_from"] >= 20
    full = load(train(cfg, out=workspace / "full").model_dir)
    a = full.generate("a handwritten digit one", seed=0, steps=2)[0]
    b = resumed.generate("a handwritten digit one", seed=0, steps=2)[0]
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_too_long_captions_and_bad_sizes_fail_before_training(tiny_text_encoder: Path,
                                                              tmp_path: Path) -> None:
    cfg = recipe(tiny_text_encoder)
    cfg["model"]["max_tokens"] = 4
    with pytest.raises(DataError, match="caption is too long.*raise model.max_tokens"):
        train(cfg, out=tmp_path / "a")
    cfg = recipe(tiny_text_encoder)
    cfg["data"]["image_size"] = 10
    cfg["model"]["block_out_channels"] = [4, 8, 16]
    cfg["model"]["norm_num_groups"] = 4
    from zero2one.errors import RecipeError

    with pytest.raises(RecipeError, match="divisible by 4; the images are 10×10"):
        train(cfg, out=tmp_path / "b")
    cfg = recipe(tiny_text_encoder)
    cfg["model"]["text_encoder"] = str(tmp_path)
    with pytest.raises(UserError, match="not a transformers model directory"):
        train(cfg, out=tmp_path / "c")


def test_tracked_run_logs_loss_per_step_and_sample_grids(workspace: Path,
                                                         tiny_text_encoder: Path) -> None:
    from zero2one import tracking

    cfg = recipe(tiny_text_encoder, log_every=2)
    cfg["track"] = {"enabled": True}
    result = train(cfg)
    history = tracking.client().get_metric_history(result.run_id, "loss")
    assert [m.step for m in history] == [2, 4, 6]
    artifacts = [a.path for a in tracking.client().list_artifacts(result.run_id, "plots")]
    assert "plots/samples-step000006.png" in artifacts and "plots/adherence.csv" in artifacts
    assert result.metrics["adherence_best"] == pytest.approx(
        tracking.client().get_run(result.run_id).data.metrics["test_adherence_best"])


# ---- evaluation ----

def test_diversity() -> None:
    same = np.zeros((4, 8, 8, 1), dtype=np.uint8)
    assert diversity(same) == 0
    different = same.copy()
    different[1] = 255
    assert diversity(different[:2]) == pytest.approx(1.0)
    assert diversity(same[:1]) == 0


def test_a_registered_classifier_can_judge(model: Any, tiny_text_encoder: Path,
                                           tmp_path: Path) -> None:
    judge = train({"task": "image-classification", "name": "judge", "seed": 0,
                   "data": {"source": "sklearn:digits", "image_size": 8},
                   "model": {"arch": "seed-cnn"}, "train": {"epochs": 1},
                   "track": {"enabled": False}}, out=tmp_path / "judge")
    cfg = recipe(tiny_text_encoder)
    cfg["eval"]["judge"] = str(judge.model_dir)
    task = get_task("image-generation")(validate(cfg))
    task.pipe_, task.defaults_, task.prompts_ = model.pipe_, model.defaults_, model.prompts_
    metrics = task.evaluate(task.load_data())
    assert "adherence_best" in metrics and "judge_accuracy" not in metrics
    cfg["data"]["words"] = {"1": "uno"}  # "a handwritten digit uno" is no class of the judge
    cfg["data"]["template"] = "digit {label}"
    wrong = get_task("image-generation")(validate(cfg))
    wrong.pipe_, wrong.defaults_ = model.pipe_, model.defaults_
    bad = wrong.load_data()
    bad.names = {}
    with pytest.raises(UserError, match="do not cover the prompts"):
        wrong.evaluate(bad)


# ---- the command line ----

def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def test_generate_image_command(model: Any, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sevens"
    code, stdout, err = run(["generate-image", str(model.ref.path), "-p",
                             "a handwritten digit seven", "--negative-prompt",
                             "a handwritten digit one", "--n", "3", "--seed", "10", "--steps",
                             "2", "--scheduler", "dpm++", "--out", str(out), "--json"], capsys)
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["seeds"] == [10, 11, 12]
    assert sorted(p.name for p in out.iterdir()) == ["grid.png", "image-10.png", "image-11.png",
                                                     "image-12.png"]
    assert Image.open(out / "grid.png").size == (3 * 9 + 1, 9 + 1)


@pytest.mark.parametrize(("extra", "message"), [
    (["--guidance-scale", "0.5"], "guidance_scale: Input should be greater than or equal to 1"),
    (["--steps", "0"], "steps: Input should be greater than or equal to 1"),
    (["--width", "12"], "this model draws 8×8 images"),
])
def test_generate_image_bad_options_exit_2(model: Any, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str],
                                           extra: list[str], message: str) -> None:
    code, _, err = run(["generate-image", str(model.ref.path), "-p", "a handwritten digit one",
                        "--out", str(tmp_path / "o"), *extra], capsys)
    assert code == 2 and err.strip().startswith("error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()  # nothing written


def test_generate_image_refuses_a_used_directory_and_other_tasks(
        model: Any, iris_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.png").write_bytes(b"x")
    code, _, err = run(["generate-image", str(model.ref.path), "-p", "a", "--out",
                        str(tmp_path / "used")], capsys)
    assert code == 2 and "not an empty directory" in err
    code, _, err = run(["generate-image", str(iris_model), "-p", "a", "--out",
                        str(tmp_path / "x")], capsys)
    assert code == 2 and "generate-image draws with image-generation models" in err
    code, _, err = run(["generate-image", "builtin:all-minilm-l6-v2", "-p", "a", "--out",
                        str(tmp_path / "y")], capsys)
    assert code == 2 and "is a text encoder" in err


# ---- the server ----

def client(model: Any, **settings: Any) -> Any:
    from fastapi.testclient import TestClient

    from zero2one.serving import ServeSettings, create_app

    return TestClient(create_app(ServeSettings(model=str(model.ref.path), **settings)))


def test_images_route_answers_in_openai_shape(model: Any) -> None:
    with client(model) as http:
        answer = http.post("/v1/images/generations", json={
            "prompt": "a handwritten digit four", "n": 2, "size": "8x8", "seed": 3,
            "steps": 2, "guidance_scale": 4, "negative_prompt": "a handwritten digit one",
            "response_format": "b64_json", "quality": "standard"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert [d["seed"] for d in body["data"]] == [3, 4] and body["created"] > 0
        image = Image.open(io.BytesIO(base64.b64decode(body["data"][0]["b64_json"])))
        expected = model.generate("a handwritten digit four", n=1, seed=3, steps=2,
                                  guidance_scale=4, negative_prompt="a handwritten digit one")
        assert np.array_equal(np.asarray(image), np.asarray(expected[0]))
        listed = http.get("/v1/models").json()["data"][0]
        assert listed["input_schema"]["size"] == "8x8"
        assert "a handwritten digit four" in listed["input_schema"]["prompts"]


def test_official_openai_client_and_auth(model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import openai

    monkeypatch.setenv("ZERO2ONE_API_KEY", "secret")
    with client(model) as http:
        assert http.post("/v1/images/generations", json={"prompt": "a"}).status_code == 401
        api = openai.OpenAI(base_url="http://testserver/v1", api_key="secret", http_client=http,
                            max_retries=0)
        result = api.images.generate(
            model="digits", prompt="a handwritten digit five", n=2, size="8x8",  # type: ignore[arg-type]
            response_format="b64_json", extra_body={"steps": 2, "seed": 9})
        assert len(result.data) == 2
        image = Image.open(io.BytesIO(base64.b64decode(result.data[1].b64_json or "")))
        expected = model.generate("a handwritten digit five", seed=10, steps=2)[0]
        assert np.array_equal(np.asarray(image), np.asarray(expected))
        with pytest.raises(openai.BadRequestError, match="at most 4 images"):
            api.images.generate(prompt="a handwritten digit five", n=5)


@pytest.mark.parametrize(("body", "message"), [
    ({"prompt": ""}, "prompt"),
    ({"prompt": "a", "n": 9}, "n: at most 4 images per request"),
    ({"prompt": "a", "steps": 500}, "steps: at most 100 per request"),
    ({"prompt": "a", "size": "4096x4096"}, "over the limit of 1048576 pixels"),
    ({"prompt": "a", "size": "big"}, "use WIDTHxHEIGHT"),
    ({"prompt": "a", "size": "16x8"}, "this model draws 8×8 images"),
    ({"prompt": "a", "response_format": "url"}, "only b64_json"),
    ({"prompt": "a", "guidance_scale": 0}, "guidance_scale"),
    ({"prompt": "a", "scheduler": "plms"}, "scheduler"),
    ({"prompt": "a " * 40}, "reads at most 24"),
    ({"n": 1}, "prompt: Field required"),
])
def test_images_route_refuses_bad_requests(model: Any, body: dict[str, Any],
                                           message: str) -> None:
    with client(model) as http:
        answer = http.post("/v1/images/generations", json=body)
        assert answer.status_code == 400, answer.text
        assert message in answer.json()["error"]["message"]


def test_concurrent_requests_share_a_batch(model: Any) -> None:
    import asyncio

    from zero2one.tasks.imagegen.serving import ImageEngine

    engine = ImageEngine(model, "m", max_images=4, max_steps=10, max_pixels=1024,
                         gather_seconds=0.2)

    async def both() -> list[Any]:
        first = model.options(prompt="a handwritten digit one", seed=1, steps=2)
        second = model.options(prompt="a handwritten digit two", seed=2, steps=2, n=2)
        return await asyncio.gather(engine.draw(first), engine.draw(second))

    try:
        (_, seeds_one), (two, seeds_two) = asyncio.run(both())
    finally:
        engine.close()
    assert list(engine.batch_sizes) == [2] and seeds_one == [1] and seeds_two == [2, 3]
    alone = model.generate("a handwritten digit two", seed=2, steps=2, n=2)
    assert [np.asarray(Image.open(io.BytesIO(p))).tolist() for p in two] == \
        [np.asarray(im).tolist() for im in alone]


# ---- pretrained diffusers pipelines ----

@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Stable Diffusion pipeline (VAE, CLIP text encoder, UNet) built from tiny configs with a
    character-level CLIP vocabulary, saved with save_pretrained as diffusers' tests do."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    out = tmp_path_factory.mktemp("tiny-sd")
    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    (out / "vocab.json").write_text(json.dumps(vocab))
    (out / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(out / "vocab.json"), str(out / "merges.txt"),
                              model_max_length=32)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
        layers_per_block=1, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16,
        attention_head_dim=4, norm_num_groups=4)
    vae = AutoencoderKL(
        block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), norm_num_groups=4,
        sample_size=16)
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=32,
        bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"]))
    pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text, tokenizer=tokenizer,
                                   scheduler=DDIMScheduler(clip_sample=False, steps_offset=1),
                                   safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(out / "sd", safe_serialization=True)
    return out / "sd"


def test_a_stable_diffusion_directory_generates(tiny_sd: Path) -> None:
    from zero2one.refs import resolve

    resolved = resolve(str(tiny_sd))
    assert (resolved.task, resolved.kind) == ("image-generation", "pretrained")
    sd = load(str(tiny_sd))
    assert type(sd.pipe_).__name__ == "StableDiffusionPipeline"
    assert sd.defaults_.guidance_scale == 7.5
    for scheduler in ("ddim", "dpm++", "euler"):
        images = sd.generate("a red star", negative_prompt="a blue circle", steps=2, seed=0,
                             n=2, width=16, height=16, scheduler=scheduler)
        assert [im.size for im in images] == [(16, 16)] * 2 and images[0].mode == "RGB"
    assert type(sd.pipe_.scheduler).__name__ == "DDIMScheduler"  # swapped for the call only
    a = sd.generate("a red star", steps=2, seed=1, width=16, height=16)[0]
    b = sd.generate("a red star", steps=2, seed=1, width=16, height=16)[0]
    assert np.array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(SchemaError, match="width 12 is not a multiple of 8"):
        sd.generate("a red star", width=12, height=16)
    with pytest.raises(SchemaError, match="the prompt is [0-9]+ tokens; this pipeline's text "
                                          "encoder reads at most 32"):
        sd.generate("a red star " * 4)  # one token per character here


def test_a_pipeline_missing_a_component_is_refused(tiny_sd: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "sd"
    shutil.copytree(tiny_sd, copy)
    shutil.rmtree(copy / "vae")
    with pytest.raises(ArtifactError, match="the pipeline's 'vae' component is missing"):
        load(str(copy))
    (copy / "model_index.json").write_text("{")
    with pytest.raises(ArtifactError, match="unreadable model_index.json"):
        load(str(copy))


def test_stable_diffusion_served(tiny_sd: Path) -> None:
    from fastapi.testclient import TestClient

    from zero2one.serving import ServeSettings, create_app

    with TestClient(create_app(ServeSettings(model=str(tiny_sd)))) as http:
        answer = http.post("/v1/images/generations", json={
            "prompt": "a red star", "size": "16x16", "steps": 2, "n": 1})
        assert answer.status_code == 200, answer.text
        refused = http.post("/v1/images/generations", json={"prompt": "a", "size": "12x16"})
        assert refused.status_code == 400 and "width 12 is not a multiple of 8" in refused.text


def test_hub_ids_are_claimed_explicitly() -> None:
    cls = get_task("image-generation")
    assert cls.claims("diffusers:stabilityai/sd-turbo")
    assert not cls.claims("diffusers:not an id") and not cls.claims("stabilityai/sd-turbo")
