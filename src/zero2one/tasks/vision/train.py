"""The training loop: read top to bottom. One epoch = shuffle, (augment,) step per batch,
validate, schedule, early-stop check, checkpoint.

A checkpoint (model, optimizer, scheduler, epoch, best weights, history, every RNG state) is
written atomically after each epoch, so ``--resume`` after a kill continues exactly where the
last finished epoch left off and ends where an uninterrupted run would.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from zero2one.progress import Reporter
from zero2one.tasks.vision.augment import augment, enabled
from zero2one.tasks.vision.config import TrainConfig

log = logging.getLogger(__name__)

CHECKPOINT = "last.pt"


@dataclass
class Outcome:
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int | None = None  # the epoch a resumed run continued after
    stopped_early: bool = False


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ValueError("train.device is cuda but no CUDA device is available")
        return torch.device("cuda")
    return torch.device("cpu")


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
    threads = torch.get_num_threads()
    try:
        return _fit(model, splits, cfg, seed=seed, reporter=reporter,
                    checkpoint_dir=checkpoint_dir, resume=resume)
    finally:
        torch.set_num_threads(threads)


def _fit(
    model: nn.Module,
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
    cfg: TrainConfig,
    *,
    seed: int,
    reporter: Reporter,
    checkpoint_dir: Path | None,
    resume: bool,
) -> Outcome:
    from zero2one import distributed

    world, rank = distributed.world_size(), distributed.rank()
    device = pick_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", distributed.local_rank())
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)  # shuffling and augmentation
    model.to(device)
    # data-parallel: every rank draws the same global batch (same seed, same generator) and
    # learns from its share; DDP averages the gradients, so a step equals one process's step
    # on the whole batch (batch norm statistics are per share on CPUs, global on GPUs)
    step_model: nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        if device.type == "cuda":
            step_model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        step_model = DistributedDataParallel(
            step_model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = _optimizer(model, cfg)
    scheduler = _scheduler(optimizer, cfg)
    # mixed precision on CUDA: bf16 autocast keeps fp32 weights and needs no loss scaling
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else None
    x_train, y_train = splits["train"]
    x_val, y_val = splits["val"]
    n, batch = len(x_train), cfg.batch_size
    if world > batch or world > n:
        raise ValueError(f"{world} processes cannot share batches of train.batch_size={batch} "
                         f"from {n} training examples: use at most {min(batch, n)} processes")
    steps = math.ceil(n / batch)

    start_epoch, best, best_epoch, bad_epochs = 1, None, 0, 0
    best_state = copy.deepcopy(model.state_dict())
    history: list[dict[str, float]] = []
    resumed_from = None
    ckpt_path = checkpoint_dir / CHECKPOINT if checkpoint_dir else None
    if resume and ckpt_path is not None and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        best, best_epoch, bad_epochs = state["best"], state["best_epoch"], state["bad_epochs"]
        best_state, history = state["best_state"], state["history"]
        torch.set_rng_state(state["torch_rng"])
        gen.set_state(state["gen_rng"])
        if device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"])
        resumed_from = state["epoch"]
        start_epoch = resumed_from + 1
        reporter.info(f"resuming after epoch {state['epoch']} from {ckpt_path}")
    elif resume:
        reporter.info("no checkpoint to resume from; training from the start")

    stopped_early = False
    for epoch in range(start_epoch, cfg.epochs + 1):
        if cfg.early_stopping and bad_epochs >= cfg.early_stopping.patience:
            stopped_early = True
            break
        started = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=gen)
        total_loss, correct, seen = 0.0, 0, 0
        with reporter.step(f"epoch {epoch}/{cfg.epochs}", total=steps) as progress:
            for i in range(0, n, batch):
                index = order[i: i + batch]
                if len(index) < world:  # a last batch too small to share: skipped by all
                    progress.advance()
                    continue
                xb, yb = x_train[index], y_train[index]
                if enabled(cfg.augment):
                    xb = augment(xb, cfg.augment, gen)
                if world > 1:  # this rank's share of the global batch
                    xb, yb = xb[rank::world], yb[rank::world]
                xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
                optimizer.zero_grad(set_to_none=True)
                if autocast is not None:
                    with autocast:
                        logits = step_model(xb)
                        summed = F.cross_entropy(logits.float(), yb, reduction="sum")
                else:
                    logits = step_model(xb)  # (B / world, num_classes)
                    summed = F.cross_entropy(logits, yb, reduction="sum")
                # DDP averages gradients over ranks: scaled so the step is the global mean's
                loss = summed * (world / len(index))
                loss.backward()
                optimizer.step()
                total_loss += summed.item()
                correct += (logits.argmax(1) == yb).sum().item()
                seen += len(yb)
                progress.advance()
            total_loss, correct_sum, seen_sum = distributed.all_sum(
                [total_loss, float(correct), float(seen)])
            correct, seen = int(correct_sum), max(1, int(seen_sum))
        val_loss, val_accuracy = _validate(model, x_val, y_val, device, world, rank)
        row = {"epoch": epoch, "train_loss": total_loss / seen, "train_accuracy": correct / seen,
               "val_loss": val_loss, "val_accuracy": val_accuracy,
               "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - started}
        history.append(row)
        watched = row[_watch(cfg)]
        if scheduler is not None:
            scheduler.step(watched) if cfg.scheduler == "plateau" else scheduler.step()
        if _better(watched, best, cfg):
            best, best_epoch, bad_epochs = watched, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        reporter.metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch)
        reporter.info(f"epoch {epoch}: loss {row['train_loss']:.4f}, val_loss {val_loss:.4f}, "
                      f"val_accuracy {val_accuracy:.4f}, lr {row['lr']:.2e}")
        if ckpt_path is not None and distributed.is_main():
            save_checkpoint(ckpt_path, {
                "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else {},
                "best": best, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                "best_state": best_state, "history": history,
                "torch_rng": torch.get_rng_state(), "gen_rng": gen.get_state(),
                **({"cuda_rng": torch.cuda.get_rng_state()} if device.type == "cuda" else {}),
            })
    return Outcome(best_state, best_epoch, history, resumed_from, stopped_early)


def _validate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
              world: int, rank: int) -> tuple[float, float]:
    """Validation loss and accuracy; data-parallel ranks each score a share and sum (with
    rank 0's batch-norm statistics, the ones it saves)."""
    if world == 1:
        loss, accuracy, _ = evaluate(model, x, y, device)
        return loss, accuracy
    from zero2one import distributed

    distributed.broadcast_buffers(model)
    share_x, share_y = x[rank::world], y[rank::world]
    _, _, logits = evaluate(model, share_x, share_y, device)
    loss_sum = F.cross_entropy(logits, share_y, reduction="sum").item()
    correct = (logits.argmax(1) == share_y).sum().item()
    loss_sum, correct = distributed.all_sum([loss_sum, float(correct)])
    return loss_sum / len(y), correct / len(y)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """torch.save to a temporary file, fsync, rename: a kill never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    with tmp.open("wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
