"""Language models behind the OpenAI-compatible routes: one generation at a time per process
(on a CPU one already uses every core), streamed from the generating thread to the event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

from zero2one.errors import UserError


class LMEngine:
    def __init__(self, model: Any, tokenizer: Any, name: str) -> None:
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self._lock = threading.Lock()

    def count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        if not getattr(self.tokenizer, "chat_template", None):
            raise UserError("this model has no chat template; use /v1/completions")
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                  tokenize=False)

    async def stream(self, prompt: str, settings: Any) -> AsyncIterator[str]:
        """Text pieces as generated; errors (a prompt too long, ...) raise before the first."""
        from zero2one.tasks.textgen.generate import stream

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        window = int(getattr(self.model.config, "max_position_embeddings", 2048))
        if not ids:
            raise UserError("the prompt is empty")
        if len(ids) + settings.max_new_tokens > window:
            raise UserError(f"prompt ({len(ids)} tokens) + max_tokens "
                            f"({settings.max_new_tokens}) exceeds the context window of {window}")

        gone = threading.Event()  # the caller stopped listening: stop generating

        def work() -> None:
            try:
                with self._lock:
                    pieces = stream(self.model, self.tokenizer, prompt, settings=settings,
                                    raw=True)
                    for piece in pieces:
                        if gone.is_set():
                            pieces.close()  # halts generation at the next token
                            break
                        loop.call_soon_threadsafe(queue.put_nowait, ("piece", piece))
                loop.call_soon_threadsafe(queue.put_nowait, ("end", None))
            except BaseException as exc:
                loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))

        threading.Thread(target=work, daemon=True, name="generate").start()
        try:
            while True:
                kind, value = await queue.get()
                if kind == "piece":
                    yield value
                elif kind == "end":
                    return
                else:
                    raise value
        finally:
            gone.set()
