"""Data-parallel training across processes and machines, through torch's own launcher.

``zero2one train RECIPE --nproc N`` re-runs the same command under ``torch.distributed.run``
(one process per rank, ``--standalone`` on one machine; ``--nnodes`` and ``--rdzv-endpoint``
across machines). In each rank, :func:`process_group` joins the group (gloo on CPUs, NCCL on
GPUs); a task that trains data-parallel (``Task.data_parallel``) splits every global batch over
the ranks, and only the main rank (rank 0) tracks, writes checkpoints, saves and registers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from zero2one.errors import UserError
from zero2one.machine import usable_cores

TIMEOUT = timedelta(minutes=10)  # a collective that waits this long on a lost rank fails


@dataclass(frozen=True)
class Launch:
    """How ``zero2one train`` spreads over processes."""

    nproc: int = 1  # processes on this machine
    nnodes: int = 1  # machines
    rdzv_endpoint: str | None = None  # HOST:PORT every machine reaches (the first's)
    rdzv_id: str = "zero2one"  # one id per job, the same on every machine

    @property
    def world(self) -> int:
        return self.nproc * self.nnodes

    def check(self) -> None:
        if self.nproc < 1 or self.nnodes < 1:
            raise UserError("--nproc and --nnodes must be at least 1")
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise UserError(f"--nnodes {self.nnodes} needs --rdzv-endpoint HOST:PORT, the "
                            "same on every machine (the first machine's address)")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def in_rank() -> bool:
    """True inside a process torch's launcher started (so it must not launch again)."""
    return "TORCHELASTIC_RUN_ID" in os.environ or world_size() > 1


def launch(argv: list[str], plan: Launch) -> int:
    """Run ``zero2one ARGV`` in ``plan.nproc`` processes here (and on every machine that runs
    the same command); returns the launcher's exit code."""
    plan.check()
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={plan.nproc}",
               f"--nnodes={plan.nnodes}", "--max-restarts=0"]
    if plan.rdzv_endpoint:
        command += ["--rdzv-backend=c10d", f"--rdzv-endpoint={plan.rdzv_endpoint}",
                    f"--rdzv-id={plan.rdzv_id}"]
    else:
        command.append("--standalone")
    command += ["-m", "zero2one.cli.main", *argv]
    env = dict(os.environ)
    # torch's launcher would set 1 thread per rank; share this machine's cores instead
    env.setdefault("OMP_NUM_THREADS", str(max(1, usable_cores() // plan.nproc)))
    env.setdefault("LOGLEVEL", "WARNING")
    return subprocess.run(command, env=env, check=False).returncode


@contextmanager
def process_group() -> Iterator[None]:
    """Join the ranks' process group for the block (nothing in a single process)."""
    if world_size() == 1:
        yield
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        yield
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend, timeout=TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (nothing in a single process)."""
    if world_size() > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()


def broadcast_buffers(model: object) -> None:
    """Give every rank rank 0's buffers (batch-norm running statistics)."""
    if world_size() == 1:
        return
    import torch.distributed as dist

    for buffer in model.buffers():  # type: ignore[attr-defined]
        dist.broadcast(buffer.data, src=0)


def all_sum(values: list[float]) -> list[float]:
    """``values`` summed over the ranks (unchanged in a single process)."""
    if world_size() == 1:
        return values
    import torch
    import torch.distributed as dist

    device = torch.device("cuda", local_rank()) if dist.get_backend() == "nccl" else None
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return [float(v) for v in tensor.cpu()]
