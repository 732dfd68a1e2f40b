"""Batched decoding: several prompts, one forward pass per step.

On a CPU a small model's decoding step is bound by reading the weights, so a step for eight
sequences costs little more than a step for one; running concurrent requests as one batch is
what lifts aggregate throughput. Prompts are left-padded; each row keeps its own sampling
settings, random generator, stop strings and end, and streams its text as it grows.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from zero2one.errors import UserError
from zero2one.tasks.textgen.constrained import Matcher, grammar_of
from zero2one.tasks.textgen.fast import (
    KV,
    batch_precision,
    default_precision,
    stepper_for,
    supports,
)
from zero2one.tasks.textgen.generate import (
    Outcome,
    Sampling,
    StopScanner,
    check_fits,
    encode,
    sampling,
)

log = logging.getLogger(__name__)


@dataclass
class Row:
    ids: list[int]  # prompt token ids
    settings: Sampling
    emit: Callable[[str], None]  # receives each new piece of text
    generated: list[int] = field(default_factory=list)
    finish: str | None = None  # "stop" or "length" once done
    cut: bool = False  # ended by a stop string: nothing after it is emitted
    cancelled: bool = False  # set from another thread when the caller went away
    generator: torch.Generator | None = None
    matcher: Matcher | None = None  # where the answer is in its JSON schema, if it has one
    scanner: StopScanner = field(init=False)  # the decoded text, cut at a stop string

    def __post_init__(self) -> None:
        self.scanner = StopScanner(self.settings.stop)

    @property
    def text(self) -> str:
        """The text emitted so far."""
        return self.scanner.text[: self.scanner.sent]


def _pick(logits: torch.Tensor, row: Row, history: torch.Tensor) -> int:
    """The next token of one row: (V,) logits -> id."""
    s = row.settings
    if s.repetition_penalty != 1.0 and history.numel():
        seen = logits[history]
        logits = logits.clone()
        logits[history] = torch.where(seen > 0, seen / s.repetition_penalty,
                                      seen * s.repetition_penalty)
    if s.temperature == 0:
        return int(logits.argmax())
    logits = logits / s.temperature
    if s.top_k:
        kth = torch.topk(logits, min(s.top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if s.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, 0) - sorted_probs < s.top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
    return int(torch.multinomial(probs, 1, generator=row.generator))


def _advance_text(row: Row, tokenizer: Any) -> None:
    """Emit the new part of the decoded text, holding back an incomplete character and any
    tail that could still become a stop string (:class:`.generate.StopScanner`, as the
    llama.cpp engine does); a stop string ends the row."""
    text = tokenizer.decode(row.generated, skip_special_tokens=True)
    if not text.endswith("\ufffd"):  # not half of a multi-byte character
        _feed(row, text)


def _flush(row: Row, tokenizer: Any) -> None:
    """Emit what was held back once the row has ended (not past a stop string, and not the
    bytes of a character the token limit cut in half)."""
    if row.cut:
        return
    _feed(row, tokenizer.decode(row.generated, skip_special_tokens=True).rstrip("\ufffd"))
    if not row.cut and (tail := row.scanner.finish()):
        row.emit(tail)


def _feed(row: Row, text: str) -> None:
    """Hand the scanner what the decoded text grew by; emit what it lets out."""
    if piece := row.scanner.feed(text[len(row.scanner.text):]):
        row.emit(piece)
    if row.scanner.stopped:
        row.finish, row.cut = "stop", True


def generate_rows(model: Any, tokenizer: Any, rows: list[Row], *,
                  precision: str | None = None) -> None:
    """Decode every row to its end; text goes out through each row's ``emit``. ``precision``:
    the weights of the lean step for Llama-family models (default: :data:`.fast.
    DEFAULT_PRECISION`)."""
    for _ in decode_steps(model, tokenizer, rows, precision=precision):
        pass


def complete(model: Any, tokenizer: Any, prompts: list[list[int]], *, max_new_tokens: int,
             batch_size: int = 16, precision: str | None = None,
             on_step: Callable[[], None] | None = None) -> list[str]:
    """Greedy completions of token-id prompts, decoded ``batch_size`` at a time; ``on_step``
    is called after each decoding step (progress)."""
    settings = Sampling(max_new_tokens=max_new_tokens, temperature=0)
    rows = [Row(ids, settings, emit=lambda _: None) for ids in prompts]
    for start in range(0, len(rows), batch_size):
        for _ in decode_steps(model, tokenizer, rows[start: start + batch_size],
                              precision=precision):
            if on_step is not None:
                on_step()
    return [row.text for row in rows]


def decode_steps(model: Any, tokenizer: Any, rows: list[Row], *,
                 precision: str | None = None) -> Iterator[None]:
    """:func:`generate_rows` one token at a time: yields after each step, so a caller can
    decode on its own thread (with OpenMP, a step on the main thread ran about twice as fast
    here as the same step on a second thread) and stop whenever it likes."""
    decoder = Decoder(model, tokenizer, precision=precision)
    decoder.add(rows)
    while decoder.rows:
        decoder.step()
        yield
    decoder.close()


class Decoder:
    """A running batch: rows join between steps (:meth:`add`) and leave as they end.

    With the lean step (Llama-family models on the CPU, :mod:`.fast`) a row that ends leaves
    the batch at once and a new row joins at the next step: its prompt runs through
    transformers' forward and its keys and values are placed in the shared cache, right-aligned
    to the step being written (every row's slots are its own: the attention mask says which
    are filled, and positions are per row). Other models decode the rows given to the first
    :meth:`add` to their end (:attr:`joins` is False)."""

    def __init__(self, model: Any, tokenizer: Any, *, precision: str | None = None) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.precision = precision or default_precision(model)
        configured = getattr(model.generation_config, "eos_token_id", None)
        eos = set(configured if isinstance(configured, list) else [configured])
        eos |= {tokenizer.eos_token_id}
        eos.discard(None)
        self.eos = eos
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.rows: list[Row] = []
        self.joins = supports(model)
        self.stepper: Any = None
        self.kv: Any = None  # the stepper's cache, or transformers' (``cache``)
        self.cache: Any = None
        self.mask = torch.zeros((0, 0), dtype=torch.long)
        self.last = torch.zeros(0, dtype=torch.long)
        self.logits = torch.zeros(0)

    # ---- rows in ----------------------------------------------------------------------------

    def add(self, rows: list[Row]) -> None:
        """Run the rows' prompts and join them to the batch (before the next step)."""
        if not rows:
            return
        if self.rows and not self.joins:
            raise RuntimeError("this model's decoder does not take rows during a batch")
        for row in rows:
            if row.settings.seed is not None:
                row.generator = torch.Generator().manual_seed(row.settings.seed)
            if row.matcher is None and (grammar := grammar_of(row.settings)) is not None:
                row.matcher = Matcher(self.tokenizer, grammar,
                                      vocab=int(self.model.config.vocab_size),
                                      eos=tuple(sorted(self.eos)))
        width = max(len(r.ids) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):  # left padding: every row's last prompt token aligned
            input_ids[i, width - len(row.ids):] = torch.tensor(row.ids)
            mask[i, width - len(row.ids):] = 1
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        device = self.model.device
        with torch.no_grad():
            out = self.model(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                             position_ids=positions.to(device), use_cache=True,
                             logits_to_keep=1)
        logits = out.logits[:, -1, :].float().cpu()
        budget = max(r.settings.max_new_tokens for r in rows)
        if not self.rows:
            self._start(rows, out.cache, mask, positions[:, -1], logits, budget)
        else:
            self._join(rows, out.cache, mask, positions[:, -1], logits, budget)

    def _start(self, rows: list[Row], cache: Any, mask: torch.Tensor, last: torch.Tensor,
               logits: torch.Tensor, budget: int) -> None:
        self.rows, self.mask, self.last, self.logits = list(rows), mask, last, logits
        self.stepper = self._stepper()
        if self.stepper is not None:
            self.kv = self.stepper.adopt(cache, budget)
        else:
            self.cache = cache

    def _join(self, rows: list[Row], cache: Any, mask: torch.Tensor, last: torch.Tensor,
              logits: torch.Tensor, budget: int) -> None:
        new = self.stepper.adopt(cache, 0)
        filled, width = self.kv.length, new.length
        shift = max(0, width - filled)  # prompts longer than the batch so far: room on the left
        length = filled + shift
        room = max([budget, *(r.settings.max_new_tokens - len(r.generated) for r in self.rows)])
        capacity = max(self.kv.keys[0].shape[2] + shift, length + room + 1)
        keys, values = [], []
        for old_k, old_v, new_k, new_v in zip(self.kv.keys, self.kv.values, new.keys,
                                              new.values, strict=True):
            batch, heads, _, dim = old_k.shape
            k = old_k.new_zeros((batch + len(rows), heads, capacity, dim))
            v = old_v.new_zeros(k.shape)
            k[:batch, :, shift: length] = old_k[:, :, :filled]
            v[:batch, :, shift: length] = old_v[:, :, :filled]
            k[batch:, :, length - width: length] = new_k[:, :, :width]
            v[batch:, :, length - width: length] = new_v[:, :, :width]
            keys.append(k)
            values.append(v)
        self.kv = KV(keys, values, length)
        joined = torch.zeros((len(rows), length), dtype=torch.long)
        joined[:, length - width:] = mask
        self.mask = torch.cat([torch.nn.functional.pad(self.mask, (shift, 0)), joined])
        self.last = torch.cat([self.last, last])
        self.logits = torch.cat([self.logits, logits])
        self.rows += rows

    # ---- one step ---------------------------------------------------------------------------

    def step(self) -> list[Row]:
        """Pick each row's next token (emitting its text), then run the model once for the
        rows still going; returns the rows that ended in this step."""
        next_ids = torch.full((len(self.rows),), self.pad, dtype=torch.long)
        ended: list[Row] = []
        for i, row in enumerate(self.rows):
            if row.finish:
                continue
            if row.cancelled:
                row.finish, row.cut = "stop", True
            else:
                token = self._next(i, row)
                next_ids[i] = token
            if row.finish:
                _flush(row, self.tokenizer)
                ended.append(row)
        if all(r.finish for r in self.rows):
            self.rows = []
            return ended
        if self.stepper is not None:
            keep = [i for i, r in enumerate(self.rows) if not r.finish]
            if len(keep) < len(self.rows):
                self._keep(keep)
                next_ids = next_ids[keep]
            self.stepper = self._stepper()  # the batch's size may have changed
            self.mask = torch.cat([self.mask, torch.ones((len(self.rows), 1),
                                                         dtype=torch.long)], dim=1)
            self.last = self.last + 1
            self._room()
            self.logits = self.stepper.step(self.kv, next_ids, self.mask, self.last)
            return ended
        self.mask = torch.cat([self.mask, torch.tensor([[0 if r.finish else 1]
                                                        for r in self.rows])], dim=1)
        self.last = self.last + 1
        device = self.model.device
        with torch.no_grad():
            out = self.model(input_ids=next_ids[:, None].to(device),
                             attention_mask=self.mask.to(device),
                             position_ids=self.last[:, None].to(device), cache=self.cache,
                             use_cache=True)
        self.cache, self.logits = out.cache, out.logits[:, -1, :].float().cpu()
        return ended

    def _stepper(self) -> Any:
        """The lean step for this many rows: bfloat16 weights pay off for one row; for
        several, where this CPU multiplies them faster (:func:`.fast.batch_precision`). The
        cache is float32 either way, so the precision may change between steps."""
        return stepper_for(self.model, batch_precision(self.model, self.precision,
                                                       len(self.rows)))

    def _next(self, i: int, row: Row) -> int:
        history = torch.tensor(row.ids + row.generated, dtype=torch.long)
        logits = self.logits[i]
        if row.matcher is not None:  # only the tokens that keep the answer valid
            row.matcher.mask(logits)
        token = _pick(logits, row, history)
        if token in self.eos:
            row.finish = "stop"
            return token
        row.generated.append(token)
        _advance_text(row, self.tokenizer)
        if row.matcher is not None:
            row.matcher.advance(token)
            if row.matcher.error:  # not with the mask applied: said, and the row ends
                log.error("constrained decoding stopped: %s", row.matcher.error)
            if row.matcher.done and not row.finish:
                row.finish = "stop"
        if not row.finish and len(row.generated) >= row.settings.max_new_tokens:
            row.finish = "length"
        return token

    def _keep(self, keep: list[int]) -> None:
        """Drop the rows that ended from the batch (and slots no remaining row uses)."""
        index = torch.tensor(keep)
        self.rows = [self.rows[i] for i in keep]
        self.mask, self.last = self.mask[index], self.last[index]
        used = self.mask.any(0).nonzero()
        first = int(used[0]) if len(used) else self.mask.shape[1]
        self.kv.keys = [k[index, :, first:] for k in self.kv.keys]
        self.kv.values = [v[index, :, first:] for v in self.kv.values]
        self.kv.length -= first
        self.mask = self.mask[:, first:]

    def _room(self) -> None:
        """Make sure the cache has a free slot for the step about to be written."""
        if self.kv.length < self.kv.keys[0].shape[2]:
            return
        extra = max(16, max(r.settings.max_new_tokens - len(r.generated) for r in self.rows))
        for layer, (k, v) in enumerate(zip(self.kv.keys, self.kv.values, strict=True)):
            pad = (0, 0, 0, extra)
            self.kv.keys[layer] = torch.nn.functional.pad(k, pad)
            self.kv.values[layer] = torch.nn.functional.pad(v, pad)

    def close(self) -> None:
        """End every row still in the batch (as ``length``), flushing its held-back text."""
        for row in self.rows:
            if not row.finish:
                row.finish = "length"
                _flush(row, self.tokenizer)
        self.rows = []


def stream(model: Any, tokenizer: Any, prompt: str | list[dict[str, Any]], *,
           settings: Sampling, chat: bool = False, precision: str | None = None,
           outcome: Outcome | None = None,
           tools: list[dict[str, Any]] | None = None) -> Iterator[str]:
    """Generated text, piece by piece, as the model produces it (stop strings excluded; never
    half a character). ``outcome`` is filled in once the last piece is out. A chat's
    ``prompt`` may be its messages (``tools``: for a template that renders them).

    One row of the server's decoding loop (:func:`zero2one.tasks.textgen.batch.decode_steps`,
    with its lean step for Llama-family models), run on the caller's thread; a consumer that
    stops reading stops the decoding."""
    ids = encode(tokenizer, prompt, chat=chat, tools=tools)
    check_fits(model, ids.shape[1], settings.max_new_tokens)
    pieces: list[str] = []
    row = Row(ids[0].tolist(), settings, emit=pieces.append)
    for _ in decode_steps(model, tokenizer, [row], precision=precision):
        if pieces:
            yield from (p for p in pieces if p)
            pieces.clear()
    yield from (p for p in pieces if p)  # held back until the end
    if outcome is not None:
        outcome.finish_reason = row.finish or "stop"
        outcome.completion_tokens = len(row.generated)


def answer(model: Any, tokenizer: Any, prompt: str, *, chat: bool, response_format: Any = None,
           **options: Any) -> Any:
    """The whole answer to ``prompt``: text; or, under ``response_format`` (a JSON schema, or a
    pydantic model class), the parsed JSON (a dict, or an instance of the model). An answer the
    token budget cut is a :class:`UserError`, never half a document."""
    from pydantic import BaseModel

    schema: dict[str, Any] | None = None
    parsed: type[BaseModel] | None = None
    if isinstance(response_format, type) and issubclass(response_format, BaseModel):
        parsed, schema = response_format, closed(response_format.model_json_schema())
    elif isinstance(response_format, dict):
        schema = response_format
    elif response_format is not None:
        raise UserError("response_format: a JSON schema (a dict) or a pydantic model class; "
                        f"got {type(response_format).__name__}")
    settings = sampling(**options, json_schema=schema)
    outcome = Outcome()
    text = "".join(stream(model, tokenizer, prompt, settings=settings, chat=chat,
                          outcome=outcome))
    if schema is None:
        return text
    if outcome.finish_reason == "length":
        raise UserError(f"the answer did not finish within max_new_tokens="
                        f"{settings.max_new_tokens}; raise it")
    if parsed is not None:
        return parsed.model_validate_json(text)
    return json.loads(text)


def closed(schema: Any) -> Any:
    """A pydantic model's JSON schema with every object closed to the fields it declares (as
    OpenAI's client makes it): keys the model would ignore are not generated."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    made = {key: closed(value) for key, value in schema.items()}
    if made.get("type") == "object" and "properties" in made:
        made.setdefault("additionalProperties", False)
    return made
