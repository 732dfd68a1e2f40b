"""Which engine decodes a served language model (``zero2one serve MODEL --engine E``):

- ``auto`` (the default): llama.cpp's server engine (:mod:`.llamaserver`) where it is installed
  and can run the model, if it is the faster of the two here — both are timed at start-up on one
  stream, since which wins depends on the CPU (its vector units, its memory) and the model —,
  else zero2one's own (:class:`~zero2one.tasks.textgen.serving.LMEngine`);
- ``llama.cpp``: llama.cpp's server engine (xllamacpp), or where that is not installed the
  compiled binding (``llama-cpp-python``, the ``llamacpp`` extra; GGUF models only);
- ``zero2one``: zero2one's own decoding step, batched by its own loop.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from zero2one.errors import UserError
from zero2one.machine import usable_cores
from zero2one.tasks.textgen import llamaserver
from zero2one.tasks.textgen.batch import stream
from zero2one.tasks.textgen.generate import Outcome, context_window, sampling
from zero2one.tasks.textgen.llamacpp import LlamaCppEngine, require
from zero2one.tasks.textgen.serving import LMEngine, token_budget

log = logging.getLogger(__name__)

ENGINES = ("auto", "zero2one", "llama.cpp")
TIMED_TOKENS = 32  # the start-up timing: one stream, greedy, this many tokens per engine


def build(task: Any, settings: Any, name: str) -> Any:
    """The adapter ``settings.engine`` asks for (see the module's docstring)."""
    engine = settings.engine or "auto"
    if engine == "llama.cpp" and not llamaserver.available():
        require()  # the compiled binding, or the one-line install hint
        return LlamaCppEngine(task.gguf_source(), name)
    server = None
    if engine in ("auto", "llama.cpp"):
        server = _llama_server(task, settings, name, required=engine == "llama.cpp")
    if server is not None and engine == "llama.cpp":
        return server
    if server is not None:
        # best of two, alternating: a busy machine slows one run, rarely both
        fast = slow = 0.0
        for _ in range(2):
            fast = max(fast, server.tokens_per_second(TIMED_TOKENS))
            slow = max(slow, _own_speed(task, settings))
        if fast >= slow:
            log.info("engine: llama.cpp's server (%.1f tokens/s for one stream here, "
                     "zero2one's own %.1f)", fast, slow)
            return server
        log.info("engine: zero2one's own (%.1f tokens/s for one stream here, llama.cpp's "
                 "server %.1f)", slow, fast)
        server.close()
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
    # one stream's steps on one core fewer: the server's own threads (HTTP, the event loop, the
    # tokenizer) run beside llama.cpp's, and a core they take from a thread of its step stalls
    # the whole step (2 cores, served over HTTP: 100.0 tokens/s against 84.3 with 2 threads;
    # 8 streams, whose steps use every core, 212.9 against 212.6)
    one = max(1, threads - 1)
    budget = settings.max_batch_tokens or token_budget(task.model_, settings.workers)
    engine = llamaserver.LlamaServerEngine(
        path, task.tokenizer_, name, threads=one, batch_threads=threads,
        context=context_window(task.model_), budget=budget,
        slots=getattr(settings, "slots", None) or llamaserver.SLOTS)
    log.info("llama.cpp's server engine: %s; %d slots of %d tokens, %d thread(s) for one "
             "stream, %d for batches", llamaserver.describe(report), engine.slots,
             engine.context, one, threads)
    return engine


def _own_speed(task: Any, settings: Any) -> float:
    """zero2one's engine's greedy tokens/s for one stream (prompt included), as timed for
    llama.cpp's (:meth:`~.llamaserver.LlamaServerEngine.tokens_per_second`)."""
    outcome = Outcome()
    greedy = sampling(max_new_tokens=TIMED_TOKENS, temperature=0)
    started = time.perf_counter()
    for _ in stream(task.model_, task.tokenizer_, "The quick brown fox", settings=greedy,
                    precision=settings.precision, outcome=outcome):
        pass
    return outcome.completion_tokens / (time.perf_counter() - started)
