"""This machine: the cores this process may use and the memory there is. A leaf: it imports
nothing of zero2one's."""

from __future__ import annotations

import contextvars
import os
import platform
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


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
