"""The projector's training loop (and LoRA's, where the recipe adds it): AdamW, linear
warm-up then cosine decay, cross-entropy on the answers' tokens only. A checkpoint (the trained
parameters, optimizer, schedule, step, history, random states; :mod:`zero2one.torchtrain`) is
written every ``checkpoint_every`` steps, so ``--resume`` after a kill ends where an
uninterrupted run would."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from zero2one.progress import Reporter
from zero2one.tasks.vlm.config import VLTrainConfig
from zero2one.tasks.vlm.data import Question
from zero2one.tasks.vlm.model import VisionLanguageModel, trainable_state
from zero2one.torchtrain import Checkpoint, log_loss, pick_device, threads


@dataclass
class Outcome:
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    steps: int = 0
    resumed_from: int | None = None
    trainable: int = 0


def _lr_lambda(cfg: VLTrainConfig) -> Any:
    def scale(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / (cfg.warmup_steps + 1)
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return scale


def fit(model: VisionLanguageModel, pixels: torch.Tensor, questions: list[Question],
        cfg: VLTrainConfig, *, seed: int, reporter: Reporter,
        checkpoint_dir: Path | None = None, resume: bool = False) -> Outcome:
    """Train ``model.projector`` on ``questions`` about the images ``pixels`` (normalised,
    (N, C, S, S))."""
    device = pick_device(cfg.device)
    with threads(cfg.threads):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model.to(device)
        model.projector.train()
        params = [p for p in model.parameters() if p.requires_grad]  # projector (+ LoRA)
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))
        outcome = Outcome(trainable=sum(p.numel() for p in params))
        checkpoint = Checkpoint(checkpoint_dir, unit="step")
        saved = checkpoint.resume(wanted=resume, generator=gen, device=device,
                                  reporter=reporter)
        order = torch.randperm(len(questions), generator=gen)
        at = 0
        if saved is not None:
            model.load_state_dict(saved["trainable"], strict=False)
            optimizer.load_state_dict(saved["optimizer"])
            schedule.load_state_dict(saved["schedule"])
            outcome.history, outcome.train_seconds = saved["history"], saved["seconds"]
            outcome.resumed_from, order, at = saved["step"], saved["order"], saved["at"]
        start = outcome.resumed_from or 0
        began = time.perf_counter() - outcome.train_seconds
        window: list[float] = []
        with reporter.step(f"training the projector, {cfg.steps} steps",
                           total=cfg.steps) as progress:
            progress.advance(start)
            for step in range(start + 1, cfg.steps + 1):
                if at + cfg.batch_size > len(order):  # a new pass over the questions
                    order, at = torch.randperm(len(questions), generator=gen), 0
                batch = [questions[int(i)] for i in order[at:at + cfg.batch_size]]
                at += cfg.batch_size
                loss = model.loss(pixels[[q.image for q in batch]],
                                  [q.question for q in batch], [q.answer for q in batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                window.append(loss.item())
                progress.advance()
                if step % cfg.log_every == 0 or step == cfg.steps:
                    log_loss(outcome.history, window, step=step,
                             lr=optimizer.param_groups[0]["lr"], began=began, reporter=reporter)
                if step % cfg.checkpoint_every == 0 and step < cfg.steps:
                    outcome.train_seconds = time.perf_counter() - began
                    checkpoint.save({
                        "step": step, "trainable": trainable_state(model),
                        "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                        "history": outcome.history, "seconds": outcome.train_seconds,
                        "order": order, "at": at}, generator=gen, device=device)
    outcome.train_seconds = time.perf_counter() - began
    outcome.steps = cfg.steps
    model.projector.eval()
    return outcome
