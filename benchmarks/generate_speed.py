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


def server_streams(streams: int, new_tokens: int, work: Path) -> tuple[float, int]:
    port = free_port()
    bin_dir = Path(sys.executable).parent
    process = subprocess.Popen(
        [str(bin_dir / "zero2one"), "serve", "builtin:smollm2-135m-instruct", "--port", str(port)],
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

    def ours_one() -> float:
        start = time.perf_counter()
        text = "".join(stream(model, tokenizer, PROMPT, settings=settings, chat=True))
        return len(tokenizer(text, add_special_tokens=False)["input_ids"]) / (
            time.perf_counter() - start)

    def median(run: Any) -> float:
        return statistics.median(run() for _ in range(args.repeat))

    base, ours, static = median(hf_one), median(ours_one), median(hf_batch)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    bw = bandwidth_gbs()
    served = [server_streams(args.streams, args.new_tokens, work) for _ in range(args.repeat)]
    aggregate = statistics.median(tokens / seconds for seconds, tokens in served)
    print(f"\nSmolLM2-135M-Instruct (fp32, {weight_bytes / 1e6:.0f} MB of weights), "
          f"{args.new_tokens} new tokens, greedy, {torch.get_num_threads()} threads, "
          f"median of {args.repeat}\n")
    print("what | tokens/s | × baseline")
    print("--- | --- | ---")
    print(f"model.generate, one request (baseline) | {base:.1f} | 1.00")
    print(f"zero2one stream(), one request | {ours:.1f} | {ours / base:.2f}")
    print(f"model.generate, static batch of {args.streams}, aggregate | {static:.1f} | "
          f"{static / base:.2f}")
    print(f"zero2one serve, {args.streams} concurrent streams, aggregate | {aggregate:.1f} | "
          f"{aggregate / base:.2f}")
    print(f"memory-bandwidth ceiling for one stream ({bw:.1f} GB/s ÷ weights) | "
          f"{bw * 1e9 / weight_bytes:.1f} | {bw * 1e9 / weight_bytes / base:.2f}")


if __name__ == "__main__":
    main()
