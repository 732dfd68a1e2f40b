"""llama.cpp as a decoding engine (``zero2one serve|generate MODEL --engine llama.cpp``).

The model's GGUF file — exported by ``zero2one export --format gguf``, the built-in SmolLM2's,
or any ``.gguf`` — runs in llama.cpp through its Python binding (``llama-cpp-python``, the
``llamacpp`` extra; it compiles llama.cpp at install). The engine offers what the
OpenAI-compatible routes use of zero2one's own (``stream``, ``count``, ``chat_prompt``), so the
routes, limits, auth, metrics, moderation and feedback are the same. One request decodes at a
time (the binding's ``Llama`` holds one sequence); requests queue for it in arrival order.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Generator
from pathlib import Path
from typing import Any

from zero2one.errors import UserError
from zero2one.serving.adapter import BaseAdapter
from zero2one.tasks.textgen.constrained import ArrayMatcher, grammar_of
from zero2one.tasks.textgen.generate import Outcome, StopScanner

INSTALL = ("the llama.cpp engine needs llama-cpp-python, which compiles llama.cpp when it is "
           "installed (10 to 20 minutes on 2 cores): pip install 'zero2one[llamacpp]'")


def require() -> None:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        raise UserError(INSTALL) from None


class LlamaCppEngine(BaseAdapter):
    batched = False  # no micro-batcher in front: requests queue for the one decoder

    def __init__(self, gguf: Path, name: str, *, threads: int | None = None) -> None:
        require()
        from llama_cpp import Llama

        self.name, self.path = name, gguf
        self.llm = Llama(model_path=str(gguf), n_ctx=0, n_threads=threads or _cores(),
                         n_threads_batch=threads or _cores(), verbose=False)
        self.context = self.llm.n_ctx()
        metadata = self.llm.metadata
        self.template = metadata.get("tokenizer.chat_template")
        self.eos = self.llm.detokenize([self.llm.token_eos()]).decode("utf-8", "replace")
        self.bos = self.llm.detokenize([self.llm.token_bos()]).decode("utf-8", "replace")
        self._lock = threading.Lock()
        self._lltokenizer: Any = None

    def playground(self) -> dict[str, Any]:
        return {"kind": "chat", "route": "/v1/chat/completions" if self.template
                else "/v1/completions", "chat": bool(self.template), "max_tokens": 256,
                "temperature": 0.7, "context": self.context}

    def tokens(self, text: str) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def count(self, text: str) -> int:
        return len(self.tokens(text))

    def chat_prompt(self, messages: list[dict[str, Any]],
                    tools: list[dict[str, Any]] | None = None) -> str:
        """The conversation through the GGUF's own chat template (``tools``: for a template
        that renders them)."""
        if not self.template:
            raise UserError("this model has no chat template; use /v1/completions")
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        formatter = Jinja2ChatFormatter(template=self.template, eos_token=self.eos,
                                        bos_token=self.bos)
        said: Any = messages  # the binding's TypedDicts: the same keys
        listed: Any = tools
        return str(formatter(messages=said, tools=listed).prompt)

    def checked(self, prompt: str, settings: Any) -> list[int]:
        """The prompt's token ids, if it and ``max_tokens`` fit the context window."""
        ids = self.tokens(prompt)
        if not ids:
            raise UserError("the prompt is empty")
        if len(ids) + settings.max_new_tokens > self.context:
            raise UserError(f"prompt ({len(ids)} tokens) + max_tokens "
                            f"({settings.max_new_tokens}) exceeds the context window of "
                            f"{self.context}")
        return ids

    def generate(self, prompt: str, settings: Any,
                 outcome: Outcome | None = None) -> Generator[str, None, None]:
        """Text pieces as llama.cpp samples the tokens (stop strings excluded, never half a
        character), on this thread; the caller holds the decoder until the iterator is closed.
        The tokens come from the binding's ``generate`` (llama.cpp's own sampler chain) and are
        counted and decoded here, so ``outcome`` is exact: its completion-API stream tells
        neither the token count nor, when the limit cuts a character, what it dropped."""
        import codecs
        import random

        ids = self.checked(prompt, settings)
        greedy = settings.temperature == 0
        self.llm.set_seed(settings.seed if settings.seed is not None
                          else random.randrange(2**31))
        matcher = self._matcher(settings)
        processors: Any = None if matcher is None else [matcher.mask]
        tokens = self.llm.generate(
            ids, temp=0.0 if greedy else settings.temperature,
            top_p=1.0 if greedy else settings.top_p, top_k=1 if greedy else settings.top_k or 0,
            repeat_penalty=settings.repetition_penalty,
            logits_processor=processors)
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        scanner = StopScanner(list(settings.stop or []))
        done, history = Outcome("length", 0), list(ids)
        try:
            for token in tokens:
                if self._ends(token):
                    done.finish_reason = "stop"
                    break
                done.completion_tokens += 1
                if matcher is not None:
                    matcher.advance(token)
                text = utf8.decode(self.llm.detokenize([token], prev_tokens=history))
                history.append(token)
                if out := scanner.feed(text):
                    yield out
                if scanner.stopped:
                    done.finish_reason = "stop"
                    break
                if done.completion_tokens >= settings.max_new_tokens:
                    break
        finally:
            tokens.close()
        # bytes of a character cut by the limit stay in the decoder: never emitted
        if out := scanner.finish():
            yield out
        if outcome is not None:
            outcome.finish_reason, outcome.completion_tokens = (done.finish_reason,
                                                                done.completion_tokens)

    def _matcher(self, settings: Any) -> Any:
        """The request's grammar (a JSON schema's, tool calls') as token masks, or None. The
        binding's llama.cpp has no llguidance: its own JSON-schema grammars let a string hold
        raw new lines (invalid JSON), so the masks come from llguidance here too."""
        grammar = grammar_of(settings)
        if grammar is None:
            return None
        if self._lltokenizer is None:  # ~1 s for a 49k-token vocabulary: once per model
            import warnings

            from llguidance.llamacpp import lltokenizer_from_vocab

            with warnings.catch_warnings():  # it asks the binding's deprecated name per token
                warnings.simplefilter("ignore", DeprecationWarning)
                self._lltokenizer = lltokenizer_from_vocab(self.llm._model.vocab,
                                                           n_vocab=self.llm.n_vocab())
        return ArrayMatcher(self._lltokenizer, grammar, self.llm.n_vocab())

    def _ends(self, token: int) -> bool:
        """An end-of-generation token (end of text, end of turn, ...), as llama.cpp says."""
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self.llm._model.vocab, token))

    async def stream(self, prompt: str, settings: Any,
                     outcome: Outcome | None = None) -> AsyncIterator[str]:
        """As zero2one's engine: pieces as generated, errors before the first; ``outcome``
        filled in once the last piece is out."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        gone = threading.Event()
        self.checked(prompt, settings)  # here, so that errors come before any work

        def run() -> None:
            with self._lock:  # one sequence at a time, in arrival order
                try:
                    generated = self.generate(prompt, settings, outcome)
                    for piece in generated:
                        if gone.is_set():  # the caller went away: stop decoding
                            generated.close()
                            break
                        loop.call_soon_threadsafe(pieces.put_nowait, ("piece", piece))
                except BaseException as exc:  # the caller hears of it
                    loop.call_soon_threadsafe(pieces.put_nowait, ("error", exc))
                    return
            loop.call_soon_threadsafe(pieces.put_nowait, ("end", None))

        threading.Thread(target=run, daemon=True, name="llama.cpp").start()
        try:
            while True:
                kind, value = await pieces.get()
                if kind == "piece":
                    yield value
                elif kind == "end":
                    return
                else:
                    raise value
        finally:
            gone.set()

    def close(self) -> None:
        with self._lock:  # the request decoding now finishes first
            self.llm.close()


def _cores() -> int:
    """llama.cpp's threads: the cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
