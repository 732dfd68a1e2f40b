"""Language models behind the OpenAI-compatible routes.

Concurrent requests are decoded together: a worker thread takes every request queued within a
short gathering window (up to ``max_batch``) and decodes them as one batch
(:class:`zero2one.tasks.textgen.batch.Decoder`), streaming each row's text back to its caller's
event loop. Batching is continuous where the model allows it (Llama-family models on the CPU):
a request that arrives during a batch joins it at the next step, and a request that ends leaves
it (and is answered) at once; otherwise it waits for the next batch.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Any

from zero2one.errors import UserError
from zero2one.serving.adapter import BaseAdapter
from zero2one.tasks.textgen.generate import (
    Outcome,
    TemplateChat,
    check_fits,
    context_window,
)


class LMEngine(TemplateChat, BaseAdapter):
    batched = False  # no micro-batcher in front: the engine batches concurrent decodes itself

    def __init__(self, model: Any, tokenizer: Any, name: str, *, max_batch: int = 16,
                 gather_seconds: float = 0.025, precision: str | None = None,
                 continuous: bool = True, max_batch_tokens: int | None = None,
                 workers: int = 1) -> None:
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.precision = precision
        self.continuous = continuous  # False: requests wait for the next batch (a baseline)
        self.max_batch, self.gather_seconds = max_batch, gather_seconds
        # the KV cache of a batch grows with rows × (longest prompt + max_tokens): a request
        # joins a batch only while that stays within the budget, and one alone over it is
        # refused up front, so memory is bounded by settings rather than by luck
        self.max_batch_tokens = max_batch_tokens or token_budget(model, workers)
        self._waiting: deque[Any] = deque()  # taken from the queue, waiting for room
        self._pending: queue.Queue[Any] = queue.Queue()
        self.batch_sizes: deque[int] = deque(maxlen=1000)  # recent batches, for tests and ops
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def warm(self) -> None:
        """Choose each batch size's precision and build its decoding step now (timing the
        candidates, fusing the weights: about a second for SmolLM2), not during the first
        requests of that size."""
        from zero2one.tasks.textgen.fast import batch_precision, default_precision, stepper_for

        precision = self.precision or default_precision(self.model)
        rows = 1
        while rows <= self.max_batch:
            stepper_for(self.model, batch_precision(self.model, precision, rows))
            rows *= 2

    def playground(self) -> dict[str, Any]:
        """A chat (a completion box for a model without a chat template), streamed."""
        chat = bool(self.template)
        return {"kind": "chat", "route": "/v1/chat/completions" if chat else "/v1/completions",
                "chat": chat, "max_tokens": 256, "temperature": 0.7,
                "context": getattr(self.model.config, "max_position_embeddings", None)}

    def count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    async def stream(self, prompt: str, settings: Any,
                     outcome: Outcome | None = None) -> AsyncIterator[str]:
        """Text pieces as generated; errors (a prompt too long, ...) raise before the first.
        ``outcome`` is filled in once the last piece is out."""
        from zero2one.tasks.textgen.batch import Row

        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        check_fits(self.model, len(ids), settings.max_new_tokens, budget_name="max_tokens")
        if len(ids) + settings.max_new_tokens > self.max_batch_tokens:
            raise UserError(f"prompt ({len(ids)} tokens) + max_tokens ({settings.max_new_tokens})"
                            f" is over this server's budget of {self.max_batch_tokens} tokens "
                            "decoded at once (--max-batch-tokens)")
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def emit(text: str) -> None:
            loop.call_soon_threadsafe(pieces.put_nowait, ("piece", text))

        row = Row(ids, settings, emit)
        self._ensure_worker()
        self._pending.put((row, loop, pieces))
        try:
            while True:
                kind, value = await pieces.get()
                if kind == "piece":
                    yield value
                elif kind == "end":
                    if outcome is not None:
                        outcome.finish_reason = row.finish or "stop"
                        outcome.completion_tokens = len(row.generated)
                    return
                else:
                    raise value
        finally:
            row.cancelled = True  # a caller that went away frees its row in the batch

    def close(self) -> None:
        """Stop the worker once the batch in progress is done."""
        if self._worker is not None and self._worker.is_alive():
            self._pending.put(None)
            self._worker.join(timeout=60)

    def _ensure_worker(self) -> None:
        with self._start_lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run, daemon=True, name="generate")
                self._worker.start()

    def _run(self) -> None:
        from zero2one.tasks.textgen.batch import Decoder

        decoder: Decoder | None = None
        callers: dict[int, tuple[Any, Any]] = {}  # id(row) -> (loop, pieces)
        closing = False
        while True:
            if decoder is None or not decoder.rows:
                if closing and not self._waiting:  # those waiting for room are answered first
                    return
                first = self._waiting.popleft() if self._waiting else self._pending.get()
                if first is None:  # close()
                    return
                arrived, closed = self._gather([first], self.gather_seconds)
                closing = closing or closed
                decoder = Decoder(self.model, self.tokenizer, precision=self.precision)
            elif decoder.joins and self.continuous and not closing:  # join at this step
                arrived, closing = self._gather([], 0.0, room=self.max_batch - len(decoder.rows),
                                                running=decoder.rows)  # not closing here
            else:
                arrived = []
            if arrived:
                self._admit(decoder, arrived, callers)
            if not decoder.rows:
                continue
            self.batch_sizes.append(len(decoder.rows))
            try:
                ended = decoder.step()
            except BaseException as exc:  # every caller of the batch hears of it
                for row in decoder.rows:
                    self._tell(callers.pop(id(row), None), ("error", exc))
                decoder = None
                continue
            for row in ended:
                self._tell(callers.pop(id(row), None), ("end", None))

    def _gather(self, batch: list[Any], seconds: float, *, room: int | None = None,
                running: Sequence[Any] = ()) -> tuple[list[Any], bool]:
        """Queued requests, waiting up to ``seconds`` for more (``room``: at most that many,
        and within the token budget beside the ``running`` rows); returns them and whether
        close() was called. A request that does not fit now keeps its turn for the next batch."""
        room = self.max_batch if room is None else room
        costs = [_cost(row) for row in running] + [_cost(item[0]) for item in batch]
        deadline = time.monotonic() + seconds
        while len(batch) < room:
            if self._waiting:
                item = self._waiting.popleft()
            else:
                try:
                    item = self._pending.get(timeout=max(0.0, deadline - time.monotonic())
                                             ) if seconds else self._pending.get_nowait()
                except queue.Empty:
                    break
            if item is None:  # close(): finish the rows taken so far first
                return batch, True
            cost = _cost(item[0])
            if costs and (len(costs) + 1) * max(*costs, cost) > self.max_batch_tokens:
                self._waiting.appendleft(item)
                break
            costs.append(cost)
            batch.append(item)
        return batch, False

    def _admit(self, decoder: Any, arrived: list[Any],
               callers: dict[int, tuple[Any, Any]]) -> None:
        try:
            decoder.add([row for row, _, _ in arrived])
        except BaseException as exc:  # the prompts' forward failed: their callers hear of it
            for _, loop, pieces in arrived:
                self._tell((loop, pieces), ("error", exc))
            return
        for row, loop, pieces in arrived:
            callers[id(row)] = (loop, pieces)

    @staticmethod
    def _tell(caller: tuple[Any, Any] | None, message: tuple[str, Any]) -> None:
        if caller is not None:
            loop, pieces = caller
            loop.call_soon_threadsafe(pieces.put_nowait, message)


def _cost(row: Any) -> int:
    """The tokens a row holds in the KV cache at most."""
    return len(row.ids) + int(row.settings.max_new_tokens)


def token_budget(model: Any, workers: int = 1) -> int:
    """The default of --max-batch-tokens: the tokens whose float32 KV cache fills a quarter of
    this machine's memory (its cgroup limit, in a container) shared by the workers; at least one
    full context window, at most sixteen."""
    import os
    from pathlib import Path

    config = model.config
    layers = int(getattr(config, "num_hidden_layers", 12))
    heads = int(getattr(config, "num_attention_heads", 12))
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    per_token = layers * 2 * kv_heads * head_dim * 4
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            memory = min(memory, int(limit))
    except OSError:
        pass
    window = context_window(model)
    budget = memory // 4 // max(1, workers) // per_token
    return int(max(window, min(budget, 16 * window)))

