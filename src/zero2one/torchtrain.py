"""What every hand-written torch training loop shares: the device, mixed precision, the thread
count while it trains, and checkpoints that resume exactly.

A :class:`Checkpoint` holds the loop's own state (weights, optimizer, schedule, counters) plus
every random state the loop draws from — torch's global one, the loop's generator, CUDA's — so
``--resume`` after a kill continues where the last checkpoint left off and ends where an
uninterrupted run would. It is written to a temporary file, synced and renamed: a kill never
leaves half a checkpoint. Only the main rank of a data-parallel fit writes it.

Tasks that train through another library's loop (the Transformers Trainer, Keras) keep that
library's checkpoints and use :func:`threads` here.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from zero2one import distributed
from zero2one.progress import Reporter

CHECKPOINT = "last.pt"


def pick_device(choice: str) -> torch.device:
    """``cpu``, ``cuda`` or ``auto`` (CUDA when there is one); a data-parallel rank on GPUs
    gets its own (``LOCAL_RANK``)."""
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ValueError("train.device is cuda but no CUDA device is available")
        if distributed.world_size() > 1:
            return torch.device("cuda", distributed.local_rank())
        return torch.device("cuda")
    return torch.device("cpu")


def autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision where it pays: bfloat16 autocast on CUDA (fp32 weights, no loss
    scaling); nothing on CPUs."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def threads(count: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``count`` (None: as they are) while the block trains,
    restored after it: a notebook or server in the same process keeps its own setting."""
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def random_state(generator: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    """Every random state a training loop draws from."""
    state = {"torch_rng": torch.get_rng_state(), "gen_rng": generator.get_state()}
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    return state


def restore_random_state(state: dict[str, Any], generator: torch.Generator,
                         device: torch.device) -> None:
    torch.set_rng_state(state["torch_rng"])
    generator.set_state(state["gen_rng"])
    if device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"], device)


class Checkpoint:
    """The training loop's last checkpoint in ``directory`` (None: the loop keeps none)."""

    def __init__(self, directory: Path | None, *, unit: str = "epoch") -> None:
        self.path = directory / CHECKPOINT if directory is not None else None
        self.unit = unit  # what the loop counts, for the messages: epoch, step

    def resume(self, *, wanted: bool, generator: torch.Generator, device: torch.device,
               reporter: Reporter) -> dict[str, Any] | None:
        """The saved state when ``wanted`` and there is one (the random states already
        restored); None — and said, when a resume was asked for — otherwise."""
        if not wanted:
            return None
        if self.path is None or not self.path.exists():
            reporter.info("no checkpoint to resume from; training from the start")
            return None
        state: dict[str, Any] = torch.load(self.path, map_location=device, weights_only=True)
        restore_random_state(state, generator, device)
        reporter.info(f"resuming after {self.unit} {state[self.unit]} from {self.path}")
        return state

    def save(self, state: dict[str, Any], *, generator: torch.Generator,
             device: torch.device) -> None:
        """``state`` (which names the ``unit`` reached) and the random states, atomically; on
        the main rank only."""
        if self.path is None or not distributed.is_main():
            return
        save_atomically(self.path, {**state, **random_state(generator, device)})


def log_loss(history: list[dict[str, float]], window: list[float], *, step: int, lr: float,
             began: float, reporter: Reporter) -> None:
    """The mean loss of the steps since the last log (``window``, emptied), with the learning
    rate and the seconds since ``began``, added to ``history`` and reported."""
    row = {"step": float(step), "loss": sum(window) / len(window), "lr": lr,
           "seconds": time.perf_counter() - began}
    window.clear()
    history.append(row)
    reporter.metrics({"loss": row["loss"], "lr": row["lr"]}, step=step)


def save_atomically(path: Path, state: dict[str, Any]) -> None:
    """torch.save to a temporary file, fsync, rename: a kill never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    with tmp.open("wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
