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

from .conftest import ENGINES, client_of, served_lm

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


@pytest.fixture(params=ENGINES)
def lm_client(long_lm: Path, monkeypatch: pytest.MonkeyPatch,
              request: pytest.FixtureRequest) -> Iterator[Any]:
    with served_lm(long_lm, request.param, monkeypatch) as client:
        yield client


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
    assert "<tool_call>" not in final.choices[0].message.content  # no call written as text
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
            assert message.content and "<tool_call>" not in message.content


def test_a_call_cut_by_the_budget_is_left_out() -> None:
    """Arguments always parse: a call the budget cut is not handed out (the answer ends with
    finish_reason length); the calls finished before it are."""
    from zero2one.tasks.textgen.tools import calls

    whole = '<tool_call>{"name": "add", "arguments": {"a": 2, "b": 3}}</tool_call>'
    assert calls("plain text") is None
    (one,) = calls(whole)  # type: ignore[misc]
    assert one["function"] == {"name": "add", "arguments": '{"a": 2, "b": 3}'}
    cut = calls(whole + '<tool_call>{"name": "search", "arguments": {"query": "ser')
    assert [c["function"]["name"] for c in cut or []] == ["add"]
    assert calls('<tool_call>{"name": "add", "argu') == []  # a call, none finished: no text
    assert calls("<tool_") == []  # cut inside the tag


def test_a_budget_that_cuts_a_call_ends_with_length(lm_client: Any) -> None:
    reply = client_of(lm_client).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "find serving"}], tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "search"}}, max_tokens=6,
        temperature=0)
    choice = reply.choices[0]
    assert choice.finish_reason == "length" and choice.message.content is None
    assert all(c.function.name == "search" for c in choice.message.tool_calls or [])


def test_text_never_writes_a_call_or_a_result_tag(long_lm: Path) -> None:
    """Under "auto" and "none", text is free but for the tags: a model that saw calls and
    results earlier in the conversation would write them as text (SmolLM2 did)."""
    from transformers import AutoTokenizer

    from zero2one.tasks.textgen import tools
    from zero2one.tasks.textgen.constrained import Matcher

    tokenizer = AutoTokenizer.from_pretrained(long_lm)
    declared = [tools.Tool.model_validate(t) for t in TOOLS]
    for mode in ("none", "auto"):
        grammar = tools.grammar(tools.plan(declared, mode, None))
        assert grammar is not None
        for text, allowed in [("plain <b> text", True), ("so <tool_call>{}", False),
                              ("<tool_response>5", False), ("ok</tool_response>", True)]:
            matcher = Matcher(tokenizer, grammar, vocab=len(tokenizer))
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            assert all(matcher.matcher.consume_token(i) for i in ids) == allowed, (mode, text)
    assert tools.grammar(tools.plan([], "none", None)) is None  # no tools: free text


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


# a Qwen 2.5-style template (shortened): the tools, earlier calls and results in its own format
HERMES = """{%- if tools %}<|im_start|>system
{{ messages[0].content if messages[0].role == 'system' else 'You help.' }}

# Tools

<tools>
{%- for tool in tools %}
{{ tool | tojson }}
{%- endfor %}
</tools><|im_end|>
{% elif messages[0].role == 'system' %}<|im_start|>system
{{ messages[0].content }}<|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == 'user' or (message.role == 'assistant' and not message.tool_calls) %}\
<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% elif message.role == 'assistant' %}<|im_start|>assistant
{%- for call in message.tool_calls %}
<tool_call>
{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}
</tool_call>
{%- endfor %}<|im_end|>
{% elif message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""
HISTORY = [{"role": "user", "content": "What is 2 + 3?"},
           {"role": "assistant", "content": None, "tool_calls": [
               {"id": "call_1", "type": "function",
                "function": {"name": "add", "arguments": "{\"a\": 2, \"b\": 3}"}}]},
           {"role": "tool", "tool_call_id": "call_1", "content": "5"}]


@pytest.fixture(scope="module")
def hermes_lm(long_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hermes-lm")
    for path in long_lm.iterdir():
        shutil.copy2(path, out / path.name)
    config = json.loads((out / "tokenizer_config.json").read_text())
    (out / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": HERMES}))
    (out / "chat_template.jinja").unlink(missing_ok=True)
    return out


def test_a_template_with_a_tool_format_renders_the_tools_itself(hermes_lm: Path,
                                                                long_lm: Path) -> None:
    from transformers import AutoTokenizer

    from zero2one.tasks.textgen import tools

    plan = tools.plan([tools.Tool.model_validate(t) for t in TOOLS], "auto", None)
    tokenizer = AutoTokenizer.from_pretrained(hermes_lm)
    made, described = tools.messages(HISTORY, plan, tokenizer.chat_template)
    prompt = tokenizer.apply_chat_template(made, tools=described, add_generation_prompt=True,
                                           tokenize=False)
    listed = prompt.split("<tools>")[1].split("</tools>")[0]
    assert '"name": "add"' in listed and '"name": "search"' in listed
    assert '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>' in prompt
    assert "<tool_response>\n5\n</tool_response>" in prompt
    assert "You can call functions" not in prompt
    # a template without a tool format: zero2one's default description, plain turns
    plain = AutoTokenizer.from_pretrained(long_lm).chat_template
    made, described = tools.messages(HISTORY, plan, plain)
    assert described is None and made[0]["role"] == "system"
    assert "You can call functions" in made[0]["content"]
    assert made[-1] == {"role": "user", "content": "<tool_response>\n5\n</tool_response>"}


@pytest.mark.parametrize("engine", ENGINES)
def test_a_round_trip_through_the_models_own_tool_format(
        hermes_lm: Path, engine: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with served_lm(hermes_lm, engine, monkeypatch) as http:
        client = client_of(http)
        reply = client.chat.completions.create(
            model="m", messages=HISTORY[:1], tools=TOOLS, tool_choice="required",
            parallel_tool_calls=False, max_tokens=200, temperature=0.7, seed=0)
        (call,) = reply.choices[0].message.tool_calls
        valid(call)
        final = client.chat.completions.create(
            model="m", messages=HISTORY, tools=TOOLS, max_tokens=8, temperature=0,
            tool_choice="none")
        assert not final.choices[0].message.tool_calls and final.usage.completion_tokens > 0
        assert final.choices[0].finish_reason in ("stop", "length")


def test_generate_tools_from_the_cli(long_lm: Path, hermes_lm: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    from zero2one.cli.main import main

    listed = tmp_path / "tools.json"
    listed.write_text(json.dumps({"tools": TOOLS}))
    for model in (long_lm, hermes_lm):  # zero2one's tool format, and the template's own
        with pytest.raises(SystemExit) as exc:
            main(["generate", str(model), "-p", "What is 2 + 3?", "--tools", str(listed),
                  "--tool-choice", "add", "--max-new-tokens", "200", "--seed", "3"])
        assert exc.value.code in (0, None)
        calls = json.loads(capsys.readouterr().out)
        assert calls and all(c["function"]["name"] == "add" and valid(_Call(c)) is not None
                             for c in calls)
    with pytest.raises(SystemExit) as exc:
        main(["generate", str(long_lm), "-p", "hi", "--tools", str(listed), "--json",
              "--tool-choice", "none", "--max-new-tokens", "4"])
    out = json.loads(capsys.readouterr().out)
    assert out["tool_calls"] is None and out["text"] is not None
    for written, message in [
            ("{not json", "not JSON"), (json.dumps([{"type": "function"}]), "0.function"),
            (json.dumps(TOOLS), "--tool-choice: no tool named 'nope'")]:
        listed.write_text(written)
        with pytest.raises(SystemExit) as exc:
            main(["generate", str(long_lm), "-p", "hi", "--tools", str(listed),
                  "--tool-choice", "nope"])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and message in err and err.count("\n") == 1, err


class _Call:
    """A call from the CLI's JSON, read as the openai client's objects are."""

    def __init__(self, call: dict[str, Any]) -> None:
        from types import SimpleNamespace

        self.id, self.type = call["id"], call["type"]
        self.function = SimpleNamespace(**call["function"])
