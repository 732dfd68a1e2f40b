"""The vision-language task: question-answer data from images, the LLaVA-style model on tiny
parts (the contract's seed CNN and a 2-layer Llama), its answers in Python, on /predict and
on OpenAI's chat route with image parts — and the bad inputs each refused in one line."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zero2one.catalog import get_task, load_recipe
from zero2one.errors import DataError, IntegrityError, RecipeError, SchemaError
from zero2one.progress import NullReporter
from zero2one.tasks.textgen.train import quiet_peft
from zero2one.tasks.vlm.config import VLDataConfig
from zero2one.tasks.vlm.data import DIGIT_QUESTION, load_questions
from zero2one.tasks.vlm.task import _majority, _same

from ..cases import REPO


def _png(value: int = 0, size: int = 8, mode: str = "L") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    shape = (size, size) if mode == "L" else (size, size, 3)
    Image.fromarray(np.full(shape, value, dtype=np.uint8), mode).save(buffer, format="PNG")
    return buffer.getvalue()


def _data_url(blob: bytes, kind: str = "image/png") -> str:
    return f"data:{kind};base64,{base64.b64encode(blob).decode()}"


def _chat(url: str | None, text: str = DIGIT_QUESTION, **extra: Any) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
    if url is not None:
        parts.insert(0, {"type": "image_url", "image_url": {"url": url}})
    return {"messages": [{"role": "user", "content": parts}], "max_tokens": 3,
            "temperature": 0, **extra}


# ---- data -----------------------------------------------------------------------------------

def test_digits_questions_are_split_by_image() -> None:
    data = load_questions(VLDataConfig(source="sklearn:digits"), seed=0)
    assert len(data.images) == 1797 and data.fingerprint["rows"] == 1797
    seen = {name: {q.image for q in split} for name, split in data.splits.items()}
    assert not seen["train"] & seen["test"] and not seen["val"] & seen["test"]
    assert {q.answer for q in data.splits["test"]} == {str(d) for d in range(10)}
    assert all(q.question == DIGIT_QUESTION and q.kind == "digit" for q in data.splits["val"])


def test_a_captioned_folder_gives_three_questions_per_image(tmp_path: Path) -> None:
    from zero2one.tasks.vision.shapes import make_shapes

    make_shapes(tmp_path / "shapes", size=16, per_class=5, captions=True)
    data = load_questions(VLDataConfig(source=f"folder:{tmp_path / 'shapes'}"), seed=0)
    assert len(data.images) == 20 and data.fingerprint["rows"] == 60
    assert data.fingerprint["question_types"] == ["colour", "describe", "shape"]
    every = [q for split in data.splits.values() for q in split]
    star = next(q for q in every if q.kind == "describe" and q.answer.endswith("star"))
    same_image = {q.kind: q.answer for q in every if q.image == star.image}
    assert same_image["describe"] == f"a {same_image['colour']} {same_image['shape']}"


def test_bad_question_data_is_refused_in_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "pics"
    folder.mkdir()
    with pytest.raises(DataError, match="no image has a caption file"):
        load_questions(VLDataConfig(source=f"folder:{folder}"), seed=0)
    (folder / "a.png").write_bytes(_png())
    (folder / "a.txt").write_text("two red stars and a moon\n")
    with pytest.raises(DataError, match="is not \"a COLOUR SHAPE\""):
        load_questions(VLDataConfig(source=f"folder:{folder}"), seed=0)
    lines = tmp_path / "qa.jsonl"
    lines.write_text(json.dumps({"image": "a.png", "question": "What?"}) + "\n")
    with pytest.raises(DataError, match=r"qa.jsonl:1: a record needs image, question and"):
        load_questions(VLDataConfig(source=f"jsonl:{lines}"), seed=0)
    lines.write_text(json.dumps({"image": "gone.png", "question": "What?", "answer": "x"}))
    with pytest.raises(DataError, match="cannot read .*gone.png"):
        load_questions(VLDataConfig(source=f"jsonl:{lines}"), seed=0)
    with pytest.raises(DataError, match="use sklearn:digits, folder:PATH"):
        load_questions(VLDataConfig(source="sklearn:iris"), seed=0)


def test_jsonl_questions_with_types(tmp_path: Path) -> None:
    for i in range(12):
        (tmp_path / f"{i}.png").write_bytes(_png(i * 20))
    lines = [json.dumps({"image": f"{i}.png", "question": "Bright?", "answer":
                         "yes" if i > 5 else "no", "type": "brightness"}) for i in range(12)]
    (tmp_path / "qa.jsonl").write_text("\n".join(lines) + "\n\n")
    data = load_questions(VLDataConfig(source=f"jsonl:{tmp_path / 'qa.jsonl'}"), seed=0)
    assert len(data.images) == 12 and data.fingerprint["question_types"] == ["brightness"]
    assert sum(len(s) for s in data.splits.values()) == 12


def test_the_text_only_baseline_is_the_most_frequent_answer() -> None:
    from zero2one.tasks.vlm.data import Question

    asked = [Question(0, "Q?", "a", "t"), Question(1, "Q?", "b", "t"),
             Question(2, "Q?", "b", "t"), Question(3, "R?", "c", "t")]
    assert _majority(asked) == {"Q?": "b", "R?": "c"}
    assert _same(" Seven. ", "seven") and not _same("seven", "7")


# ---- the model ------------------------------------------------------------------------------

@pytest.fixture
def vlm(trained: Any) -> Any:
    return trained("vision-language")


def test_answers_in_python_and_the_evaluation(vlm: Any) -> None:
    from PIL import Image

    model = vlm.task
    answer = model.predict({"image": _png(5), "question": DIGIT_QUESTION}, max_new_tokens=2)
    assert isinstance(answer, str)
    image = Image.open(io.BytesIO(_png(5)))
    said = model.chat([{"role": "user", "content": [{"type": "image", "image": image},
                                                    {"type": "text", "text": DIGIT_QUESTION}]}],
                      max_new_tokens=2)
    assert said == answer  # greedy: the same answer either way
    metrics = model.evaluate(vlm.data)
    assert set(metrics) == {"accuracy", "baseline_accuracy"}
    expected = _majority(vlm.data.splits["train"])[DIGIT_QUESTION]
    share = np.mean([q.answer == expected for q in vlm.data.splits["test"]])
    assert metrics["baseline_accuracy"] == pytest.approx(share)
    with pytest.raises(SchemaError, match="no image part"):
        model.chat([{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    with pytest.raises(SchemaError, match="needs an image and a question"):
        model.predict([{"question": DIGIT_QUESTION}])


def test_the_training_loss_is_transformers_loss_with_less_work(vlm: Any) -> None:
    """The projector's loss reads the shared template head once and the logits of answer
    positions only: the loss and every gradient are those of transformers' own loss over the
    whole rows — with the language model frozen and under LoRA (where the head's cache
    carries the adapters' gradient)."""
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    questions = vlm.data.splits["train"][:6]
    pixels = vlm.task.model_.prepare_images([vlm.data.images[q.image] for q in questions])
    texts, answers = [q.question for q in questions], [q.answer for q in questions]
    frozen = copy.deepcopy(vlm.task.model_)
    adapted = copy.deepcopy(vlm.task.model_)
    with quiet_peft():
        adapted.lm = get_peft_model(adapted.lm, LoraConfig(
            r=2, target_modules=["q_proj"], init_lora_weights=False))
    for model in (frozen, adapted):
        model.projector.train()
        trained = [p for p in model.parameters() if p.requires_grad]
        embeds, mask, labels = model.sequences(pixels, texts, answers)
        expected = model.lm(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss
        wanted = torch.autograd.grad(expected, trained)
        got = model.loss(pixels, texts, answers)
        for a, b in zip(torch.autograd.grad(got, trained), wanted, strict=True):
            assert torch.allclose(a, b, rtol=1e-3, atol=1e-6)
        assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    assert len([p for p in adapted.parameters() if p.requires_grad]) > len(
        [p for p in frozen.parameters() if p.requires_grad])


def test_the_encoder_must_be_an_image_classifier(trained: Any, tiny_lm: Path) -> None:
    config = load_recipe(REPO / "recipes/digits-vlm.yaml", [
        f"model.vision={trained('tabular-classification').directory}",
        f"model.lm={tiny_lm}", "track.enabled=false"])
    task = get_task("vision-language")(config)
    with pytest.raises(RecipeError, match="is a tabular-classification model"):
        task.fit(task.load_data(), reporter=NullReporter())


def test_a_projector_is_refused_with_another_language_model(vlm: Any, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           tiny_lm: Path) -> None:
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    other = tmp_path / "other-lm"
    shutil.copytree(tiny_lm, other)
    lm = AutoModelForCausalLM.from_pretrained(str(other))
    with torch.no_grad():
        lm.model.norm.weight.add_(1.0)
    lm.save_pretrained(other, safe_serialization=True)
    monkeypatch.setenv("ZERO2ONE_VLM_LM", str(other))
    from zero2one.refs import load

    with pytest.raises(IntegrityError, match="trained against other weights"):
        load(vlm.directory)


# ---- serving --------------------------------------------------------------------------------

@pytest.fixture
def client(vlm: Any) -> Any:
    from fastapi.testclient import TestClient

    from zero2one.serving import ServeSettings, create_app

    settings = ServeSettings(model=str(vlm.directory), max_image_bytes=4096,
                             max_image_pixels=1024)
    with TestClient(create_app(settings)) as http:
        yield http


def test_chat_with_an_image_part_streamed_and_not(client: Any) -> None:
    answer = client.post("/v1/chat/completions", json=_chat(_data_url(_png(7))))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert isinstance(body["choices"][0]["message"]["content"], str)
    assert body["usage"]["prompt_tokens"] > 4  # the visual tokens count
    streamed = client.post("/v1/chat/completions",
                           json=_chat(_data_url(_png(7)), stream=True,
                                      stream_options={"include_usage": True}))
    assert streamed.status_code == 200
    events = [json.loads(line[6:]) for line in streamed.text.splitlines()
              if line.startswith("data: {")]
    text = "".join(e["choices"][0]["delta"].get("content") or ""
                   for e in events if e["choices"])
    assert text == body["choices"][0]["message"]["content"]  # greedy: the same answer
    assert events[-1]["usage"]["completion_tokens"] == body["usage"]["completion_tokens"]
    assert streamed.text.rstrip().endswith("data: [DONE]")
    predicted = client.post("/predict", json={"instances": [
        {"image": base64.b64encode(_png(7)).decode(), "question": DIGIT_QUESTION}],
        "max_tokens": 3})
    assert predicted.status_code == 200, predicted.text
    assert predicted.json()["answers"] == [text]


@pytest.mark.parametrize(("body", "message"), [
    (_chat(None), "send one image_url part"),
    (_chat("data:image/png;base64,@@@"), "not valid base64"),
    (_chat("data:image/png,rawbytes"), "not a base64 data: URL"),
    (_chat(_data_url(b"<svg/>", "image/svg+xml")), "unsupported image type image/svg+xml"),
    (_chat("https://example.com/seven.png"), "does not fetch image URLs (zero2one serve "
                                                "--allow-image-urls)"),
    (_chat(_data_url(b"not an image")), "not an image, or a corrupt one"),
    (_chat(_data_url(_png(size=64, mode="RGB") + b"\0" * 5000)), "over 4096 bytes"),
    (_chat(_data_url(_png(size=40))), "40×40 pixels is over the limit of 1024"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": _data_url(_png())}},
        {"type": "image_url", "image_url": {"url": _data_url(_png())}},
        {"type": "text", "text": DIGIT_QUESTION}]}]}, "2 images: this model reads 1"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": _data_url(_png())}}]}]},
     "has no question"),
    (_chat(_data_url(_png()), response_format={"type": "json_object"}),
     "does not take response_format"),
])
def test_bad_image_requests_are_refused(client: Any, body: dict[str, Any], message: str) -> None:
    answer = client.post("/v1/chat/completions", json=body)
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["error"]["message"]


def test_completions_without_an_image_are_refused(client: Any) -> None:
    answer = client.post("/v1/completions", json={"prompt": "Which digit?", "max_tokens": 2})
    assert answer.status_code == 400
    assert "questions about an image" in answer.json()["error"]["message"]


# ---- pretrained image-text-to-text models (transformers) ------------------------------------

TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{% if m['content'] is string %}"
            "{{ m['content'] }}{% else %}{% for p in m['content'] %}{% if p['type'] == 'image' %}"
            "<image>{% else %}{{ p['text'] }}{% endif %}{% endfor %}{% endif %}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture(scope="module")
def tiny_llava(tiny_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised LLaVA (a 1-layer CLIP vision tower on 16×16 images in 8×8
    patches, the tiny Llama) with its processor: what SmolVLM or LLaVA directories hold."""
    import torch
    from transformers import (
        AutoTokenizer,
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    out = tmp_path_factory.mktemp("tiny-llava")
    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": 16},
                                              crop_size={"height": 16, "width": 16}),
        tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="full",
        chat_template=TEMPLATE, image_token="<image>", num_additional_image_tokens=1)
    torch.manual_seed(0)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                       num_attention_heads=2, image_size=16, patch_size=8),
        text_config=LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                num_hidden_layers=2, num_attention_heads=2,
                                num_key_value_heads=2, max_position_embeddings=256),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="full", vision_feature_layer=-1)
    LlavaForConditionalGeneration(config).save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out


def test_a_pretrained_model_is_claimed_and_answers(tiny_llava: Path, tiny_lm: Path) -> None:
    from PIL import Image

    from zero2one.refs import load, resolve

    assert resolve(str(tiny_llava)).task == "vision-language"
    assert resolve(str(tiny_lm)).task == "text-generation"  # a language model stays one
    model = load(str(tiny_llava))
    images = [Image.new("RGB", (20, 20), (200, 0, 0)), Image.new("L", (9, 9), 30)]
    answers = model.predict([{"image": im, "question": "What colour?"} for im in images],
                            max_new_tokens=3)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    # batched (left-padded) answers are each question's own
    assert answers[1] == model.predict({"image": images[1], "question": "What colour?"},
                                       max_new_tokens=3)
    with pytest.raises(Exception, match="zero2one saves the models it trains"):
        model.save(tiny_llava)


def test_a_pretrained_model_serves_image_parts(tiny_llava: Path) -> None:
    from fastapi.testclient import TestClient

    from zero2one.serving import ServeSettings, create_app

    with TestClient(create_app(ServeSettings(model=str(tiny_llava)))) as http:
        answer = http.post("/v1/chat/completions", json=_chat(_data_url(_png(9))))
        assert answer.status_code == 200, answer.text
        assert answer.json()["usage"]["prompt_tokens"] >= 5  # the image's five tokens count
        streamed = http.post("/v1/chat/completions", json=_chat(_data_url(_png(9)),
                                                                 stream=True))
        text = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                       for line in streamed.text.splitlines() if line.startswith("data: {"))
        assert text == answer.json()["choices"][0]["message"]["content"]


def test_pickled_weights_are_refused(tiny_llava: Path, tmp_path: Path) -> None:
    import shutil

    from zero2one.errors import ModelRefError
    from zero2one.refs import load

    copy = tmp_path / "pickled"
    shutil.copytree(tiny_llava, copy)
    (copy / "model.safetensors").rename(copy / "pytorch_model.bin")
    with pytest.raises(ModelRefError, match="no .safetensors weights"):
        load(str(copy))


def test_generate_with_an_image(tiny_llava: Path, tiny_lm: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from zero2one.cli.main import app

    picture = tmp_path / "seven.png"
    picture.write_bytes(_png(7))
    runner = CliRunner()
    said = runner.invoke(app, ["generate", str(tiny_llava), "--image", str(picture), "-p",
                               DIGIT_QUESTION, "--max-new-tokens", "3", "--json"])
    assert said.exit_code == 0, said.output
    answer = json.loads(said.stdout)
    assert answer["image"] == str(picture) and isinstance(answer["text"], str)
    text_only = runner.invoke(app, ["generate", str(tiny_lm), "--image", str(picture), "-p",
                                    "hi"])
    assert text_only.exit_code != 0
    assert "text-generation model, which reads text only" in str(text_only.exception)
    stopped = runner.invoke(app, ["generate", str(tiny_llava), "--image", str(picture), "-p",
                                  "hi", "--temperature", "0.9", "--seed", "3", "--stop", "x"])
    assert stopped.exit_code == 0, stopped.output
    unsupported = runner.invoke(app, ["generate", str(tiny_llava), "--image", str(picture),
                                      "-p", "hi", "--top-k", "5", "--chat"])
    assert "not --top-k, --chat" in str(unsupported.exception)
    missing = runner.invoke(app, ["generate", str(tiny_llava), "--image",
                                  str(tmp_path / "gone.png"), "-p", "hi"])
    assert missing.exit_code != 0 and "cannot read image" in str(missing.exception)


@pytest.fixture
def image_site() -> Any:
    """A web server on 127.0.0.1: /seven.png, /big.png (over the limit), /moved (a redirect)
    and /gone (404); stopped after the test."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    pages = {"/seven.png": _png(7), "/big.png": _png(7) + b"\0" * 9000}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/moved":
                self.send_response(302)
                self.send_header("Location", "/seven.png")
                self.end_headers()
                return
            body = pages.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_image_urls_are_fetched_only_when_allowed(vlm: Any, image_site: str) -> None:
    from fastapi.testclient import TestClient

    from zero2one.serving import ServeSettings, create_app

    settings = ServeSettings(model=str(vlm.directory), max_image_bytes=4096,
                             allow_image_urls=True)
    with TestClient(create_app(settings)) as http:
        fetched = http.post("/v1/chat/completions", json=_chat(f"{image_site}/seven.png"))
        inline = http.post("/v1/chat/completions", json=_chat(_data_url(_png(7))))
        assert fetched.status_code == 200, fetched.text
        assert fetched.json()["choices"][0]["message"] == inline.json()["choices"][0]["message"]
        for path, message in [("/big.png", "over 4096"), ("/moved", "answered 302"),
                              ("/gone", "answered 404")]:
            refused = http.post("/v1/chat/completions", json=_chat(f"{image_site}{path}"))
            assert refused.status_code == 400, refused.text
            assert message in refused.json()["error"]["message"]
        unreachable = http.post("/v1/chat/completions",
                                json=_chat("http://127.0.0.1:9/none.png"))
        assert "cannot fetch the image" in unreachable.json()["error"]["message"]


def test_resume_ends_where_an_uninterrupted_run_ends(workspace: Path, tiny_lm: Path) -> None:
    from safetensors.torch import load_file

    from zero2one.api import train
    from zero2one.refs import load

    from ..conftest import fit_until_interrupted

    # the encoder as `zero2one train` leaves it: its report is in its manifest too
    vision = train({"task": "image-classification", "name": "cnn", "seed": 0,
                    "data": {"source": "sklearn:digits"}, "model": {"arch": "seed-cnn"},
                    "train": {"epochs": 1}, "track": {"enabled": False}},
                   out=workspace / "cnn").model_dir
    assert (vision / "report").is_dir()
    cfg = {"task": "vision-language", "name": "vlm-resume", "seed": 0,
           "data": {"source": "sklearn:digits"},
           "model": {"vision": str(vision), "lm": str(tiny_lm)},
           "train": {"steps": 6, "batch_size": 4, "checkpoint_every": 2, "log_every": 1},
           "eval": {"max_new_tokens": 1}, "track": {"enabled": False}}
    full = train(cfg, out=workspace / "full").model_dir
    task = fit_until_interrupted(cfg, 5)
    assert (task.checkpoint_dir() / "last.pt").exists()
    train(cfg, out=workspace / "resumed", resume=True)
    resumed = json.loads((workspace / "resumed" / "manifest.json").read_text())
    assert resumed["training"]["resumed_from"] == 4  # the last checkpoint
    a, b = (load_file(str(d / "projector.safetensors")) for d in (full, workspace / "resumed"))
    assert all(a[k].equal(b[k]) for k in a)  # the same weights, bit for bit
    assert load(workspace / "resumed").predict({"image": _png(3), "question": DIGIT_QUESTION},
                                               max_new_tokens=1) is not None
    assert not task.checkpoint_dir().exists()


@pytest.mark.slow(seconds=200)
def test_a_trained_model_names_held_out_digits_to_the_openai_client(workspace: Path) -> None:
    """The recipe's model, trained for real (the built-in SmolLM2, a short run: about two
    minutes on 2 cores), answers the official client's streamed requests with image parts."""
    import openai
    from fastapi.testclient import TestClient

    from zero2one.api import train
    from zero2one.refs import load
    from zero2one.serving import ServeSettings, create_app

    vision = train(REPO / "recipes/digits-cnn.yaml", overrides=[
        "train.epochs=6", "track.enabled=false", "register=null"], out=workspace / "cnn")
    done = train(REPO / "recipes/digits-vlm.yaml", overrides=[
        f"model.vision={vision.model_dir}", "train.steps=60", "train.lr=0.002",
        "track.enabled=false", "register=null"], out=workspace / "vlm")
    assert done.metrics["accuracy"] >= 0.9 and done.metrics["baseline_accuracy"] <= 0.2
    model = load(done.model_dir)
    data = model.load_data()
    held_out, images = data.splits["test"][:5], data.images
    with TestClient(create_app(ServeSettings(model=str(done.model_dir)))) as http:
        client = openai.OpenAI(base_url="http://testserver/v1", api_key="unused",
                               http_client=http, max_retries=0)
        right = 0
        for question in held_out:
            buffer = io.BytesIO()
            images[question.image].save(buffer, format="PNG")
            chunks = list(client.chat.completions.create(
                model="digits-vlm", temperature=0, max_tokens=4, stream=True,
                messages=[{"role": "user", "content": [
                    {"type": "text", "text": DIGIT_QUESTION},
                    {"type": "image_url", "image_url": {"url": _data_url(buffer.getvalue())}}]}]))
            said = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert said == model.predict({"image": images[question.image],
                                          "question": DIGIT_QUESTION})
            right += said.strip() == question.answer
    assert right >= 4, f"{right} of 5 held-out digits named"


def test_predict_a_file_of_questions(vlm: Any, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from zero2one.cli.main import app

    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "a.png").write_bytes(_png(3))
    (tmp_path / "qa.csv").write_text(f"image,question\npics/a.png,{DIGIT_QUESTION}\n"
                                     f"pics/a.png,{DIGIT_QUESTION}\n")
    runner = CliRunner()
    done = runner.invoke(app, ["predict", str(vlm.directory), "--input",
                               str(tmp_path / "qa.csv"), "--max-new-tokens", "2"])
    assert done.exit_code == 0, done.output
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "image,question,answer" and len(lines) == 3
    (tmp_path / "bad.csv").write_text("picture,question\na.png,hi\n")
    bad = runner.invoke(app, ["predict", str(vlm.directory), "--input",
                              str(tmp_path / "bad.csv")])
    assert bad.exit_code != 0 and "no image column" in str(bad.exception)


def test_lora_on_the_language_model_is_saved_and_merged_on_load(workspace: Path,
                                                               tiny_vision: Path,
                                                               tiny_lm: Path) -> None:
    from safetensors.torch import load_file

    from zero2one.api import train
    from zero2one.refs import load

    cfg = {"task": "vision-language", "name": "vlm-lora", "seed": 0,
           "data": {"source": "sklearn:digits"},
           "model": {"vision": str(tiny_vision), "lm": str(tiny_lm),
                     "lora": {"r": 4, "target_modules": ["q_proj", "v_proj"]}},
           "train": {"steps": 3, "batch_size": 4, "lr": 0.05},
           "eval": {"max_new_tokens": 2}, "track": {"enabled": False}}
    done = train(cfg, out=workspace / "lora")
    adapters = load_file(str(done.model_dir / "lora.safetensors"))
    assert adapters and all("lora_" in k for k in adapters)
    assert any(v.abs().sum() > 0 for k, v in adapters.items() if "lora_B" in k)  # trained
    loaded = load(done.model_dir)
    assert isinstance(loaded.predict({"image": _png(3), "question": DIGIT_QUESTION}), str)
    # the adapters merged on load are the trained ones: the same held-out answers
    assert loaded.evaluate(loaded.load_data()) == done.metrics
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny_lm))
    merged = loaded.model_.lm.model.layers[0].self_attn.q_proj.weight
    assert not merged.equal(base.model.layers[0].self_attn.q_proj.weight)  # merged in
    cfg["model"]["lora"]["target_modules"] = ["no_such_layer"]
    from zero2one.errors import UserError

    with pytest.raises(UserError, match="model.lora.target_modules"):
        train(cfg, out=workspace / "bad")


def test_a_hub_id_is_a_vision_language_model_by_its_config(tiny_llava: Path, tiny_lm: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """hf:ORG/NAME: the config.json alone decides which task loads it (fetched here from a
    stand-in for the hub: no network on this machine)."""
    import huggingface_hub

    from zero2one.refs import resolve
    from zero2one.tasks.textgen import pretrained

    configs = {"org/vlm": tiny_llava / "config.json", "org/lm": tiny_lm / "config.json"}
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setattr(pretrained, "hub_config", lambda repo: json.loads(
        configs[repo].read_text()) if repo in configs else None)
    assert resolve("hf:org/vlm").task == "vision-language"
    assert resolve("hf:org/lm").task == "text-generation"
    assert resolve("hf:org/unknown").task == "text-generation"  # its load will say why
    assert resolve("hf:org/name.").task == "text-generation"  # a name the hub refuses


def test_the_hub_config_is_read_from_the_endpoint(tiny_llava: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """One request to HF_ENDPOINT (a local server here), given up after its time-out however
    the hub hangs; HF_HUB_OFFLINE asks nothing."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from zero2one.tasks.textgen.pretrained import hub_config

    asked: list[str] = []
    body = (tiny_llava / "config.json").read_bytes()
    release = threading.Event()

    class Hub(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            if self.path.startswith("/org/hanging/"):  # answers only once the test is done
                release.wait(30)
            found = self.path.startswith(("/org/vlm/", "/org/hanging/"))
            self.send_response(200 if found else 404)
            self.end_headers()
            self.wfile.write(body if found else b"")

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        assert hub_config("org/vlm")["vision_config"]["patch_size"] == 8
        assert hub_config("org/missing") is None and len(asked) == 2  # one try each
        assert hub_config("org/hanging", timeout=0.2) is None and len(asked) == 3
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        assert hub_config("org/vlm") is None and len(asked) == 3
    finally:
        release.set()
        server.shutdown()
