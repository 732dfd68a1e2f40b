"""llama.cpp's server engine without a model of zero2one's: its parameters, the servers kept
alive, the hand-over of pieces to an event loop, and one stream's speed timed in a process of
its own. Imports neither torch nor transformers, so that the timing's child process starts in
a fraction of a second (``python -m zero2one.tasks.textgen.llamabase JOB``).

Why a process of its own: in one process every OpenMP thread — llama.cpp's, torch's,
MKL's — is managed by one runtime (libgomp; torch's copy, which the other libraries then use
too), and once it manages more threads than there are cores, each of them spins only briefly
before sleeping between the steps of a parallel region. llama.cpp's decoding waits on such
steps hundreds of times per token: SmolLM2's Q8_0 file on 2 cores decoded 74.7 tokens/s alone
in its process, 32.8 with one more llama.cpp server idle beside it and 34.1 after torch had run
one 2-thread product on a thread that lives on (``benchmarks/openmp_share.py``; the same product
on a thread that ended: 74.4). Servers are never destroyed
(:func:`keep_alive`), so a server made only to be timed would slow every later one; the
timing runs here, in a child that exits, and work that starts torch's threads before serving
runs on a thread that ends (:func:`zero2one.machine.on_own_thread`), taking them with it.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def server_params(path: Path, *, context: int, slots: int, threads: int,
                  batch_threads: int) -> Any:
    """xllamacpp's parameters for a server of ``slots`` slots of ``context`` tokens each."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_ctx, params.n_parallel = context * slots, slots
    params.kv_unified = False  # each slot its own window: one request cannot starve others
    # llama.cpp decodes one token with n_threads and several (a prompt, a batch of slots)
    # with the batch's
    params.cpuparams.n_threads, params.cpuparams_batch.n_threads = threads, batch_threads
    params.n_gpu_layers = 0
    params.verbosity = -1  # llama.cpp's own log lines stay out of the server's
    params.warmup = True
    params.endpoint_metrics = True  # llama.cpp's counters, for stats()
    return params


# llama.cpp servers are never destroyed. xllamacpp's Server destructor (2026.10.11549) can miss its
# own stop request — its main loop keeps serving — and then waits for that loop forever while
# holding Python's GIL, which freezes every thread of the process, signal handlers and
# pytest-timeout's included (seen in CI: the destructor in std::thread::join, the loop in
# server_queue::start_loop, answering /metrics). A retired server stays in memory, idle, until
# the process exits: a model swapped out keeps its memory until the server restarts.
_KEPT: list[Any] = []


def keep_alive(server: Any) -> Any:
    """``server`` (an ``xllamacpp.Server``), referenced for the life of the process: one
    reference more than any owner drops, so that not even the interpreter's finalization at
    exit (which clears module globals) runs its destructor. Every xllamacpp server zero2one
    makes — benchmarks and tests included — goes through here."""
    _KEPT.append(server)
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(server))
    return server


class Pipe:
    """Text from the decoding thread to the event loop: the thread appends, and wakes the loop
    only when the reader is waiting; the reader takes everything there is at once."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop, self.ready = loop, asyncio.Event()
        self.lock = threading.Lock()
        self.parts: list[str] = []
        self.ended, self.woken, self.gone = False, False, False
        self.error: BaseException | None = None

    def piece(self, text: str) -> bool:
        """Called by the decoding thread; True once the reader is gone (stop decoding)."""
        with self.lock:
            self.parts.append(text)
            self._wake()
        return self.gone

    def close(self, error: BaseException | None) -> None:
        with self.lock:
            self.ended, self.error = True, error
            self._wake()

    def _wake(self) -> None:
        if not self.woken:
            self.woken = True
            self.loop.call_soon_threadsafe(self.ready.set)

    async def take(self) -> tuple[str, bool, BaseException | None]:
        """(the text since the last take, whether the decoding ended, its error)."""
        await self.ready.wait()
        with self.lock:
            self.ready.clear()
            self.woken = False
            text, self.parts = "".join(self.parts), []
            return text, self.ended, self.error


# ---- one stream's speed, in a process of its own ----------------------------------------------

def timed_in_child(path: Path, ids: list[int], *, threads: int, batch_threads: int,
                   context: int, tokens: int, timeout: float = 300) -> float:
    """Greedy tokens/s of one stream of ``tokens`` tokens after the prompt ``ids``, decoded on
    ``threads`` threads by a one-slot server in a child process (see the module's docstring);
    0.0, said in the log, where the child fails."""
    job = {"gguf": str(path), "ids": ids, "threads": threads, "batch_threads": batch_threads,
           "context": context, "tokens": tokens}
    try:
        done = subprocess.run([sys.executable, "-m", __name__, json.dumps(job)],
                              capture_output=True, text=True, timeout=timeout, check=False)
        lines = done.stdout.strip().splitlines()
        return float(json.loads(lines[-1])["tokens_per_second"])
    except subprocess.TimeoutExpired:
        why = f"no answer in {timeout:g} s"
    except (IndexError, KeyError, TypeError, ValueError):
        why = ([line for line in done.stderr.splitlines() if line.strip()] or
               [f"exit code {done.returncode}"])[-1]
    log.warning("llama.cpp's timing on %d thread(s) failed (%s)", threads, why)
    return 0.0


def stream_speed(server: Any, ids: list[int], tokens: int) -> float:
    """One greedy stream's tokens/s on the path a served request takes: decoded on a thread of
    its own, each piece handed to an event loop (:class:`Pipe`) and written as a JSON chunk."""
    request = {"prompt": ids, "max_tokens": tokens, "stream": True, "ignore_eos": True,
               "stream_options": {"include_usage": True}, "temperature": 0.0, "top_k": 1,
               "top_p": 1.0, "seed": 0, "cache_prompt": True}
    made: list[int] = []

    async def consume() -> None:
        pipe = Pipe(asyncio.get_running_loop())

        def chunk(data: dict[str, Any]) -> bool:
            for choice in data.get("choices") or []:
                if choice.get("text"):
                    pipe.piece(choice["text"])
            if usage := data.get("usage"):
                made.append(int(usage.get("completion_tokens", 0)))
            return False

        def work() -> None:
            try:
                server.handle_completions(request, chunk)
            finally:
                pipe.close(None)

        threading.Thread(target=work, daemon=True, name="llama.cpp").start()
        while True:
            text, ended, _ = await pipe.take()
            if text:
                json.dumps({"choices": [{"text": text}]})
            if ended:
                return

    started = time.perf_counter()
    asyncio.run(consume())
    return (made[-1] if made else 0) / (time.perf_counter() - started)


def _child(job: dict[str, Any]) -> float:
    import xllamacpp

    server = keep_alive(xllamacpp.Server(server_params(
        Path(job["gguf"]), context=int(job["context"]), slots=1, threads=int(job["threads"]),
        batch_threads=int(job["batch_threads"]))))
    ids = [int(i) for i in job["ids"]]
    stream_speed(server, ids, 4)  # warm-up: the first request pays for allocations
    return stream_speed(server, ids, int(job["tokens"]))


if __name__ == "__main__":
    print(json.dumps({"tokens_per_second": _child(json.loads(sys.argv[1]))}), flush=True)
    os._exit(0)  # the server is never destroyed (keep_alive): exit without finalizing
