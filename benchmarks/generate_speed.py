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


def server_streams(streams: int, new_tokens: int, work: Path,
                   precision: str = "bfloat16") -> tuple[float, int]:
    port = free_port()
    bin_dir = Path(sys.executable).parent
    process = subprocess.Popen(
        [str(bin_dir / "zero2one"), "serve", "builtin:smollm2-135m-instruct", "--port", str(port),
         "--precision", precision],
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

    from zero2one.tasks.textgen.generate import sampling, stream
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


if __name__ == "__main__":
    main()
