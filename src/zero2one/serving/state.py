"""The served model and its hot swap: requests in flight keep the model they started with."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from zero2one.api import load
from zero2one.errors import UserError
from zero2one.machine import on_own_thread
from zero2one.monitoring import served_name
from zero2one.refs import Resolved, resolve
from zero2one.serving.batching import MicroBatcher
from zero2one.serving.metrics import Metrics
from zero2one.serving.schemas import ModelInfo
from zero2one.serving.settings import ServeSettings

log = logging.getLogger(__name__)


@dataclass
class Served:
    """One loaded model with its adapter and batcher."""

    info: ModelInfo
    adapter: Any  # what the model's task declares (Task.serving_adapter)
    batcher: MicroBatcher | None  # None when the adapter batches itself (language models)
    load_seconds: float
    loaded_at: float
    manifest: dict[str, Any]
    resolved: Resolved | None = None  # where it was loaded from (the monitor reads it)

    def __post_init__(self) -> None:
        self.info_dict = self.info.model_dump()  # built once, sent with every answer


def load_served(settings: ServeSettings, metrics: Metrics,
                resolved: Resolved | None = None) -> Served:
    """Load and verify the model (resolving ``settings.model`` unless ``resolved`` is given)
    and build its serving adapter: the only place the server loads a model. On a thread of its
    own, which takes the OpenMP threads the load starts with it (a language model's llama.cpp
    engine decodes at half speed beside them: :func:`~zero2one.machine.on_own_thread`)."""
    return on_own_thread(lambda: _load_served(settings, metrics, resolved))


def _load_served(settings: ServeSettings, metrics: Metrics,
                 resolved: Resolved | None) -> Served:

    start = time.perf_counter()
    resolved = resolved or resolve(settings.model)
    model = load(resolved, trust=settings.trust)
    manifest = getattr(model, "manifest", None) or {"task": model.name,
                                                    "name": resolved.display_name}
    info = ModelInfo(name=served_name(resolved, manifest),
                     version=resolved.version, ref=settings.model, task=model.name)
    offered = type(model).engines
    if settings.engine is None:
        settings = settings.model_copy(update={"engine": offered[0]})
    elif settings.engine not in offered:
        raise UserError(f"--engine {settings.engine}: {model.name} models are served by "
                        f"{', '.join(offered)}")
    adapter = model.serving_adapter(settings, info.name)
    batcher = None
    if getattr(adapter, "batched", True):  # adapters that batch themselves say batched = False
        batcher = MicroBatcher(adapter.predict, max_size=settings.batch_max_size,
                               max_wait=settings.batch_max_wait_ms / 1000,
                               on_batch=metrics.observe_batch)
    seconds = time.perf_counter() - start
    metrics.load_seconds.set(seconds)
    metrics.model_info.clear()
    metrics.model_info.labels(info.name, info.version or "", info.task).set(1)
    return Served(info, adapter, batcher, seconds, time.time(), manifest, resolved)


class ModelHolder:
    """Holds the current :class:`Served`; :meth:`reload` swaps it without dropping requests."""

    def __init__(self, settings: ServeSettings, metrics: Metrics, *,
                 resolved: Resolved | None = None, served: Served | None = None) -> None:
        self.settings, self.metrics = settings, metrics
        self.resolved = resolved  # resolved once at start-up; reloads resolve again
        self.current: Served | None = served
        self._lock = asyncio.Lock()

    async def load(self) -> Served:
        """The model at start-up (already loaded when the CLI loaded it in this process)."""
        if self.current is None:
            loop = asyncio.get_running_loop()
            self.current = await loop.run_in_executor(None, load_served, self.settings,
                                                      self.metrics, self.resolved)
        return self.current

    async def reload(self, resolved: Resolved | None = None) -> tuple[Served | None, Served]:
        """Load the reference again (an alias may point elsewhere now) and swap it in; a model
        of another task is refused (the server's routes are that task's)."""

        async with self._lock:
            old = self.current
            loop = asyncio.get_running_loop()
            if resolved is None:
                resolved = await loop.run_in_executor(None, resolve, self.settings.model)
            if old is not None and resolved.task != old.info.task:
                raise UserError(f"{self.settings.model} now names a {resolved.task} model; this "
                                f"server serves {old.info.task} models: restart it instead")
            new = await loop.run_in_executor(None, load_served, self.settings, self.metrics,
                                             resolved)
            self.current = new
        if old is not None and old.batcher is not None:
            # requests already queued on the old batcher still finish on the old model
            asyncio.get_running_loop().create_task(old.batcher.close())
        if old is not None and hasattr(old.adapter, "close"):  # its batch finishes first
            asyncio.get_running_loop().run_in_executor(None, old.adapter.close)
        # uvicorn's configured logger: zero2one's own INFO lines are not shown by the server
        logging.getLogger("uvicorn.error").info(
            "hot swap: %s version %s -> version %s", new.info.name,
            old.info.version if old else None, new.info.version)
        return old, new

    async def follow(self, every: float) -> None:
        """Poll the reference; swap when it resolves to another version."""

        while True:
            await asyncio.sleep(every)
            try:
                resolved = await asyncio.get_running_loop().run_in_executor(
                    None, resolve, self.settings.model)
                if self.current is None or resolved.version != self.current.info.version:
                    await self.reload(resolved)
            except Exception:  # keep serving the current model; try again next time
                log.exception("following %s failed", self.settings.model)

    async def close(self) -> None:
        if self.current is None:
            return
        if self.current.batcher is not None:
            await self.current.batcher.close()
        if hasattr(self.current.adapter, "close"):  # a language model's decoding thread
            await asyncio.get_running_loop().run_in_executor(None, self.current.adapter.close)
