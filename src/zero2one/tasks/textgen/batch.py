"""Batched decoding: several prompts, one forward pass per step.

On a CPU a small model's decoding step is bound by reading the weights, so a step for eight
sequences costs little more than a step for one; running concurrent requests as one batch is
what lifts aggregate throughput. Prompts are left-padded; each row keeps its own sampling
settings, random generator, stop strings and end, and streams its text as it grows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from zero2one.tasks.textgen.fast import DEFAULT_PRECISION, stepper_for
from zero2one.tasks.textgen.generate import Sampling


@dataclass
class Row:
    ids: list[int]  # prompt token ids
    settings: Sampling
    emit: Callable[[str], None]  # receives each new piece of text
    generated: list[int] = field(default_factory=list)
    text: str = ""  # emitted so far
    finish: str | None = None  # "stop" or "length" once done
    cut: bool = False  # ended by a stop string: nothing after it is emitted
    cancelled: bool = False  # set from another thread when the caller went away
    generator: torch.Generator | None = None


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
    tail that could still become a stop string; a stop string ends the row."""
    text = tokenizer.decode(row.generated, skip_special_tokens=True)
    if text.endswith("\ufffd"):  # half of a multi-byte character
        return
    for stop in row.settings.stop:
        at = text.find(stop, max(0, len(row.text) - len(stop)))
        if at >= 0:
            if at > len(row.text):
                row.emit(text[len(row.text): at])
            row.text = text[:at]
            row.finish, row.cut = "stop", True
            return
    hold = max((len(s) - 1 for s in row.settings.stop), default=0)
    ready = len(text) - hold
    if ready > len(row.text):
        row.emit(text[len(row.text): ready])
        row.text = text[:ready]


def _flush(row: Row, tokenizer: Any) -> None:
    """Emit what was held back once the row has ended (not past a stop string)."""
    if row.cut:
        return
    text = tokenizer.decode(row.generated, skip_special_tokens=True)
    if len(text) > len(row.text):
        row.emit(text[len(row.text):])
        row.text = text


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
    device = model.device
    configured = getattr(model.generation_config, "eos_token_id", None)
    eos = set(configured if isinstance(configured, list) else [configured])
    eos |= {tokenizer.eos_token_id}
    eos.discard(None)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for row in rows:
        if row.settings.seed is not None:
            row.generator = torch.Generator().manual_seed(row.settings.seed)
    width = max(len(r.ids) for r in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):  # left padding: every row's last prompt token is aligned
        input_ids[i, width - len(row.ids):] = torch.tensor(row.ids)
        mask[i, width - len(row.ids):] = 1
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():  # not around the yields: grad mode would leak into the caller
        out = model(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                    position_ids=positions.to(device), use_cache=True, logits_to_keep=1)
    cache, logits = out.cache, out.logits[:, -1, :].float().cpu()
    last = positions[:, -1]
    budget = max(r.settings.max_new_tokens for r in rows)
    # a lean step for Llama-family models on the CPU; None: transformers' forward. bfloat16
    # weights pay off for one row; several rows share float32 matrix products (see .fast)
    precision = precision or DEFAULT_PRECISION
    stepper = stepper_for(model, precision if len(rows) == 1 else "float32")
    kv = stepper.adopt(cache, budget) if stepper is not None else None
    for _ in range(budget):
        next_ids = torch.full((len(rows),), pad, dtype=torch.long)
        for i, row in enumerate(rows):
            if row.cancelled and not row.finish:
                row.finish, row.cut = "stop", True
            if row.finish:
                continue
            history = torch.tensor(row.ids + row.generated, dtype=torch.long)
            token = _pick(logits[i], row, history)
            next_ids[i] = token
            if token in eos:
                row.finish = "stop"
                continue
            row.generated.append(token)
            _advance_text(row, tokenizer)
            if not row.finish and len(row.generated) >= row.settings.max_new_tokens:
                row.finish = "length"
        yield
        if all(r.finish for r in rows):
            break
        mask = torch.cat([mask, torch.tensor([[0 if r.finish else 1] for r in rows])], dim=1)
        last = last + 1
        if stepper is not None and kv is not None:
            logits = stepper.step(kv, next_ids, mask, last)
            continue
        with torch.no_grad():
            out = model(input_ids=next_ids[:, None].to(device), attention_mask=mask.to(device),
                        position_ids=last[:, None].to(device), cache=cache, use_cache=True)
        cache, logits = out.cache, out.logits[:, -1, :].float().cpu()
    for row in rows:
        row.finish = row.finish or "length"
        _flush(row, tokenizer)
