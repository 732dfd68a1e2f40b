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
    batcher: MicroBatcher | None  # None for language models, which stream one at a time
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


def is_language_model(ref: str) -> bool:
    """An external language model, or a zero2one model of the text-generation task (read from
    its manifest; the model itself loads later)."""
    if is_external_language_model(ref):
        return True
    from zero2one.artifacts import read_manifest
    from zero2one.refs import resolve

    return read_manifest(resolve(ref).path).get("task") == "text-generation"


def _load_language_model(settings: ServeSettings, metrics: Metrics) -> Served:
    from pathlib import Path

    from zero2one.serving.textgen import LMEngine
    from zero2one.tasks.textgen.models import load_lm

    start = time.perf_counter()
    ref = settings.model
    version, manifest = None, {"task": "text-generation"}
    if is_external_language_model(ref):
        model, tokenizer = load_lm(ref)
        name = ref.removeprefix("builtin:") if ref.startswith("builtin:") else Path(ref).name
    else:  # fine-tuned by zero2one: verified and loaded like any zero2one model
        from zero2one.api import load

        tuned = load(ref, trust=settings.trust)
        model, tokenizer = tuned.model_, tuned.tokenizer_  # type: ignore[attr-defined]
        manifest = tuned.manifest  # type: ignore[attr-defined]
        name = tuned.ref.name or manifest.get("name", "model")  # type: ignore[attr-defined]
        version = tuned.ref.version  # type: ignore[attr-defined]
    seconds = time.perf_counter() - start
    info = ModelInfo(name=name, version=version, ref=ref, task="text-generation")
    metrics.load_seconds.set(seconds)
    metrics.model_info.clear()
    metrics.model_info.labels(info.name, version or "", info.task).set(1)
    engine = LMEngine(model, tokenizer, name, precision=settings.precision)
    return Served(info, engine, None, seconds, time.time(),
                  {**manifest, "name": name})


def load_served(settings: ServeSettings, metrics: Metrics) -> Served:
    """Resolve, verify and load ``settings.model`` (the only place a model is loaded from)."""
    from zero2one.api import load

    if is_language_model(settings.model):
        return _load_language_model(settings, metrics)
    start = time.perf_counter()
    model = load(settings.model, trust=settings.trust)
    adapter: Any
    if model.name == "image-classification":
        from zero2one.serving.images import ImageAdapter

        adapter = ImageAdapter(model, max_rows=settings.max_batch,  # type: ignore[arg-type]
                               max_pixels=settings.max_image_pixels,
                               max_image_bytes=settings.max_image_bytes)
    elif hasattr(model, "columns_"):
        adapter = TabularAdapter(model, max_rows=settings.max_batch)  # type: ignore[arg-type]
    else:
        raise UserError(f"{settings.model}: task {model.name!r} cannot be served yet")
    seconds = time.perf_counter() - start
    ref = model.ref  # type: ignore[attr-defined]
    manifest = model.manifest  # type: ignore[attr-defined]
    info = ModelInfo(name=ref.name or manifest.get("name", "model"), version=ref.version,
                     ref=settings.model, task=model.name)
    batcher = MicroBatcher(adapter.predict, max_size=settings.batch_max_size,
                           max_wait=settings.batch_max_wait_ms / 1000,
                           on_batch=metrics.observe_batch)
    metrics.load_seconds.set(seconds)
    metrics.model_info.clear()
    metrics.model_info.labels(info.name, info.version or "", info.task).set(1)
    return Served(info, adapter, batcher, seconds, time.time(), manifest)


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
