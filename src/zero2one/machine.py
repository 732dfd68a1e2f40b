"""This machine: the cores this process may use and the memory there is, and how a process of
zero2one's collects its garbage. A leaf: it imports nothing of zero2one's."""

from __future__ import annotations

import contextvars
import os
import platform
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# The cyclic garbage collector's thresholds in the `zero2one` program (cli/main.py) and the test
# processes: a command imports thousands of modules (torch, transformers, scikit-learn, MLflow),
# and at Python's (700, 10, 10) the full collections that scan every object so far take up to
# a tenth of its CPU (benchmarks/cli_gc.py). Cycles are still collected: the youngest
# generation every 2,000 net allocations, the oldest ten times less often than Python's.
GC_THRESHOLDS = (2000, 10, 100)


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity), else the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def on_own_thread(work: Callable[[], T]) -> T:
    """``work()`` run on a thread started for it (in the caller's context variables), its
    result returned and its error raised here. The OpenMP threads torch or MKL start for it
    end with that thread: one OpenMP runtime serves the whole process, and once it holds more
    threads than there are cores every parallel step of every library sleeps between its
    parts instead of spinning — llama.cpp's decoding at less than half its speed
    (``benchmarks/openmp_share.py``). A daemon thread: an interrupted caller does not wait for
    it."""
    outcome: list[T] = []
    failure: list[BaseException] = []
    context = contextvars.copy_context()

    def run() -> None:
        try:
            outcome.append(context.run(work))
        except BaseException as exc:  # raised in the caller
            failure.append(exc)

    thread = threading.Thread(target=run, name="zero2one-own-thread", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else the architecture: what a speed measured
    here is true for."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def meminfo() -> tuple[int, int] | None:
    """(total, available) bytes of memory from /proc/meminfo; None where there is none."""
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return None
    values = {}
    for line in lines:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key] = int(parts[0]) * 1024
    if "MemTotal" not in values:
        return None
    return values["MemTotal"], values.get("MemAvailable", values["MemTotal"])
