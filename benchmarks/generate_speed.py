"""Generation speed on the built-in SmolLM2-135M-Instruct: plain `model.generate` one request at
a time (the baseline), zero2one's streaming generator, and N concurrent streams through
`zero2one serve` (OpenAI-compatible route, 127.0.0.1), with the memory-bandwidth ceiling
(weight bytes ÷ measured copy bandwidth) for context.

    python benchmarks/generate_speed.py [--new-tokens 64] [--streams 8]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PROMPT = "Write a long paragraph about machine learning in Python."
MESSAGES = [{"role": "user", "content": PROMPT}]


def bandwidth_gbs() -> float:
    """Copy bandwidth of a 256 MiB buffer (read + write counted), best of 5."""
    import numpy as np

    a = np.ones(256 * 1024 * 1024 // 8)
    b = np.empty_like(a)
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        np.copyto(b, a)
        best = max(best, 2 * a.nbytes / (time.perf_counter() - start) / 1e9)
    return best


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_streams(streams: int, new_tokens: int, work: Path, precision: str | None = "bfloat16",
                   model: str = "builtin:smollm2-135m-instruct") -> tuple[float, int]:
    port = free_port()
    bin_dir = Path(sys.executable).parent
    process = subprocess.Popen(
        [str(bin_dir / "zero2one"), "serve", model, "--port", str(port),
         *(["--precision", precision] if precision else [])],
        env={**os.environ}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    body = json.dumps({"messages": MESSAGES, "max_tokens": new_tokens, "temperature": 0,
                       "stream": False}).encode()
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.5)
        tokens: list[int] = []

        def one() -> None:
            request = urllib.request.Request(url, data=body,
                                             headers={"content-type": "application/json"})
            with urllib.request.urlopen(request, timeout=600) as response:
                tokens.append(json.load(response)["usage"]["completion_tokens"])

        start = time.perf_counter()
        threads = [threading.Thread(target=one) for _ in range(streams)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - start, sum(tokens)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="z21-gen-bench-"))
    os.environ["ZERO2ONE_HOME"] = str(work / ".zero2one")

    import torch

    from zero2one.tasks.textgen.batch import stream
    from zero2one.tasks.textgen.generate import sampling
    from zero2one.tasks.textgen.models import load_lm

    model, tokenizer = load_lm("builtin:smollm2-135m-instruct")
    ids = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
    model.generate(**ids, max_new_tokens=4, do_sample=False)  # warm-up
    settings = sampling(max_new_tokens=args.new_tokens, temperature=0)

    def hf_one() -> float:
        start = time.perf_counter()
        out = model.generate(**ids, max_new_tokens=args.new_tokens, do_sample=False)
        return (out.shape[1] - ids["input_ids"].shape[1]) / (time.perf_counter() - start)

    def hf_batch() -> float:  # the same prompt args.streams times: a static batch
        batch = {k: v.repeat(args.streams, 1) for k, v in ids.items()}
        start = time.perf_counter()
        out = model.generate(**batch, max_new_tokens=args.new_tokens, do_sample=False,
                             min_new_tokens=args.new_tokens)
        return args.streams * (out.shape[1] - ids["input_ids"].shape[1]) / (
            time.perf_counter() - start)

    def ours_one(precision: str) -> Any:
        def run() -> float:
            start = time.perf_counter()
            text = "".join(stream(model, tokenizer, PROMPT, settings=settings, chat=True,
                                  precision=precision))
            return len(tokenizer(text, add_special_tokens=False)["input_ids"]) / (
                time.perf_counter() - start)
        return run

    def median(run: Any) -> float:
        return statistics.median(run() for _ in range(args.repeat))

    base, static = median(hf_one), median(hf_batch)
    exact, ours = median(ours_one("float32")), median(ours_one("bfloat16"))
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    bw = bandwidth_gbs()
    aggregate, aggregate32 = (statistics.median(
        tokens / seconds for seconds, tokens in (
            server_streams(args.streams, args.new_tokens, work, precision)
            for _ in range(args.repeat))) for precision in ("bfloat16", "float32"))
    print(f"\nSmolLM2-135M-Instruct (fp32, {weight_bytes / 1e6:.0f} MB of weights), "
          f"{args.new_tokens} new tokens, greedy, {torch.get_num_threads()} threads, "
          f"median of {args.repeat}\n")
    print("what | tokens/s | × baseline")
    print("--- | --- | ---")
    print(f"model.generate, one request (baseline) | {base:.1f} | 1.00")
    print(f"zero2one stream(), one request, --precision float32 | {exact:.1f} | "
          f"{exact / base:.2f}")
    print(f"zero2one stream(), one request, bfloat16 (default) | {ours:.1f} | "
          f"{ours / base:.2f}")
    print(f"model.generate, static batch of {args.streams}, aggregate | {static:.1f} | "
          f"{static / base:.2f}")
    print(f"zero2one serve (bfloat16), {args.streams} concurrent streams, aggregate | "
          f"{aggregate:.1f} | "
          f"{aggregate / base:.2f}")
    print(f"zero2one serve --precision float32, {args.streams} concurrent streams, aggregate | "
          f"{aggregate32:.1f} | {aggregate32 / base:.2f}")
    for label, size in (("float32", weight_bytes), ("bfloat16", weight_bytes / 2)):
        print(f"memory-bandwidth ceiling for one stream, {label} weights ({bw:.1f} GB/s ÷ "
              f"{size / 1e6:.0f} MB) | {bw * 1e9 / size:.1f} | {bw * 1e9 / size / base:.2f}")
    compressed(model, tokenizer, args, work, base, median, ours_one)
    staggered(model, tokenizer, args)


def compressed(model: Any, tokenizer: Any, args: Any, work: Path, base: float, median: Any,
               ours_one: Any) -> None:
    """`zero2one compress --method int8-weights` on the built-in model: held-out perplexity
    and tokens/s, one stream and N through the server, against float32 and bfloat16."""
    import copy

    import torch

    from zero2one.convert import compress
    from zero2one.tasks.textgen.fast import release

    qa = REPO / "examples/zero2one-qa"
    result = compress("builtin:smollm2-135m-instruct", "int8-weights", out=work / "int8",
                      overrides=[f"data.source={qa / 'train.jsonl'}",
                                 f"data.val_source={qa / 'val.jsonl'}"])
    details = result.report
    release(model)
    rounded = copy.deepcopy(model)  # bfloat16-rounded weights: what the bfloat16 step uses
    with torch.no_grad():
        for p in rounded.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    perplexities = {"float32": details[0]["value"], "bfloat16 weights": _perplexity(
        rounded, tokenizer, qa), "int8 weights (compressed)": details[-1]["value"]}
    one = median(ours_one("int8"))
    served = statistics.median(
        tokens / seconds for seconds, tokens in (
            server_streams(args.streams, args.new_tokens, work, None, str(result.model_dir))
            for _ in range(args.repeat)))
    print("\nint8 weights (`zero2one compress --method int8-weights`), same run\n")
    print("what | value | × baseline (model.generate, one request)")
    print("--- | --- | ---")
    print(f"model file, float32 → int8 (MB) | {details[0]['size_bytes'] / 1e6:.0f} → "
          f"{details[-1]['size_bytes'] / 1e6:.0f} | {details[-1]['size_vs_parent']:.1%} of it")
    print(f"zero2one stream(), one request, int8 | {one:.1f} tokens/s | {one / base:.2f}")
    print(f"zero2one serve (int8 model, its default), {args.streams} concurrent streams, "
          f"aggregate | {served:.1f} tokens/s | {served / base:.2f}")
    print("\nheld-out perplexity (examples/zero2one-qa/val.jsonl) | value | × float32")
    print("--- | --- | ---")
    for label, value in perplexities.items():
        print(f"{label} | {value:.2f} | {value / perplexities['float32']:.4f}")


def _perplexity(model: Any, tokenizer: Any, qa: Path) -> float:
    from zero2one.catalog import load_recipe
    from zero2one.tasks.textgen import train
    from zero2one.tasks.textgen.data import tokenize
    from zero2one.tasks.textgen.task import TextGeneration

    config = load_recipe(REPO / "recipes/smollm2-lora.yaml", [
        f"data.source={qa / 'train.jsonl'}", f"data.val_source={qa / 'val.jsonl'}"])
    data = TextGeneration(config).load_data()
    rows = tokenize(data.val, tokenizer, data.kind, config.data)
    return train.perplexity(train.validation_loss(model, rows, tokenizer.pad_token_id))


def staggered(model: Any, tokenizer: Any, args: Any, gap: float = 0.4) -> None:
    """N requests arriving GAP seconds apart (in process, the server's engine): continuous
    batching (join at the next step) against waiting for the next batch."""
    import asyncio

    from zero2one.tasks.textgen.generate import sampling
    from zero2one.tasks.textgen.serving import LMEngine

    prompt = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)

    def run(continuous: bool) -> tuple[float, float, int]:
        engine = LMEngine(model, tokenizer, "bench", continuous=continuous)
        latencies: list[float] = []
        tokens: list[int] = []

        async def one(i: int) -> None:
            await asyncio.sleep(i * gap)
            start = time.perf_counter()
            settings = sampling(max_new_tokens=args.new_tokens, temperature=0)
            text = "".join([p async for p in engine.stream(prompt, settings)])
            latencies.append(time.perf_counter() - start)
            tokens.append(len(tokenizer(text, add_special_tokens=False)["input_ids"]))

        async def all_of_them() -> None:
            await asyncio.gather(*(one(i) for i in range(args.streams)))

        start = time.perf_counter()
        try:
            asyncio.run(all_of_them())
        finally:
            engine.close()
        return sum(tokens) / (time.perf_counter() - start), statistics.mean(latencies), \
            sum(tokens)

    waiting, continuous = run(False), run(True)
    print(f"\n{args.streams} requests arriving {gap} s apart, {args.new_tokens} new tokens "
          "each, in process (the server's engine, default precision)\n")
    print("schedule | aggregate tokens/s | mean latency s | × wait-for-next-batch")
    print("--- | --- | --- | ---")
    for label, (rate, latency, _) in (("wait for the next batch (before)", waiting),
                                      ("continuous batching (join at the next step)",
                                       continuous)):
        print(f"{label} | {rate:.1f} | {latency:.2f} | {rate / waiting[0]:.2f}")


if __name__ == "__main__":
    main()
