"""llama.cpp's server engine, in this process: the default decoding engine for language models on
a CPU (``zero2one serve MODEL``; ``--engine llama.cpp`` asks for it, ``--engine zero2one`` for
zero2one's own).

llama.cpp's HTTP server (``llama-server``) decodes many sequences in one step — continuous
batching over parallel *slots* — with hand-written kernels for every CPU (AVX2, AVX-512, ARM).
``xllamacpp`` (Xorbits, the engine behind Xinference) links that server's C++ code into a
Python extension, prebuilt for Linux x86-64: nothing compiles at install. Requests go straight
to its handlers (no second HTTP hop); zero2one's own routes keep the auth, limits, moderation,
feedback and metrics.

The model runs as a GGUF file: a model that is one (``export --format gguf``) as it is; any
other Llama-family model written as Q8_0 once (:func:`served_gguf`) into the user's cache and
checked before it is used — the file's logits against the model's, and held-out perplexity
within :data:`PERPLEXITY_BUDGET` of float32's (else float16, else the engine is not used).
Prompts are tokenized here, with the model's own tokenizer and chat template, and sent as token
ids, so counts and templates are the model's.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import logging
import queue
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from zero2one.errors import UserError
from zero2one.machine import usable_cores
from zero2one.paths import cache_home
from zero2one.serving.adapter import BaseAdapter
from zero2one.tasks.textgen import checkset, train
from zero2one.tasks.textgen.constrained import grammar_of
from zero2one.tasks.textgen.data import IGNORE, tokenize_chat, tokenize_text
from zero2one.tasks.textgen.generate import Outcome, TemplateChat
from zero2one.tasks.textgen.gguf_export import (
    GGUF_FILE,
    SUPPORTED,
    check,
    pre_tokenizer,
    prompts_of,
    read,
    write,
)
from zero2one.tasks.textgen.llamabase import Pipe, keep_alive, server_params
from zero2one.tasks.textgen.models import build_once

log = logging.getLogger(__name__)

INSTALL = ("llama.cpp's server engine needs xllamacpp (a prebuilt wheel for Linux x86-64; make "
           "setup installs it): pip install 'zero2one[text]'")
SLOTS = 8  # sequences decoded together; more wait in llama.cpp's queue
# the quantization of a GGUF written for serving, and the held-out perplexity each may add to
# float32's: q8_0 first (SmolLM2-135M: +0.1 % on the built-in check set), float16 where q8_0
# costs more than that
PERPLEXITY_BUDGET = {"q8_0": 0.02, "f16": 0.005}
# what the start-up log says of a model served from the GGUF file it was read from
AS_READ = ("the file the model was read from, served as it is: its own weights, no perplexity "
           "lost to a conversion")
CACHE_FORMAT = 4  # bumped when the written file changes, so older copies are made again


def available() -> bool:
    return importlib.util.find_spec("xllamacpp") is not None


def supports(task: Any) -> bool:
    """Whether this engine can run the task's model: a GGUF file already, or a Llama-family
    model on the CPU that :func:`served_gguf` can write as one."""
    if getattr(task, "gguf_", None) is not None or getattr(task, "source_gguf_", None):
        return True
    model = getattr(task, "model_", None)
    if model is None or type(model).__name__ not in SUPPORTED:
        return False
    first = next(model.parameters(), None)
    return first is not None and first.device.type == "cpu"


# ---- the model as a checked GGUF file ---------------------------------------------------------

def served_gguf(task: Any) -> tuple[Path, dict[str, Any]]:
    """The GGUF file this engine runs for ``task``, and what its check measured. A file the
    model is (an export, a ``.gguf`` source) is used as it is; otherwise the model is written
    once per content into the user's cache (``<cache>/gguf/<sha256>/``), q8_0 if it keeps the
    held-out perplexity within budget, else float16; :class:`UserError` if neither does."""
    own = getattr(task, "gguf_", None)
    if own is not None:
        return Path(own), {"quantization": getattr(task, "quant_", None) or "as exported",
                           "source": "the model's own GGUF file"}
    as_read = getattr(task, "as_read", None)
    own = as_read() if as_read is not None else None
    if own is None and type(task.model_).__name__ not in SUPPORTED:  # a .gguf we cannot write
        own = getattr(task, "source_gguf_", None)
    if own is not None:  # the weights as they are: no second quantization, nothing to check
        return Path(own), {"quantization": file_type(Path(own)), "source": AS_READ}
    key = _content_key(task)
    target = cache_home() / "gguf" / key[:24]
    build_once(target, "check.json", lambda tmp: _write_checked(task, tmp))
    report = json.loads((target / "check.json").read_text())
    if not report.get("passed"):
        raise UserError(f"no GGUF of this model is within the perplexity budget "
                        f"({_ppl_line(report)}); serve it with --engine zero2one")
    return target / GGUF_FILE, report


def file_type(path: Path) -> str:
    """A GGUF file's quantization as its header names it (``q4_1``, ``q8_0``, ...)."""
    import gguf

    try:
        field = gguf.GGUFReader(str(path)).fields["general.file_type"]
        return gguf.LlamaFileType(int(field.parts[field.data[0]][0])).name.removeprefix(
            "MOSTLY_").lower()
    except (KeyError, ValueError, IndexError, OSError):
        return "as read"


def _content_key(task: Any) -> str:
    """sha256 of what the file is made of: the weights, the model's configuration (the file's
    context length, rope and norm settings come from it), the tokenizer, the format."""
    import torch

    digest = hashlib.sha256(f"{CACHE_FORMAT}".encode())
    config = task.model_.config.to_dict()
    config.pop("_name_or_path", None)  # where it was read from: not what it is
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    seen: set[int] = set()
    for name, tensor in task.model_.state_dict().items():
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(memoryview(tensor.detach().contiguous().cpu().view(-1).view(
            torch.uint8).numpy()))
    tokenizer = task.tokenizer_
    digest.update(tokenizer.backend_tokenizer.to_str().encode())
    digest.update(str(getattr(tokenizer, "chat_template", "") or "").encode())
    return digest.hexdigest()


def _write_checked(task: Any, directory: Path) -> None:
    """Write the model as GGUF into ``directory`` with ``check.json``: each quantization of
    :data:`PERPLEXITY_BUDGET` in turn until one keeps the held-out perplexity within budget
    (a report with ``passed: false`` where none does, so the next start does not redo it)."""
    rows, source = _held_out(task)
    base = perplexity(task.model_, task.tokenizer_, rows)
    report: dict[str, Any] = {"held_out": source, "records": len(rows),
                              "perplexity_float32": base, "tried": {}}
    path = directory / GGUF_FILE
    for quant, budget in PERPLEXITY_BUDGET.items():
        started = time.perf_counter()
        write(task.model_, task.tokenizer_, path, quant, pre=pre_tokenizer(task))
        back, tokenizer = read(path)
        error = check(task.model_, task.tokenizer_, back, tokenizer,
                      prompts_of(rows[:4]), quant)
        ppl = perplexity(back, tokenizer, rows)
        report["tried"][quant] = {"perplexity": ppl, "budget": budget,
                                  "logits_relative_rms_error": error,
                                  "seconds": round(time.perf_counter() - started, 1)}
        if ppl <= base * (1 + budget):
            report.update(quantization=quant, perplexity=ppl, passed=True,
                          gguf_bytes=path.stat().st_size)
            break
        path.unlink()
    else:
        report["passed"] = False
    (directory / "check.json").write_text(json.dumps(report, indent=2))


def _held_out(task: Any, count: int = 32) -> tuple[list[dict[str, Any]], str]:
    """Up to ``count`` held-out records: the model's own validation split where its data is
    here, else the built-in check set."""
    rows, source = checkset.records()[0], checkset.SOURCE
    if task.config.data.source:
        try:
            data = task.load_data()
            rows = [data.val[i] for i in range(min(count, len(data.val)))]
            source = str(getattr(task.config.data, "val_source", None)
                         or f"{task.config.data.source}, its held-out split")
        except (UserError, OSError, ImportError) as exc:
            log.info("held-out set: %s is not readable here (%s); using %s",
                     task.config.data.source, exc, checkset.SOURCE)
    return rows[:count], source


def perplexity(model: Any, tokenizer: Any, rows: list[dict[str, Any]], *,
               longest: int = 256) -> float:
    """Held-out perplexity as the training report measures it (the loss of the tokens training
    learns: a chat's assistant turns, a text's every token), each record cut to ``longest``."""
    encoded = []
    for row in rows:
        if row.get("messages") and getattr(tokenizer, "chat_template", None):
            item = tokenize_chat(tokenizer, row["messages"], longest)
        else:
            item = tokenize_text(tokenizer, str(row.get("text") or "\n".join(
                str(m.get("content") or "") for m in row.get("messages") or [])), longest)
        if any(label != IGNORE for label in item["labels"][1:]):
            encoded.append(item)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else \
        tokenizer.eos_token_id
    return train.perplexity(train.validation_loss(model, encoded, int(pad or 0)))


def _ppl_line(report: dict[str, Any]) -> str:
    tried = ", ".join(f"{q} {r['perplexity']:.4g}" for q, r in report.get("tried", {}).items()
                      if r.get("perplexity") is not None)
    base = report.get("perplexity_float32")
    return f"held-out perplexity float32 {base:.4g}, {tried}" if base else tried


def describe(report: dict[str, Any]) -> str:
    """One line for the start-up log: the file's quantization and what it costs."""
    quant = str(report.get("quantization"))
    ppl, base = report.get("perplexity"), report.get("perplexity_float32")
    if ppl is None or not base:
        return f"GGUF {quant} ({report.get('source', 'no perplexity check')})"
    return (f"GGUF {quant}: held-out perplexity {ppl:.4g} against float32's {base:.4g} "
            f"({(ppl / base - 1):+.2%}, budget {PERPLEXITY_BUDGET.get(quant, 0) * 100:g}%; "
            f"{report.get('held_out')})")


# ---- the engine -------------------------------------------------------------------------------

class LlamaServerEngine(TemplateChat, BaseAdapter):
    """Requests decode in llama.cpp's slots (``slots`` at a time, each with its own context of
    ``context`` tokens); the interface is that of zero2one's engine (``stream``, ``count``,
    ``chat_prompt``), so the OpenAI routes serve either."""

    batched = False  # llama.cpp batches concurrent decodes itself

    def __init__(self, gguf: Path, tokenizer: Any, name: str, *, context: int,
                 slots: int = SLOTS, threads: int | None = None,
                 batch_threads: int | None = None, budget: int | None = None) -> None:
        try:
            import xllamacpp
        except ImportError:
            raise UserError(INSTALL) from None
        self.name, self.path, self.tokenizer = name, gguf, tokenizer
        # the KV cache holds slots × context tokens: within the token budget where one is set
        window = context
        if budget is not None:
            context = max(16, min(context, budget // slots))
        self.context, self.slots = context, slots
        # what a request over a slot's window is told: the model's limit, or the budget's
        self.limit = (f"the context window of {context}" if context == window else
                      f"a slot's share of the token budget, {context} (--max-batch-tokens "
                      f"{budget} over {slots} slots; the model's window is {window})")
        batch_threads = batch_threads or threads or usable_cores()
        threads = threads or batch_threads
        params = server_params(gguf, context=context, slots=slots, threads=threads,
                               batch_threads=batch_threads)
        self.threads, self.batch_threads = threads, batch_threads
        self._server: Any = keep_alive(xllamacpp.Server(params))
        self._active, self._closing = 0, False  # requests decoding; close() called
        self._idle = threading.Condition()

    def playground(self) -> dict[str, Any]:
        chat = bool(self.template)
        return {"kind": "chat", "route": "/v1/chat/completions" if chat else "/v1/completions",
                "chat": chat, "max_tokens": 256, "temperature": 0.7, "context": self.context}

    def tokens(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def count(self, text: str) -> int:
        return len(self.tokens(text))

    def checked(self, prompt: str, settings: Any) -> list[int]:
        """The prompt's token ids, if it and ``max_tokens`` fit a slot's context."""
        ids = self.tokens(prompt)
        if not ids:
            raise UserError("the prompt is empty")
        if len(ids) + settings.max_new_tokens > self.context:
            raise UserError(f"prompt ({len(ids)} tokens) + max_tokens "
                            f"({settings.max_new_tokens}) exceeds {self.limit}")
        return ids

    def request(self, ids: list[int], settings: Any, *,
                ignore_eos: bool = False) -> dict[str, Any]:
        """llama.cpp's completion request for these ids and sampling settings."""
        greedy = settings.temperature == 0
        grammar = grammar_of(settings)
        # llguidance is built into xllamacpp's llama.cpp: the same grammar as zero2one's engine
        constrained = {"grammar": grammar} if grammar is not None else {}
        return {**constrained, "prompt": ids, "max_tokens": settings.max_new_tokens,
                "stream": True,
                "stream_options": {"include_usage": True}, "ignore_eos": ignore_eos,
                "temperature": 0.0 if greedy else settings.temperature,
                "top_p": 1.0 if greedy else settings.top_p,
                "top_k": 1 if greedy else settings.top_k,
                "repeat_penalty": settings.repetition_penalty,
                "stop": list(settings.stop or []),
                "seed": settings.seed if settings.seed is not None else random.randrange(2**31),
                "cache_prompt": True}

    def run(self, ids: list[int], settings: Any, emit: Callable[[str], bool],
            outcome: Outcome, *, ignore_eos: bool = False) -> None:
        """Decode on this thread, handing each piece of text to ``emit`` (which returns True to
        stop: the slot is freed); ``outcome`` is filled in at the end. llama.cpp sends whole
        characters only and leaves stop strings out."""
        failure: list[str] = []

        def chunk(data: dict[str, Any]) -> bool:
            if "error" in data or data.get("code"):
                error = data.get("error", data)
                failure.append(str(error.get("message") if isinstance(error, dict) else error))
                return True
            for choice in data.get("choices") or []:
                if choice.get("text") and emit(choice["text"]):
                    return True
                if choice.get("finish_reason"):
                    outcome.finish_reason = ("length" if choice["finish_reason"] == "length"
                                             else "stop")
            if usage := data.get("usage"):
                outcome.completion_tokens = int(usage.get("completion_tokens", 0))
            return False

        with self._idle:
            if self._closing or self._server is None:
                raise UserError("this model is being replaced or the server is stopping; retry")
            self._active += 1
            server = self._server
        try:
            server.handle_completions(self.request(ids, settings, ignore_eos=ignore_eos), chunk)
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()
        if failure:
            raise UserError(f"llama.cpp: {failure[0]}")

    async def stream(self, prompt: str, settings: Any, outcome: Outcome | None = None, *,
                     ignore_eos: bool = False) -> AsyncIterator[str]:
        """Text pieces as generated; errors (a prompt too long, ...) raise before the first.
        ``outcome`` is filled in once the last piece is out. Pieces that arrive while the
        caller is busy are handed over joined, as one: fewer wake-ups and events per token when
        the event loop falls behind the decoder."""
        ids = self.checked(prompt, settings)
        pipe = Pipe(asyncio.get_running_loop())
        done = outcome if outcome is not None else Outcome()
        done.finish_reason, done.completion_tokens = "length", 0

        def work() -> None:
            try:
                self.run(ids, settings, pipe.piece, done, ignore_eos=ignore_eos)
            except BaseException as exc:  # the caller hears of it
                pipe.close(exc)
                return
            pipe.close(None)

        threading.Thread(target=work, daemon=True, name="llama.cpp").start()
        try:
            while True:
                text, ended, error = await pipe.take()
                if text:
                    yield text
                if error is not None:
                    raise error
                if ended:
                    return
        finally:
            pipe.gone = True  # a caller that went away frees its slot at the next token

    def generate(self, prompt: str, settings: Any,
                 outcome: Outcome | None = None) -> Iterator[str]:
        """Text pieces on the caller's thread (``zero2one generate``); closing the iterator
        stops the decoding."""
        ids = self.checked(prompt, settings)
        pieces: queue.Queue[tuple[str, Any]] = queue.Queue()
        gone = threading.Event()
        done = outcome if outcome is not None else Outcome()

        def emit(text: str) -> bool:
            pieces.put(("piece", text))
            return gone.is_set()

        def work() -> None:
            try:
                self.run(ids, settings, emit, done)
                pieces.put(("end", None))
            except BaseException as exc:
                pieces.put(("error", exc))

        threading.Thread(target=work, daemon=True, name="llama.cpp").start()
        try:
            while True:
                kind, value = pieces.get()
                if kind == "piece":
                    yield value
                elif kind == "end":
                    return
                else:
                    raise value
        finally:
            gone.set()

    def stats(self) -> dict[str, float]:
        """llama.cpp's own counters (``n_decode_total``, ``n_busy_slots_per_decode``, ...)."""
        server = self._server
        if server is None:
            return {}
        return {sample.name.removeprefix("llamacpp:"): float(sample.value)
                for family in text_string_to_metric_families(str(server.handle_metrics()))
                for sample in family.samples}

    def close(self, timeout: float = 600) -> None:
        """Take no more requests and let those decoding finish (a reload swaps models without
        cutting a stream); the llama.cpp server then idles, never destroyed (:func:`keep_alive`)."""
        with self._idle:
            self._closing = True
            self._idle.wait_for(lambda: self._active == 0, timeout=timeout)
            self._server = None
