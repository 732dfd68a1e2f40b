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

    settings = ServeSettings(model=str(vlm.directory), max_image_bytes=4096)
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
    (_chat("https://example.com/seven.png"), "does not fetch image URLs"),
    (_chat(_data_url(b"not an image")), "not an image, or a corrupt one"),
    (_chat(_data_url(_png(size=64, mode="RGB") + b"\0" * 5000)), "over 4096 bytes"),
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
