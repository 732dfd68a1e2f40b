"""Which engine decodes a served language model (``zero2one serve MODEL --engine E``):

- ``auto`` (the default): llama.cpp's server engine (:mod:`.llamaserver`) where it is installed
  and can run the model, if it is the faster of the two here — both are timed on one stream,
  since which wins depends on the CPU (its vector units, its memory) and the model; measured at
  the first start of a model on a machine and kept in the user's cache —, else zero2one's own
  (:class:`~zero2one.tasks.textgen.serving.LMEngine`);
- ``llama.cpp``: llama.cpp's server engine (xllamacpp), or where that is not installed the
  compiled binding (``llama-cpp-python``, the ``llamacpp`` extra; GGUF models only);
- ``zero2one``: zero2one's own decoding step, batched by its own loop.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zero2one.artifacts import library_versions
from zero2one.errors import UserError
from zero2one.machine import cpu_name, usable_cores
from zero2one.paths import cache_home
from zero2one.tasks.textgen import llamabase, llamaserver
from zero2one.tasks.textgen.batch import stream
from zero2one.tasks.textgen.generate import Outcome, context_window, sampling
from zero2one.tasks.textgen.llamacpp import LlamaCppEngine, require
from zero2one.tasks.textgen.serving import LMEngine, token_budget

log = logging.getLogger(__name__)

ENGINES = ("auto", "zero2one", "llama.cpp")
TIMED_TOKENS = 32  # the start-up timing: one stream, greedy, this many tokens per engine
TIMING_PROMPT = "The quick brown fox"


def build(task: Any, settings: Any, name: str) -> Any:
    """The adapter ``settings.engine`` asks for (see the module's docstring). Its callers
    (the server's load, ``generate --engine llama.cpp``) run it on a thread that ends before
    decoding, taking the OpenMP threads torch starts here with it (llamabase's docstring)."""
    engine = settings.engine or "auto"
    if engine == "llama.cpp" and not llamaserver.available():
        require()  # the compiled binding, or the one-line install hint
        return LlamaCppEngine(task.gguf_source(), name)
    if engine in ("auto", "llama.cpp"):
        server = _llama_server(task, settings, name, required=engine == "llama.cpp")
        if server is not None:
            return server
    own = LMEngine(task.model_, task.tokenizer_, name, precision=settings.precision,
                   max_batch_tokens=settings.max_batch_tokens, workers=settings.workers)
    own.warm()  # only for the engine that serves: it times every batch size's precision
    return own


def _llama_server(task: Any, settings: Any, name: str, *, required: bool) -> Any:
    """llama.cpp's server engine for the task's model, or None (said in the log) where it
    cannot run it and ``required`` is false."""
    reason = None
    if not llamaserver.available():
        reason = llamaserver.INSTALL
    elif not llamaserver.supports(task):
        reason = (f"llama.cpp's server engine runs GGUF files and Llama-family models on the "
                  f"CPU; this one is {type(task.model_).__name__} on "
                  f"{next(task.model_.parameters()).device.type}")
    elif (precision := settings.precision or task.model_.__dict__.get("_zero2one_precision")
          ) and not required:  # asked for, or the model was compressed for zero2one's step
        reason = f"precision {precision} is a setting of zero2one's own engine"
    if reason is None:
        try:
            path, report = llamaserver.served_gguf(task)
        except UserError as exc:
            reason = str(exc)
    if reason is not None:
        if required:
            raise UserError(reason)
        log.info("engine: zero2one's own (%s)", reason)
        return None
    threads = max(1, usable_cores() // max(1, settings.workers))
    small = min(256, context_window(task.model_))  # a timing's window: prompt + 32 tokens
    prompt = list(task.tokenizer_(TIMING_PROMPT, add_special_tokens=False)["input_ids"])
    one, speed, measured = _one_stream_threads(
        path, threads, lambda count: llamabase.timed_in_child(
            path, prompt, threads=count, batch_threads=threads, context=small,
            tokens=TIMED_TOKENS))
    if not required:  # auto: the faster engine here, made only if it is llama.cpp's
        slow, where = _own_timed(task, settings, path, threads, speed)
        if slow > speed:
            log.info("engine: zero2one's own (%.1f tokens/s for one stream here, llama.cpp's "
                     "server %.1f%s)", slow, speed, where)
            return None
        log.info("engine: llama.cpp's server (%.1f tokens/s for one stream here, zero2one's "
                 "own %.1f%s)", speed, slow, where)
    engine = llamaserver.LlamaServerEngine(
        path, task.tokenizer_, name, threads=one, batch_threads=threads,
        context=context_window(task.model_),
        budget=settings.max_batch_tokens or token_budget(task.model_, settings.workers),
        slots=getattr(settings, "slots", None) or llamaserver.SLOTS)
    log.info("llama.cpp's server engine: %s; %d slots of %d tokens, %d thread(s) for one "
             "stream%s, %d for batches", llamaserver.describe(report), engine.slots,
             engine.context, one, measured, threads)
    return engine


def _one_stream_threads(path: Path, threads: int,
                        trial: Callable[[int], float]) -> tuple[int, float, str]:
    """How many threads decode one stream: every core, or one fewer — timed, since which wins
    depends on the CPU and on what else runs: a step waits for its slowest thread, and the
    server's own threads (the event loop, HTTP, the tokenizer) take a core from one of them now
    and then. ``trial(count)`` is one stream's tokens/s on ``count`` threads, decoded in a
    process of its own (:func:`~.llamabase.timed_in_child`: a server made here for a timing
    would slow every later one). Returns the count, its speed and what the log says of them
    (best of two, alternating; kept like every start-up timing, :func:`_kept`)."""
    choices = sorted({max(1, threads - 1), threads})

    def measure() -> dict[str, Any]:
        speeds = dict.fromkeys(map(str, choices), 0.0)
        for _ in range(2):  # alternating
            for count in choices:
                speeds[str(count)] = max(speeds[str(count)], round(trial(count), 1))
        return {"threads": speeds}

    kept, where = _kept(_key(path, timed="one stream's threads", threads=choices), measure)
    speeds = {int(k): float(v) for k, v in kept["threads"].items()}
    best = max(speeds, key=lambda count: (speeds[count], count))  # a tie (both failed): all
    return best, speeds[best], " (" + ", ".join(
        f"{count}: {speed:.1f} tokens/s" for count, speed in sorted(speeds.items())) + where + ")"


def _own_timed(task: Any, settings: Any, path: Path, threads: int,
               speed: float) -> tuple[float, str]:
    """zero2one's engine's greedy tokens/s for one stream of this model here (best of two),
    kept beside llama.cpp's ``speed``, and where it was measured (for the log)."""
    def measure() -> dict[str, Any]:
        slow = max(_own_speed(task, settings) for _ in range(2))
        return {"llama.cpp": speed, "zero2one": round(slow, 1)}

    kept, where = _kept(_key(path, timed="engines", threads=[threads]), measure)
    return float(kept["zero2one"]), where


def _key(gguf: Path, **more: Any) -> dict[str, Any]:
    """What a start-up timing holds for: the file, the CPU, the cores, the engines' versions."""
    stat = gguf.stat()
    return {"gguf": str(gguf.resolve()), "bytes": stat.st_size, "modified": stat.st_mtime_ns,
            "cpu": cpu_name(), "cores": usable_cores(), "tokens": TIMED_TOKENS,
            "versions": library_versions(["xllamacpp", "torch"]), **more}


def _kept(key: dict[str, Any],
          measure: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """A start-up timing, measured once per ``key`` and kept in ``<cache>/engines/``, so later
    starts (a restart, another worker, a scaled-out replica on the same kind of machine) skip
    the seconds it takes; remove the file to measure again. Returns the record and where it
    was read from (for the log; empty when measured now)."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    file = cache_home() / "engines" / f"{digest}.json"
    try:
        kept = json.loads(file.read_text())
        if kept.get("key") == key:
            return kept, f"; measured {kept['measured']}, kept in {file}"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    record = {**measure(), "key": key,
              "measured": dt.datetime.now().isoformat(timespec="minutes")}
    tmp = file.with_name(f".{file.name}.{os.getpid()}")
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, file)
    except OSError as exc:  # a read-only cache, a full disk: measured again at the next start
        tmp.unlink(missing_ok=True)
        log.info("the engines' timing is not kept (%s: %s)", file.parent, exc.strerror or exc)
    return record, ""


def _own_speed(task: Any, settings: Any) -> float:
    """zero2one's engine's greedy tokens/s for one stream (prompt included), as timed for
    llama.cpp's (:func:`~.llamabase.stream_speed`)."""
    outcome = Outcome()
    greedy = sampling(max_new_tokens=TIMED_TOKENS, temperature=0)
    started = time.perf_counter()
    for _ in stream(task.model_, task.tokenizer_, TIMING_PROMPT, settings=greedy,
                    precision=settings.precision, outcome=outcome):
        pass
    return outcome.completion_tokens / (time.perf_counter() - started)
