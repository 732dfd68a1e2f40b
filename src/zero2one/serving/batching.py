"""Micro-batching: concurrent requests share one predict call, each caller gets its own rows.

Greedy and adaptive: the worker takes everything queued (up to ``max_size`` rows), optionally
waits ``max_wait`` for more, runs one predict call (inline when small, else in a thread), and
splits the result. While a
batch runs, new requests queue up and form the next batch, so batches grow with load and a lone
request never waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)

Predict = Callable[[list[Any]], Sequence[Any]]


class MicroBatcher:
    def __init__(
        self,
        predict: Predict,
        *,
        max_size: int = 256,
        max_wait: float = 0.0,
        inline_rows: int = 64,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.predict = predict
        self.inline_rows = inline_rows
        self.max_size = max_size
        self.max_wait = max_wait
        self.on_batch = on_batch
        self._queue: asyncio.Queue[tuple[list[Any], asyncio.Future[list[Any]]]] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def submit(self, rows: list[Any]) -> list[Any]:
        """Predict ``rows``; returns one result per row, in order."""
        self.start()
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        await self._queue.put((rows, future))
        return await future

    async def close(self) -> None:
        """Finish what is queued, then stop."""
        if self._task is not None:
            await self._queue.join()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            size = len(batch[0][0])
            deadline = loop.time() + self.max_wait
            while size < self.max_size:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self._queue.get(), remaining)
                    except TimeoutError:
                        break
                if size + len(item[0]) > self.max_size:
                    # too big for this batch: it leads the next one
                    self._queue.put_nowait(item)
                    self._queue.task_done()
                    break
                batch.append(item)
                size += len(item[0])
            rows = [row for item in batch for row in item[0]]
            try:
                if len(rows) <= self.inline_rows:
                    # small batches run on the event loop: a thread hop (and the GIL hand-over
                    # it brings) costs more than the predict call itself
                    results = self.predict(rows)
                else:  # big ones in a thread, so probes and new requests are still read
                    results = await loop.run_in_executor(self._executor, self.predict, rows)
                if len(results) != len(rows):
                    raise RuntimeError(f"predict returned {len(results)} results for {len(rows)}")
            except Exception as exc:  # every caller in the batch gets the error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                if self.on_batch is not None:
                    self.on_batch(len(rows))
                start = 0
                for item_rows, future in batch:
                    if not future.done():  # a caller that went away
                        future.set_result(list(results[start : start + len(item_rows)]))
                    start += len(item_rows)
            finally:
                for _ in batch:
                    self._queue.task_done()
