"""The language-model losses zero2one trains and evaluates with, against transformers' own loss
over whole rows (what they computed before), on the built-in SmolLM2-135M-Instruct, in one run:

  (a) a vision-language projector step: 16 digit questions, each the chat template around 4
      visual tokens (a random encoder and projector: speed does not depend on their weights),
      forward and backward. Baseline: ``lm(inputs_embeds, attention_mask, labels).loss`` over
      the whole rows; zero2one: ``VisionLanguageModel.loss`` (the shared template head read
      once, logits only where an answer token follows).
  (b) a fine-tune's validation loss over examples/zero2one-qa/val.jsonl (no gradient).
      Baseline: every position's logits; zero2one: ``validation_loss`` (labelled positions).

Each timed ``--repeats`` times, alternating, at 1 thread and at every core; the table gives the
median, the ratio, and the largest difference of the loss between the two.

    python benchmarks/loss_bench.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from zero2one.machine import cpu_name, usable_cores
from zero2one.tasks.textgen import train
from zero2one.tasks.textgen.config import TextDataConfig
from zero2one.tasks.textgen.data import IGNORE, tokenize
from zero2one.tasks.textgen.models import load_lm
from zero2one.tasks.vlm.data import DIGIT_QUESTION
from zero2one.tasks.vlm.model import Projector, VisionLanguageModel

REPO = Path(__file__).resolve().parents[1]


def projector_step(lm: nn.Module, tokenizer: object) -> tuple[Callable[[], float],
                                                               Callable[[], float]]:
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU())
    model = VisionLanguageModel(encoder, Projector(17, lm.config.hidden_size, 4), lm, tokenizer)
    pixels = torch.randn(16, 1, 8, 8)
    questions = [DIGIT_QUESTION] * 16
    answers = [str(i % 10) for i in range(16)]

    def whole_rows() -> float:
        embeds, mask, labels = model.sequences(pixels, questions, answers)
        loss = model.lm(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss
        loss.backward()
        return float(loss.detach())

    def zero2one() -> float:
        loss = model.loss(pixels, questions, answers)
        loss.backward()
        return float(loss.detach())

    return whole_rows, zero2one


def validation(lm: nn.Module, tokenizer: object) -> tuple[Callable[[], float],
                                                           Callable[[], float]]:
    from datasets import Dataset

    rows = [json.loads(line) for line in
            (REPO / "examples/zero2one-qa/val.jsonl").read_text().splitlines()]
    tokenizer.padding_side = "right"  # type: ignore[attr-defined]
    data = tokenize(Dataset.from_list(rows), tokenizer, "chat",
                    TextDataConfig(source="x", max_length=256))
    pad = int(tokenizer.pad_token_id)  # type: ignore[attr-defined]

    def every_position() -> float:
        collate, total, count = train.Collator(pad), 0.0, 0
        with torch.no_grad():
            for start in range(0, len(data), 8):
                batch = collate([data[i] for i in range(start, min(start + 8, len(data)))])
                logits = lm(input_ids=batch["input_ids"],
                            attention_mask=batch["attention_mask"]).logits[:, :-1].float()
                targets = batch["labels"][:, 1:]
                total += float(nn.functional.cross_entropy(
                    logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE,
                    reduction="sum"))
                count += int((targets != IGNORE).sum())
        return total / count

    return every_position, lambda: train.validation_loss(lm, data, pad)


def timed(pair: tuple[Callable[[], float], Callable[[], float]],
          repeats: int) -> tuple[list[float], list[float], float]:
    seconds: tuple[list[float], list[float]] = ([], [])
    worst = 0.0
    for _ in range(repeats):
        values = []
        for i, run in enumerate(pair):
            started = time.perf_counter()
            values.append(run())
            seconds[i].append(time.perf_counter() - started)
        worst = max(worst, abs(values[0] - values[1]) / abs(values[0]))
    return seconds[0], seconds[1], worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    lm, tokenizer = load_lm("builtin:smollm2-135m-instruct")
    lm.eval()
    for p in lm.parameters():
        p.requires_grad_(False)
    cases = {"(a) projector step, 16 questions": projector_step(lm, tokenizer),
             "(b) validation loss, 15 chats": validation(lm, tokenizer)}
    print(f"CPU: {cpu_name()}, {usable_cores()} usable cores; torch {torch.__version__}, "
          f"median of {args.repeats}\n")
    print("| case | threads | transformers, whole rows (s) | zero2one (s) | × faster | "
          "loss difference (relative) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for threads in sorted({1, usable_cores()}):
        torch.set_num_threads(threads)
        for name, pair in cases.items():
            pair[0](), pair[1]()  # warm-up
            base, ours, worst = timed(pair, args.repeats)
            b, o = statistics.median(base), statistics.median(ours)
            print(f"| {name} | {threads} | {b:.3f} | {o:.3f} | {b / o:.2f} | {worst:.1e} |",
                  flush=True)


if __name__ == "__main__":
    main()
