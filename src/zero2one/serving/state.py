"""The served model and its hot swap: requests in flight keep the model they started with."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from zero2one.errors import UserError
from zero2one.serving.batching import MicroBatcher
from zero2one.serving.metrics import Metrics
from zero2one.serving.schemas import ModelInfo
from zero2one.serving.settings import ServeSettings
from zero2one.serving.tabular import TabularAdapter

log = logging.getLogger(__name__)


@dataclass
class Served:
    """One loaded model with its adapter and batcher."""

    info: ModelInfo
    adapter: Any  # TabularAdapter, ImageAdapter (parse, predict, response) or LMEngine
    batcher: MicroBatcher | None  # None for language models: their engine batches
    load_seconds: float
    loaded_at: float
    manifest: dict[str, Any]

    def __post_init__(self) -> None:
        self.info_dict = self.info.model_dump()  # built once, sent with every answer


def is_external_language_model(ref: str) -> bool:
    """builtin:, a .gguf file, or a transformers directory (config.json, no zero2one manifest)."""
    from pathlib import Path

    path = Path(ref).expanduser()
    return (ref.startswith("builtin:") or path.suffix == ".gguf"
            or (path.is_dir() and (path / "config.json").exists()
                and not (path / "manifest.json").exists()))


def served_task(ref: str) -> str:
    """The task of the model ``ref`` names, read before it loads (the routes depend on it):
    text-generation for an external language model, else the manifest's task."""
    if is_external_language_model(ref):
        return "text-generation"
    from zero2one.artifacts import read_manifest
    from zero2one.refs import resolve

    return str(read_manifest(resolve(ref).path)["task"])


def load_served(settings: ServeSettings, metrics: Metrics) -> Served:
    """Resolve, verify and load ``settings.model`` (the only place a model is loaded from)."""
    from pathlib import Path

    from zero2one.api import load

    start = time.perf_counter()
    ref = settings.model
    batcher = None
    adapter: Any
    if is_external_language_model(ref):  # no zero2one manifest: loaded by transformers
        from zero2one.serving.textgen import LMEngine
        from zero2one.tasks.textgen.models import load_lm

        lm, tokenizer = load_lm(ref)
        name = ref.removeprefix("builtin:") if ref.startswith("builtin:") else Path(ref).name
        info = ModelInfo(name=name, version=None, ref=ref, task="text-generation")
        manifest: dict[str, Any] = {"task": info.task, "name": name}
        adapter = LMEngine(lm, tokenizer, name, precision=settings.precision)
    else:
        model = load(ref, trust=settings.trust)
        manifest = model.manifest  # type: ignore[attr-defined]
        resolved = model.ref  # type: ignore[attr-defined]
        info = ModelInfo(name=resolved.name or manifest.get("name", "model"),
                         version=resolved.version, ref=ref, task=model.name)
        adapter = _adapter(model, settings, info.name)
        if model.name != "text-generation":  # language models batch in their engine
            batcher = MicroBatcher(adapter.predict, max_size=settings.batch_max_size,
                                   max_wait=settings.batch_max_wait_ms / 1000,
                                   on_batch=metrics.observe_batch)
    seconds = time.perf_counter() - start
    metrics.load_seconds.set(seconds)
    metrics.model_info.clear()
    metrics.model_info.labels(info.name, info.version or "", info.task).set(1)
    return Served(info, adapter, batcher, seconds, time.time(), manifest)


def _adapter(model: Any, settings: ServeSettings, name: str) -> Any:
    """What answers requests for a loaded zero2one model of any servable task."""
    if model.name == "text-generation":
        from zero2one.serving.textgen import LMEngine

        return LMEngine(model.model_, model.tokenizer_, name, precision=settings.precision)
    if model.name == "image-classification":
        from zero2one.serving.images import ImageAdapter

        return ImageAdapter(model, max_rows=settings.max_batch,
                            max_pixels=settings.max_image_pixels,
                            max_image_bytes=settings.max_image_bytes)
    if hasattr(model, "columns_"):
        return TabularAdapter(model, max_rows=settings.max_batch)
    raise UserError(f"{settings.model}: task {model.name!r} cannot be served yet")


class ModelHolder:
    """Holds the current :class:`Served`; :meth:`reload` swaps it without dropping requests."""

    def __init__(self, settings: ServeSettings, metrics: Metrics) -> None:
        self.settings, self.metrics = settings, metrics
        self.current: Served | None = None
        self._lock = asyncio.Lock()

    async def load(self) -> Served:
        loop = asyncio.get_running_loop()
        self.current = await loop.run_in_executor(None, load_served, self.settings, self.metrics)
        return self.current

    async def reload(self) -> tuple[Served | None, Served]:
        """Load the reference again (an alias may point elsewhere now) and swap it in."""
        async with self._lock:
            old = self.current
            loop = asyncio.get_running_loop()
            new = await loop.run_in_executor(None, load_served, self.settings, self.metrics)
            self.current = new
        if old is not None and old.batcher is not None:
            # requests already queued on the old batcher still finish on the old model
            asyncio.get_running_loop().create_task(old.batcher.close())
        if old is not None and hasattr(old.adapter, "close"):  # its batch finishes first
            asyncio.get_running_loop().run_in_executor(None, old.adapter.close)
        log.info("serving %s version %s", new.info.name, new.info.version)
        return old, new

    async def follow(self, every: float) -> None:
        """Poll the reference; swap when it resolves to another version."""
        from zero2one.refs import resolve

        while True:
            await asyncio.sleep(every)
            try:
                resolved = await asyncio.get_running_loop().run_in_executor(
                    None, resolve, self.settings.model)
                if self.current is None or resolved.version != self.current.info.version:
                    await self.reload()
            except Exception:  # keep serving the current model; try again next time
                log.exception("following %s failed", self.settings.model)

    async def close(self) -> None:
        if self.current is None:
            return
        if self.current.batcher is not None:
            await self.current.batcher.close()
        if hasattr(self.current.adapter, "close"):  # a language model's decoding thread
            await asyncio.get_running_loop().run_in_executor(None, self.current.adapter.close)
