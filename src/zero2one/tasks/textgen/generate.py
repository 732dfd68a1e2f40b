"""Streaming generation with sampling settings validated up front.

    for piece in stream(model, tokenizer, "Hello", settings=Sampling(max_new_tokens=20)):
        print(piece, end="")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from zero2one.errors import UserError
from zero2one.recipe import Strict, format_validation_error
from zero2one.tasks.textgen.constrained import check_grammar, check_schema

# OpenAI's range, for the CLI and the server alike
TEMPERATURE_MAX = 2.0


class Sampling(Strict):
    max_new_tokens: int = Field(128, ge=1, le=8192, description="Most tokens to generate.")
    # 0 means greedy decoding: the most likely token every step
    temperature: float = Field(0.7, ge=0, le=TEMPERATURE_MAX,
                               description="Sampling temperature; 0: greedy.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling mass.")
    top_k: int = Field(50, ge=0, le=100_000, description="Keep the k most likely; 0: all.")
    repetition_penalty: float = Field(1.0, ge=0.5, le=3, description="Above 1 discourages "
                                      "repeats.")
    stop: list[str] = Field(default_factory=list, description="Stop at any of these strings.")
    seed: int | None = Field(None, ge=0, description="Seed for sampling (reproducible output).")
    json_schema: dict[str, Any] | None = Field(
        None, description="Answer with JSON valid under this JSON Schema ({\"type\": "
        "\"object\"}: any object); decoding is constrained, so it always is.")
    # an llguidance (Lark) grammar the answer follows: set by the server for tool calls
    grammar: str | None = Field(None, description="An llguidance grammar for the answer.")

    @model_validator(mode="after")
    def _check(self) -> Sampling:
        if any(not s for s in self.stop):
            raise ValueError("stop strings must not be empty")
        if len(self.stop) > 16:
            raise ValueError("at most 16 stop strings")
        if self.json_schema is not None and self.grammar is not None:
            raise ValueError("a JSON schema or a grammar, not both")
        return self

    @field_validator("json_schema")
    @classmethod
    def _schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            check_schema(value)
        return value

    @field_validator("grammar")
    @classmethod
    def _grammar(cls, value: str | None) -> str | None:
        if value is not None:
            check_grammar(value)
        return value


@dataclass
class Outcome:
    """How one generation ended, filled in by the engine once its last piece is out: the finish
    reason (``stop``: an end token or a stop string; ``length``: ``max_new_tokens`` reached) and
    the tokens generated — counted as decoded, never by tokenizing the text again (a character
    cut by the token limit is not in the text, but its tokens were generated)."""

    finish_reason: str = "stop"
    completion_tokens: int = 0


class StopScanner:
    """Text as it grows, cut at the earliest stop string: :meth:`feed` returns what is safe to
    emit, holding back a tail that could still become a stop string; :meth:`finish` returns
    that tail once the text has ended without one."""

    def __init__(self, stops: list[str]) -> None:
        self.stops, self.text, self.sent, self.stopped = list(stops), "", 0, False

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        self.text += piece
        found = [at for stop in self.stops
                 if (at := self.text.find(stop, max(0, self.sent - len(stop) + 1))) >= 0]
        if found:
            self.stopped = True
            return self._emit(min(found))
        hold = max((len(stop) - 1 for stop in self.stops), default=0)
        return self._emit(len(self.text) - hold)

    def finish(self) -> str:
        return "" if self.stopped else self._emit(len(self.text))

    def _emit(self, upto: int) -> str:
        if upto <= self.sent:
            return ""
        out, self.sent = self.text[self.sent: upto], upto
        return out


class TemplateChat:
    """A conversation through a transformers tokenizer's chat template, for the serving
    engines that hold one (``self.tokenizer``)."""

    tokenizer: Any

    @property
    def template(self) -> Any:
        """The chat template (None: the model has none)."""
        return getattr(self.tokenizer, "chat_template", None)

    def chat_prompt(self, messages: list[dict[str, Any]],
                    tools: list[dict[str, Any]] | None = None) -> str:
        """The conversation through the model's chat template (``tools``: for a template
        that renders them)."""
        if not self.template:
            raise UserError("this model has no chat template; use /v1/completions")
        return str(self.tokenizer.apply_chat_template(messages, tools=tools,
                                                      add_generation_prompt=True,
                                                      tokenize=False))


def sampling(**values: Any) -> Sampling:
    """Build :class:`Sampling`, turning validation errors into one-line user errors."""
    try:
        return Sampling(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, Sampling)) from None


def encode(tokenizer: Any, prompt: str | list[dict[str, Any]], *, chat: bool,
           tools: list[dict[str, Any]] | None = None) -> Any:
    """Token ids (1, T) for a plain prompt, or a chat through the chat template: one turn, or
    the messages given (``tools``: for a template that renders them)."""
    if chat:
        if not getattr(tokenizer, "chat_template", None):
            raise UserError("this model has no chat template; drop --chat")
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        return tokenizer.apply_chat_template(
            messages, tools=tools, add_generation_prompt=True, return_tensors="pt",
            return_dict=True)["input_ids"]
    if not isinstance(prompt, str):
        raise TypeError("messages need chat=True")
    return tokenizer(prompt, return_tensors="pt")["input_ids"]


def context_window(model: Any) -> int:
    return int(getattr(model.config, "max_position_embeddings", 2048))


def check_fits(model: Any, prompt_tokens: int, max_new_tokens: int, *,
               budget_name: str = "max_new_tokens") -> None:
    """A non-empty prompt that leaves room for ``max_new_tokens`` in the context window."""
    if prompt_tokens == 0:
        raise UserError("the prompt is empty")
    window = context_window(model)
    if prompt_tokens + max_new_tokens > window:
        raise UserError(f"prompt ({prompt_tokens} tokens) + {budget_name} ({max_new_tokens}) "
                        f"exceeds the context window of {window}")
