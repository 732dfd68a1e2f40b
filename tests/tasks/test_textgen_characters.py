"""Characters are never cut: a token limit that ends inside a multi-byte character emits none
of its bytes (server plain and streamed, the CLI), and the finish reason and token count are
what the decoder did, not a guess from the text."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from zero2one.cli.main import main
from zero2one.serving import ServeSettings, create_app
from zero2one.tasks.textgen import batch
from zero2one.tasks.textgen.batch import stream
from zero2one.tasks.textgen.generate import Outcome, StopScanner, sampling

# Chinese (3 bytes a character), an emoji (4 bytes), a combining accent (e + U+0301)
ANSWER = "法国的首都🙂 café"


@pytest.fixture
def scripted(tiny_lm: Path, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The tiny model answers ANSWER's tokens then its end token, whatever it is asked: its
    byte-level tokenizer spells the Chinese and the emoji one byte a token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    ids = tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == ANSWER and len(ids) > len(ANSWER)  # multi-byte tokens

    def pick(logits: Any, row: Any, history: Any) -> int:
        done = len(row.generated)
        return ids[done] if done < len(ids) else tokenizer.eos_token_id

    monkeypatch.setattr(batch, "_pick", pick)
    return ids


def expected(tiny_lm: Path, ids: list[int], limit: int) -> str:
    """What the first ``limit`` tokens spell, whole characters only."""
    from transformers import AutoTokenizer

    text = AutoTokenizer.from_pretrained(tiny_lm).decode(ids[:limit])
    return text.rstrip("\ufffd")


def test_the_library_stream_never_emits_half_a_character(tiny_lm: Path,
                                                         scripted: list[int]) -> None:
    from zero2one.tasks.textgen.models import load_lm

    model, tokenizer = load_lm(str(tiny_lm))
    for limit in range(1, len(scripted) + 2):
        outcome = Outcome()
        pieces = list(stream(model, tokenizer, "hi", outcome=outcome,
                             settings=sampling(max_new_tokens=limit, temperature=0)))
        text = "".join(pieces)
        assert "\ufffd" not in text and ANSWER.startswith(text), (limit, pieces)
        if limit <= len(scripted):
            assert text == expected(tiny_lm, scripted, limit)
            assert (outcome.finish_reason, outcome.completion_tokens) == ("length", limit)
        else:  # the end token came first
            assert text == ANSWER
            assert (outcome.finish_reason, outcome.completion_tokens) == ("stop", len(scripted))


def test_the_server_answers_whole_characters_and_exact_usage(tiny_lm: Path, scripted: list[int],
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    monkeypatch.delenv("ZERO2ONE_API_KEY", raising=False)
    # zero2one's engine, whose sampler is scripted (llama.cpp's: tests/tasks/test_llamacpp.py)
    app = create_app(ServeSettings(model=str(tiny_lm), engine="zero2one"))  # type: ignore[call-arg]
    with TestClient(app) as client:
        for limit in (1, 2, 3, 4, 5, 6, len(scripted) - 1, len(scripted), len(scripted) + 1):
            body = {"messages": [{"role": "user", "content": "法国的首都是哪里?请用中文回答"}],
                    "max_tokens": limit, "temperature": 0}
            plain = client.post("/v1/chat/completions", json=body).json()
            choice, usage = plain["choices"][0], plain["usage"]
            text = choice["message"]["content"]
            finish = "length" if limit <= len(scripted) else "stop"
            tokens = min(limit, len(scripted))
            assert text == (expected(tiny_lm, scripted, limit) if finish == "length"
                            else ANSWER), limit
            assert (choice["finish_reason"], usage["completion_tokens"]) == (finish, tokens)
            streamed = list(_events(client, {**body, "stream": True,
                                             "stream_options": {"include_usage": True}}))
            deltas = [e["choices"][0]["delta"].get("content", "") for e in streamed
                      if e["choices"]]
            assert all("\ufffd" not in d for d in deltas), deltas
            assert "".join(deltas) == text
            assert [e["choices"][0]["finish_reason"] for e in streamed
                    if e["choices"]][-1] == finish
            assert streamed[-1]["usage"]["completion_tokens"] == tokens
        # /v1/completions too
        done = client.post("/v1/completions", json={"prompt": "x", "max_tokens": 4,
                                                     "temperature": 0}).json()
        assert done["choices"][0]["text"] == expected(tiny_lm, scripted, 4)
        assert done["usage"]["completion_tokens"] == 4


def _events(client: TestClient, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    with client.stream("POST", "/v1/chat/completions", json=body) as answer:
        for line in answer.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                yield json.loads(line[6:])


def test_the_cli_json_reports_whole_characters_and_the_finish(
        tiny_lm: Path, scripted: list[int], capsys: pytest.CaptureFixture[str]) -> None:
    for limit, finish in ((2, "length"), (len(scripted) + 3, "stop")):
        with pytest.raises(SystemExit) as exc:
            main(["generate", str(tiny_lm), "-p", "hi", "--temperature", "0",
                  "--max-new-tokens", str(limit), "--json"])
        assert exc.value.code == 0
        result = json.loads(capsys.readouterr().out)
        assert "\ufffd" not in result["text"] and result["finish_reason"] == finish
        assert result["tokens"] == min(limit, len(scripted))


@pytest.mark.parametrize(("pieces", "stops", "out"), [
    (["ab", "c<", "/s", ">tail"], ["</s>"], "abc"),
    (["<", "x"], ["</s>"], "<x"),  # a held-back prefix that did not become a stop
    (["法国", "的。", "首都"], ["。"], "法国的"),
    (["one", " two"], ["two", "one two"], ""),  # the earliest stop wins
])
def test_stop_scanner(pieces: list[str], stops: list[str], out: str) -> None:
    scanner = StopScanner(stops)
    text = "".join(scanner.feed(p) for p in pieces) + scanner.finish()
    assert text == out


def test_the_decoding_loop_cuts_at_the_earliest_stop_string_whatever_their_order() -> None:
    """Two stop strings completed by one step: the text ends before the earlier one, as the
    llama.cpp engine's StopScanner ends it (the loop once took the first in the list)."""
    decoded = {1: "ab", 2: "abXcY"}

    class Tokens:
        def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
            return decoded[len(ids)]

    pieces: list[str] = []
    row = batch.Row([0], sampling(stop=["Y", "X"], max_new_tokens=8), emit=pieces.append)
    for token in (1, 2):
        row.generated.append(token)
        batch._advance_text(row, Tokens())
    batch._flush(row, Tokens())
    assert "".join(pieces) == "ab" == row.text
    assert (row.finish, row.cut) == ("stop", True)
