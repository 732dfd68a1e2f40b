"""Tool calling through the official openai client, on both engines: calls whose arguments
always validate (the tiny model's weights are random: only the grammar makes them valid), the
round trip with tool results, streaming, and the bad requests."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from .conftest import ENGINES

ADD = {"type": "object", "additionalProperties": False, "required": ["a", "b"],
       "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 99},
                      "b": {"type": "integer", "minimum": 0, "maximum": 99}}}
SEARCH = {"type": "object", "additionalProperties": False, "required": ["query"],
          "properties": {"query": {"type": "string", "maxLength": 12}}}
TOOLS = [{"type": "function", "function": {"name": "add", "description": "a + b",
                                           "parameters": ADD}},
         {"type": "function", "function": {"name": "search", "description": "search the docs",
                                           "parameters": SEARCH}}]
SCHEMAS = {"add": ADD, "search": SEARCH}


@pytest.fixture(scope="module")
def long_lm(tiny_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama with a 2,048-token window (rotary positions: the same weights): its
    300-token vocabulary spells the tools' descriptions out in about 600 tokens."""
    out = tmp_path_factory.mktemp("long-lm")
    for path in tiny_lm.iterdir():
        shutil.copy2(path, out / path.name)
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 2048}))
    return out


@pytest.fixture(params=ENGINES)
def lm_client(long_lm: Path, monkeypatch: pytest.MonkeyPatch,
              request: pytest.FixtureRequest) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from zero2one.serving import ServeSettings, create_app

    monkeypatch.delenv("ZERO2ONE_API_KEY", raising=False)
    settings = ServeSettings(model=str(long_lm), engine=request.param)  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as client:
        yield client


def client_of(lm_client: Any) -> Any:
    import openai

    return openai.OpenAI(base_url="http://testserver/v1", api_key="unused",
                         http_client=lm_client, max_retries=0)


def valid(call: Any) -> dict[str, Any]:
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, SCHEMAS[call.function.name])
    assert call.id.startswith("call_") and call.type == "function"
    return arguments


def test_a_tool_round_trip(lm_client: Any) -> None:
    client = client_of(lm_client)
    question = [{"role": "user", "content": "What is 2 + 3?"}]
    reply = client.chat.completions.create(
        model="m", messages=question, tools=TOOLS, tool_choice="required",
        parallel_tool_calls=False, max_tokens=200, temperature=0.7, seed=0)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls", choice.message
    (call,) = choice.message.tool_calls
    valid(call)
    assert choice.message.content is None
    answered = [*question, choice.message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": "5"}]
    final = client.chat.completions.create(model="m", messages=answered, tools=TOOLS,
                                           tool_choice="none", max_tokens=8, temperature=0)
    assert final.choices[0].message.content and not final.choices[0].message.tool_calls
    assert final.choices[0].finish_reason in ("stop", "length")


def test_a_named_function_streams_its_call(lm_client: Any) -> None:
    chunks = list(client_of(lm_client).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "find serving"}], tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "search"}},
        parallel_tool_calls=False, max_tokens=200, temperature=0.7, seed=1, stream=True,
        stream_options={"include_usage": True}))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert deltas[0].role == "assistant"
    calls = [call for d in deltas for call in (d.tool_calls or [])]
    assert len(calls) == 1 and calls[0].index == 0 and calls[0].function.name == "search"
    valid(calls[0])
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage.completion_tokens > 0


def test_auto_answers_text_or_valid_calls(lm_client: Any) -> None:
    client = client_of(lm_client)
    for seed in range(3):
        reply = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], tools=TOOLS,
            max_tokens=200, temperature=0.7, seed=seed)
        message = reply.choices[0].message
        if message.tool_calls:
            assert all(valid(call) is not None for call in message.tool_calls)
        else:
            assert message.content and not message.content.startswith("<")


@pytest.mark.parametrize(("body", "message"), [
    ({"tools": [{"type": "function", "function": {"name": "f",
                                                  "parameters": {"type": "strin"}}}]},
     "tools.0.function.parameters: not a valid JSON Schema"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice: no tool named 'nope' (tools: add, search)"),
    ({"tools": [TOOLS[0], TOOLS[0]]}, "tools.1.function.name: 'add' is declared twice"),
    ({"tools": TOOLS, "tool_choice": "sometimes"}, "tool_choice: \"none\", \"auto\""),
    ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools.0.function.name"),
    ({"messages": [{"role": "user", "content": "hi"},
                   {"role": "tool", "tool_call_id": "call_x", "content": "5"}]},
     "tool_call_id 'call_x' matches no earlier call"),
])
def test_bad_tool_requests_are_400(lm_client: Any, body: dict[str, Any], message: str) -> None:
    request = {"messages": [{"role": "user", "content": "hi"}], **body}
    answer = lm_client.post("/v1/chat/completions", json=request)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert message in error["message"] and error["type"] == "invalid_request_error"
    assert lm_client.post("/v1/completions", json={"prompt": "hi", "tools": TOOLS}
                          ).status_code == 400


def test_a_served_gguf_is_cached_per_configuration_too(tiny_lm: Path, long_lm: Path) -> None:
    """The same weights with another window are another GGUF file (its context length is in
    the file): the cache key covers the configuration, not the weights alone."""
    from zero2one.api import load
    from zero2one.tasks.textgen.llamaserver import _content_key

    assert _content_key(load(str(tiny_lm))) != _content_key(load(str(long_lm)))
    copy = long_lm.parent / "long-lm-copy"
    shutil.copytree(long_lm, copy, dirs_exist_ok=True)
    assert _content_key(load(str(copy))) == _content_key(load(str(long_lm)))  # not the path
