"""Progress reporting for long steps (search, training), kept apart from library logic.

Library code receives a :class:`Reporter` and calls ``reporter.step(description, total)``; the CLI
passes a :class:`RichReporter` (bars on stderr, so ``--json`` output on stdout stays clean), tests
and ``--quiet`` pass :class:`NullReporter`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol


class Step(Protocol):
    def advance(self, n: int = 1) -> None: ...


class Reporter(Protocol):
    def step(self, description: str, total: int | None = None) -> AbstractContextManager[Step]: ...

    def info(self, message: str) -> None: ...

    def metrics(self, values: dict[str, float], step: int) -> None: ...

    def image(self, tag: str, image: Any, step: int) -> None: ...

    def text(self, tag: str, text: str, step: int) -> None: ...


class _NullStep:
    def advance(self, n: int = 1) -> None:
        pass


class NullReporter:
    """Reports nothing."""

    @contextmanager
    def step(self, description: str, total: int | None = None) -> Iterator[Step]:
        yield _NullStep()

    def info(self, message: str) -> None:
        pass

    def metrics(self, values: dict[str, float], step: int) -> None:
        pass

    def image(self, tag: str, image: Any, step: int) -> None:
        pass

    def text(self, tag: str, text: str, step: int) -> None:
        pass


# without a terminal (a log file, CI), a step's progress is a plain line at most this often
PLAIN_EVERY_SECONDS = 30.0


class _PlainStep:
    """A step as plain lines: when it starts, then at most every :data:`PLAIN_EVERY_SECONDS`
    while it advances, and when it ends — readable in a log file, where bars draw nothing."""

    def __init__(self, say: Callable[[str], None], description: str, total: int | None) -> None:
        self.say, self.description, self.total = say, description, total
        self.done, self.start = 0, time.monotonic()
        self.last = self.start
        say(f"{description}: started" + (f" (0/{total})" if total else ""))

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= PLAIN_EVERY_SECONDS:
            self.last = now
            self.say(f"{self.description}: {self._count()}, {_clock(now - self.start)} elapsed"
                     + self._left(now))

    def end(self) -> None:
        if self.total:
            self.done = max(self.done, self.total)
        counted = f" ({self._count()})" if self.total or self.done else ""
        self.say(f"{self.description}: done{counted} in "
                 f"{_clock(time.monotonic() - self.start)}")

    def _count(self) -> str:
        if not self.total:
            return f"{self.done}"
        return f"{self.done}/{self.total}, {self.done / self.total:.0%}"

    def _left(self, now: float) -> str:
        if not self.total or not self.done or self.done >= self.total:
            return ""
        rate = (now - self.start) / self.done
        return f", about {_clock(rate * (self.total - self.done))} left"


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class RichReporter:
    """Progress bars and messages on stderr with rich; plain lines at a sane rate when stderr
    is not a terminal."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)

    @contextmanager
    def step(self, description: str, total: int | None = None) -> Iterator[Step]:
        if not self.console.is_terminal and not self.console.is_jupyter:  # a log file
            plain = _PlainStep(self.info, description, total)
            yield plain
            plain.end()
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn()]
        if total is not None:
            columns.append(MofNCompleteColumn())
        columns.append(TimeElapsedColumn())
        with Progress(*columns, console=self.console, transient=False) as progress:
            task_id = progress.add_task(description, total=total)

            class _Step:
                def advance(self, n: int = 1) -> None:
                    progress.advance(task_id, n)

            yield _Step()
            if total is not None:
                progress.update(task_id, completed=total)

    def info(self, message: str) -> None:
        # not wrapped at the console's width: a log file keeps each message on one line
        self.console.print(message, markup=False, highlight=False,
                           soft_wrap=not (self.console.is_terminal or self.console.is_jupyter))

    def metrics(self, values: dict[str, float], step: int) -> None:
        pass  # the per-epoch line comes through info()

    def image(self, tag: str, image: Any, step: int) -> None:
        pass

    def text(self, tag: str, text: str, step: int) -> None:
        pass


class RunReporter:
    """Forwards per-step metrics to a tracking run, everything else to ``inner``."""

    def __init__(self, inner: Reporter, log: Callable[[dict[str, float], int], None]) -> None:
        self.inner, self.log = inner, log

    def step(self, description: str, total: int | None = None) -> AbstractContextManager[Step]:
        return self.inner.step(description, total)

    def info(self, message: str) -> None:
        self.inner.info(message)

    def metrics(self, values: dict[str, float], step: int) -> None:
        self.log(values, step)
        self.inner.metrics(values, step)

    def image(self, tag: str, image: Any, step: int) -> None:
        self.inner.image(tag, image, step)

    def text(self, tag: str, text: str, step: int) -> None:
        self.inner.text(tag, text, step)


class TensorBoardReporter:
    """Also writes what a fit reports — per-step metrics as scalars, sample images (H×W×C,
    uint8) and texts — as TensorBoard event files in ``logdir``; everything goes on to
    ``inner``. :meth:`close` flushes them."""

    def __init__(self, inner: Reporter, logdir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.inner, self.logdir = inner, logdir
        self.writer = SummaryWriter(str(logdir))

    def step(self, description: str, total: int | None = None) -> AbstractContextManager[Step]:
        return self.inner.step(description, total)

    def info(self, message: str) -> None:
        self.inner.info(message)

    def metrics(self, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)
        self.inner.metrics(values, step)

    def image(self, tag: str, image: Any, step: int) -> None:
        self.writer.add_image(tag, image, step, dataformats="HWC")
        self.inner.image(tag, image, step)

    def text(self, tag: str, text: str, step: int) -> None:
        self.writer.add_text(tag, text, step)
        self.inner.text(tag, text, step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


def default_reporter() -> Reporter:
    """What the Python API reports to when the caller gives no reporter: progress bars in a
    Jupyter notebook (rich renders them there), nothing elsewhere (a library stays quiet)."""
    import sys

    shell = sys.modules.get("IPython")
    ipython = getattr(shell, "get_ipython", lambda: None)() if shell is not None else None
    if type(ipython).__name__ == "ZMQInteractiveShell":  # a notebook's kernel
        return RichReporter()
    return NullReporter()
