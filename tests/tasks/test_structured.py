"""Structured outputs: ``response_format`` answers that always parse and validate, on both
engines, through the official openai client; bad schemas refused before any work."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import jsonschema
import pytest
from pydantic import BaseModel, Field

from zero2one.errors import UserError
from zero2one.tasks.textgen.batch import stream
from zero2one.tasks.textgen.generate import Outcome, sampling
from zero2one.tasks.textgen.models import load_lm

from .conftest import client_of

SCHEMA = {"type": "object", "additionalProperties": False,
          "required": ["digit", "colour", "ok"],
          "properties": {"digit": {"type": "integer", "minimum": 0, "maximum": 9},
                         "colour": {"enum": ["red", "green", "blue"]},
                         "ok": {"type": "boolean"},
                         "tags": {"type": "array", "items": {"type": "string", "maxLength": 4},
                                  "minItems": 1, "maxItems": 2}}}


class Answer(BaseModel):
    digit: int = Field(ge=0, le=9)
    colour: Literal["red", "green", "blue"]
    word: str = Field(max_length=5)


def test_a_random_model_answers_valid_json_under_a_schema(tiny_lm: Path) -> None:
    """The tiny model's weights are random: only the constraint makes its answers valid."""
    lm, tokenizer = load_lm(str(tiny_lm))
    free = "".join(stream(lm, tokenizer, "hello", settings=sampling(
        max_new_tokens=40, temperature=0.7, seed=0)))
    with pytest.raises(json.JSONDecodeError):
        json.loads(free)
    for seed in range(4):
        outcome = Outcome()
        text = "".join(stream(lm, tokenizer, "hello", outcome=outcome, settings=sampling(
            max_new_tokens=120, temperature=0.7, seed=seed, json_schema=SCHEMA)))
        jsonschema.validate(json.loads(text), SCHEMA)
        assert outcome.finish_reason == "stop", text


def test_bad_schemas_are_one_line_errors() -> None:
    with pytest.raises(UserError, match=r"^json_schema: not a valid JSON Schema at "
                                        r"properties/x/type: .*'strin'"):
        sampling(json_schema={"type": "object", "properties": {"x": {"type": "strin"}}})
    with pytest.raises(UserError, match=r"^json_schema: this schema cannot be enforced: "
                                        r".*Unknown format: postcode"):
        sampling(json_schema={"type": "string", "format": "postcode"})
    with pytest.raises(UserError, match="json_schema: Input should be a valid dictionary"):
        sampling(json_schema=["not", "a", "schema"])  # type: ignore[arg-type]


def test_openai_parse_with_a_pydantic_model(lm_client: Any) -> None:
    client = client_of(lm_client)
    for seed in (1, 2):
        reply = client.chat.completions.parse(
            model="m", messages=[{"role": "user", "content": "a digit and a colour"}],
            response_format=Answer, max_tokens=60, temperature=0.7, seed=seed)
        choice = reply.choices[0]
        assert choice.finish_reason == "stop", choice.message.content
        assert isinstance(choice.message.parsed, Answer)
        assert 0 <= choice.message.parsed.digit <= 9


def test_json_answers_stream_and_json_object_mode(lm_client: Any) -> None:
    client = client_of(lm_client)
    chunks = list(client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=120, seed=3,
        temperature=0.7, stream=True, response_format={
            "type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    jsonschema.validate(json.loads(text), SCHEMA)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    completion = client.completions.create(
        model="m", prompt="zero2one", max_tokens=120, temperature=0.7, seed=4,
        extra_body={"response_format": {"type": "json_schema",
                                         "json_schema": {"name": "a", "schema": SCHEMA}}})
    jsonschema.validate(json.loads(completion.choices[0].text), SCHEMA)
    anything = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=200, seed=0,
        temperature=0, response_format={"type": "json_object"})
    if anything.choices[0].finish_reason == "stop":  # an object a random model may not close
        assert isinstance(json.loads(anything.choices[0].message.content), dict)
    else:
        assert anything.choices[0].message.content.startswith("{")


def test_a_budget_too_small_ends_with_length_never_as_complete(lm_client: Any) -> None:
    reply = client_of(lm_client).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=3, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "a",
                                                                "schema": SCHEMA}})
    assert reply.choices[0].finish_reason == "length"
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.choices[0].message.content)


@pytest.mark.parametrize(("response_format", "message"), [
    ({"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "strin"}}},
     "response_format.json_schema.schema: not a valid JSON Schema"),
    ({"type": "json_schema", "json_schema": {"name": "a", "schema": {
        "type": "string", "format": "postcode"}}},
     "response_format.json_schema.schema: this schema cannot be enforced: Unknown format"),
    ({"type": "json_schema", "json_schema": {"name": "a"}},
     "response_format.json_schema.schema: required"),
    ({"type": "xml"}, "response_format.type"),
])
def test_bad_response_formats_are_400(lm_client: Any, response_format: dict[str, Any],
                                      message: str) -> None:
    answer = lm_client.post("/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "hi"}], "response_format": response_format})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert message in error["message"] and error["type"] == "invalid_request_error"


def test_generate_json_schema_from_the_cli(tiny_lm: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from zero2one.cli.main import main

    schema = tmp_path / "answer.json"
    schema.write_text(json.dumps(SCHEMA))
    with pytest.raises(SystemExit) as exc:
        main(["generate", str(tiny_lm), "-p", "hi", "--json-schema", str(schema),
              "--max-new-tokens", "120", "--seed", "5", "--json"])
    assert exc.value.code in (0, None)
    out = json.loads(capsys.readouterr().out)
    jsonschema.validate(json.loads(out["text"]), SCHEMA)
    schema.write_text("{not json")
    with pytest.raises(SystemExit) as exc:
        main(["generate", str(tiny_lm), "-p", "hi", "--json-schema", str(schema)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"--json-schema {schema}: not JSON" in err
    with pytest.raises(SystemExit) as exc:
        main(["generate", str(tiny_lm), "-p", "hi", "--json-schema", str(tmp_path / "no")])
    assert exc.value.code == 2 and "no such file" in capsys.readouterr().err


def test_python_generate_returns_the_parsed_answer(tiny_lm: Path) -> None:
    from zero2one.api import load

    model = load(str(tiny_lm))
    parsed = model.generate("a digit", response_format=Answer, max_new_tokens=60,
                            temperature=0.7, seed=0)
    assert isinstance(parsed, Answer) and 0 <= parsed.digit <= 9
    as_dict = model.generate("hi", response_format=SCHEMA, max_new_tokens=120, seed=1)
    jsonschema.validate(as_dict, SCHEMA)
    assert isinstance(model.generate("hi", max_new_tokens=4, temperature=0), str)
    with pytest.raises(UserError, match="did not finish within max_new_tokens=2; raise it"):
        model.generate("hi", response_format=Answer, max_new_tokens=2)
    with pytest.raises(UserError, match="response_format: a JSON schema .* got str"):
        model.generate("hi", response_format="json")


def test_masks_are_exact_on_any_cpu_and_need_no_compiler(tiny_lm: Path) -> None:
    """llguidance's torch helper is a torch.compile kernel: it needs a C compiler at run time
    and, under ATEN_CPU_CAPABILITY=avx2, allowed half the vocabulary. The masks are unpacked
    with numpy instead: exactly the tokens llguidance allows, on the AVX2 paths too."""
    import os
    import subprocess
    import sys

    script = f"""
import sys, numpy as np, torch
from transformers import AutoTokenizer
from zero2one.tasks.textgen import constrained
tokenizer = AutoTokenizer.from_pretrained({str(tiny_lm)!r})
vocab = len(tokenizer)
matcher = constrained.Matcher(tokenizer, constrained.lark({{"type": "object"}}), vocab=vocab)
logits = torch.zeros(vocab)
matcher.mask(logits)
bits = int(sum(bin(w & 0xFFFFFFFF).count("1") for w in matcher.bitmask.tolist()))
allowed = int(torch.isfinite(logits).sum())
assert 0 < allowed == bits < vocab // 10, (allowed, bits, vocab)
assert "llguidance.torch" not in sys.modules
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "ATEN_CPU_CAPABILITY": "avx2"}, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
