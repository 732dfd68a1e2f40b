"""The training loop: read top to bottom. One epoch = shuffle, (augment,) step per batch,
validate, schedule, early-stop check, checkpoint.

A checkpoint (model, optimizer, scheduler, epoch, best weights, history, every RNG state; see
:mod:`zero2one.torchtrain`) is written after each epoch, so ``--resume`` after a kill continues
exactly where the last finished epoch left off and ends where an uninterrupted run would.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from zero2one import distributed
from zero2one.progress import Reporter
from zero2one.tasks.vision.augment import augment, enabled
from zero2one.tasks.vision.config import TrainConfig
from zero2one.torchtrain import Checkpoint, autocast, pick_device, threads

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int | None = None  # the epoch a resumed run continued after
    stopped_early: bool = False


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
             batch_size: int = 512) -> tuple[float, float, torch.Tensor]:
    """(mean loss, accuracy, logits) over a whole split."""
    model.eval()
    logits = torch.cat([model(x[i: i + batch_size].to(device)).float().cpu()
                        for i in range(0, len(x), batch_size)])
    loss = F.cross_entropy(logits, y).item()
    accuracy = (logits.argmax(1) == y).float().mean().item()
    return loss, accuracy, logits


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def _scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> Any:
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    if cfg.scheduler == "plateau":
        mode: Literal["min", "max"] = "max" if _watch(cfg) == "val_accuracy" else "min"
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=mode, factor=cfg.plateau_factor, patience=cfg.plateau_patience)
    return None


def _watch(cfg: TrainConfig) -> str:
    return cfg.early_stopping.metric if cfg.early_stopping else "val_loss"


def _better(value: float, best: float | None, cfg: TrainConfig) -> bool:
    if best is None:
        return True
    delta = cfg.early_stopping.min_delta if cfg.early_stopping else 0.0
    if _watch(cfg) == "val_accuracy":
        return value > best + delta
    return value < best - delta


@dataclass
class _Best:
    """The early-stopping watch: the best value of the watched metric, its epoch and weights."""

    value: float | None
    epoch: int
    state: dict[str, torch.Tensor]
    bad_epochs: int = 0


def fit(
    model: nn.Module,
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
    cfg: TrainConfig,
    *,
    seed: int,
    reporter: Reporter,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
) -> Outcome:
    """Train ``model`` in place; ``train.threads`` holds only while it trains."""
    world = distributed.world_size()
    device = pick_device(cfg.device)
    n, batch = len(splits["train"][0]), cfg.batch_size
    if world > batch or world > n:
        raise ValueError(f"{world} processes cannot share batches of train.batch_size={batch} "
                         f"from {n} training examples: use at most {min(batch, n)} processes")
    with threads(cfg.threads):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)  # shuffling and augmentation
        model.to(device)
        step_model = _data_parallel(model, device, world)
        optimizer = _optimizer(model, cfg)
        scheduler = _scheduler(optimizer, cfg)
        checkpoint = Checkpoint(checkpoint_dir, unit="epoch")
        best = _Best(None, 0, copy.deepcopy(model.state_dict()))
        history: list[dict[str, float]] = []
        saved = checkpoint.resume(wanted=resume, generator=gen, device=device,
                                  reporter=reporter)
        if saved is not None:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            if scheduler is not None:
                scheduler.load_state_dict(saved["scheduler"])
            best = _Best(saved["best"], saved["best_epoch"], saved["best_state"],
                         saved["bad_epochs"])
            history = saved["history"]
        outcome = Outcome(best.state, best.epoch, history,
                          saved["epoch"] if saved is not None else None)
        for epoch in range(1 + (outcome.resumed_from or 0), cfg.epochs + 1):
            if cfg.early_stopping and best.bad_epochs >= cfg.early_stopping.patience:
                outcome.stopped_early = True
                break
            started = time.perf_counter()
            with reporter.step(f"epoch {epoch}/{cfg.epochs}", total=math.ceil(n / batch)) as bar:
                trained = _train_epoch(model, step_model, optimizer, splits["train"], cfg, gen,
                                       device, advance=bar.advance)
            val_loss, val_accuracy = _validate(model, *splits["val"], device)
            row = {"epoch": epoch, **trained, "val_loss": val_loss,
                   "val_accuracy": val_accuracy, "lr": optimizer.param_groups[0]["lr"],
                   "seconds": time.perf_counter() - started}
            history.append(row)
            _watch_epoch(row, best, scheduler, cfg, model)
            reporter.metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch)
            reporter.info(f"epoch {epoch}: loss {row['train_loss']:.4f}, val_loss "
                          f"{val_loss:.4f}, val_accuracy {val_accuracy:.4f}, lr {row['lr']:.2e}")
            checkpoint.save({
                "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else {},
                "best": best.value, "best_epoch": best.epoch, "bad_epochs": best.bad_epochs,
                "best_state": best.state, "history": history,
            }, generator=gen, device=device)
    outcome.best_state, outcome.best_epoch = best.state, best.epoch
    return outcome


def _data_parallel(model: nn.Module, device: torch.device, world: int) -> nn.Module:
    """The module each step runs: ``model`` itself, or DistributedDataParallel over it.

    Data-parallel, every rank draws the same global batch (same seed, same generator) and
    learns from its share; DDP averages the gradients, so a step equals one process's step on
    the whole batch (batch norm statistics are per share on CPUs, global on GPUs)."""
    if world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    step_model = nn.SyncBatchNorm.convert_sync_batchnorm(model) if device.type == "cuda" \
        else model
    return DistributedDataParallel(
        step_model, device_ids=[device.index] if device.type == "cuda" else None)


def _train_epoch(model: nn.Module, step_model: nn.Module, optimizer: torch.optim.Optimizer,
                 train: tuple[torch.Tensor, torch.Tensor], cfg: TrainConfig,
                 gen: torch.Generator, device: torch.device, *,
                 advance: Any) -> dict[str, float]:
    """One pass over the shuffled training split; the mean loss and accuracy over all ranks."""
    world, rank = distributed.world_size(), distributed.rank()
    x_train, y_train = train
    n, batch = len(x_train), cfg.batch_size
    model.train()
    order = torch.randperm(n, generator=gen)
    total_loss, correct, seen = 0.0, 0, 0
    for i in range(0, n, batch):
        index = order[i: i + batch]
        if len(index) < world:  # a last batch too small to share: skipped by all
            advance()
            continue
        xb, yb = x_train[index], y_train[index]
        if enabled(cfg.augment):
            xb = augment(xb, cfg.augment, gen)
        if world > 1:  # this rank's share of the global batch
            xb, yb = xb[rank::world], yb[rank::world]
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device):
            logits = step_model(xb)  # (B / world, num_classes)
            summed = F.cross_entropy(logits.float(), yb, reduction="sum")
        # DDP averages gradients over ranks: scaled so the step is the global mean's
        loss = summed * (world / len(index))
        loss.backward()
        optimizer.step()
        total_loss += summed.item()
        correct += (logits.argmax(1) == yb).sum().item()
        seen += len(yb)
        advance()
    total_loss, correct_sum, seen_sum = distributed.all_sum(
        [total_loss, float(correct), float(seen)])
    seen = max(1, int(seen_sum))
    return {"train_loss": total_loss / seen, "train_accuracy": int(correct_sum) / seen}


def _watch_epoch(row: dict[str, float], best: _Best, scheduler: Any, cfg: TrainConfig,
                 model: nn.Module) -> None:
    """The schedule's step and the early-stopping watch, on the epoch's watched metric."""
    watched = row[_watch(cfg)]
    if scheduler is not None:
        scheduler.step(watched) if cfg.scheduler == "plateau" else scheduler.step()
    if _better(watched, best.value, cfg):
        best.value, best.epoch, best.bad_epochs = watched, int(row["epoch"]), 0
        best.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    else:
        best.bad_epochs += 1


def _validate(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
              device: torch.device) -> tuple[float, float]:
    """Validation loss and accuracy; data-parallel ranks each score a share and sum (with
    rank 0's batch-norm statistics, the ones it saves)."""
    world, rank = distributed.world_size(), distributed.rank()
    if world == 1:
        loss, accuracy, _ = evaluate(model, x, y, device)
        return loss, accuracy
    distributed.broadcast_buffers(model)
    share_x, share_y = x[rank::world], y[rank::world]
    _, _, logits = evaluate(model, share_x, share_y, device)
    loss_sum = F.cross_entropy(logits, share_y, reduction="sum").item()
    correct = (logits.argmax(1) == share_y).sum().item()
    loss_sum, correct = distributed.all_sum([loss_sum, float(correct)])
    return loss_sum / len(y), correct / len(y)
