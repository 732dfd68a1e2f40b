"""``POST /v1/images/generations`` in OpenAI's shape, for image-generation models.

Requests are checked on the event loop (limits, prompt window, size) and queued; one worker
thread takes every request queued within a short gathering window and draws them together
(:meth:`ImageGeneration.generate_many` shares one denoising loop between compatible requests).
Requests that arrive during a batch form the next one.
"""

from __future__ import annotations

import asyncio
import base64
import queue
import threading
import time
from collections import deque
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from zero2one.errors import UserError
from zero2one.serving.adapter import BaseAdapter
from zero2one.serving.errors import JSON, APIError, read_body
from zero2one.serving.feedback import remember
from zero2one.serving.moderation import check_input, moderator
from zero2one.serving.schemas import ERROR_RESPONSES, json_body
from zero2one.serving.security import Guarded
from zero2one.tasks.imagegen.generate import check_options
from zero2one.tasks.imagegen.images import png_bytes

router = APIRouter(tags=["openai"], dependencies=Guarded)


class ImagesRequest(BaseModel):
    """OpenAI's image-generation body, plus the diffusion options."""

    model_config = ConfigDict(extra="ignore")  # quality, style, user, ...: not ours to use

    prompt: str = Field(min_length=1, max_length=4000)
    model: str | None = None
    n: int = Field(1, ge=1)
    size: str | None = Field(None, description="WIDTHxHEIGHT, e.g. 16x16 or 512x512.")
    response_format: Literal["b64_json", "url"] = "b64_json"
    negative_prompt: str | None = None
    guidance_scale: float | None = None
    steps: int | None = None
    scheduler: str | None = None
    seed: int | None = None


class ImageEngine(BaseAdapter):
    """Draws images for queued requests in one worker thread, batching those that arrive
    together."""

    batched = False  # batches by itself

    def __init__(self, model: Any, name: str, *, max_images: int, max_steps: int,
                 max_pixels: int, max_batch_images: int = 16,
                 gather_seconds: float = 0.02) -> None:
        self.model, self.name = model, name
        self.max_images, self.max_steps, self.max_pixels = max_images, max_steps, max_pixels
        self.max_batch_images, self.gather_seconds = max_batch_images, gather_seconds
        self._pending: queue.Queue[Any] = queue.Queue()
        self.batch_sizes: deque[int] = deque(maxlen=1000)  # requests per batch, for tests and ops
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    def schema(self) -> dict[str, Any]:
        pipe = self.model.pipe_
        size = getattr(pipe, "image_size", None)
        defaults = self.model.defaults_
        return {"prompt": "text", "size": f"{size}x{size}" if size else "multiple of 8",
                "max_images": self.max_images, "max_steps": self.max_steps,
                "defaults": {"guidance_scale": defaults.guidance_scale, "steps": defaults.steps,
                             "scheduler": defaults.scheduler},
                "prompts": list(self.model.prompts_)}

    def playground(self) -> dict[str, Any]:
        """A prompt box with the diffusion options, their defaults and limits."""
        size = getattr(self.model.pipe_, "image_size", None)
        defaults = self.model.defaults_
        return {"kind": "prompt", "route": "/v1/images/generations",
                "size": f"{size}x{size}" if size else None, "max_images": self.max_images,
                "max_steps": self.max_steps, "guidance_scale": defaults.guidance_scale,
                "steps": defaults.steps, "examples": list(self.model.prompts_)[:64]}

    def options(self, body: ImagesRequest) -> Any:
        """The request as generation options, within the server's limits (else a 400)."""

        if body.response_format != "b64_json":
            raise APIError(400, "invalid_request_error", "response_format: only b64_json is "
                           "supported (this server keeps no image store to link to)")
        if body.n > self.max_images:
            raise APIError(400, "invalid_request_error",
                           f"n: at most {self.max_images} images per request")
        if body.steps is not None and body.steps > self.max_steps:
            raise APIError(400, "invalid_request_error",
                           f"steps: at most {self.max_steps} per request")
        width = height = None
        if body.size is not None:
            try:
                width, height = (int(v) for v in body.size.lower().split("x"))
            except ValueError:
                raise APIError(400, "invalid_request_error",
                               f"size {body.size!r}: use WIDTHxHEIGHT, e.g. 512x512") from None
            if width * height > self.max_pixels:
                raise APIError(400, "invalid_request_error",
                               f"size {body.size}: over the limit of {self.max_pixels} pixels")
        try:
            options = self.model.options(
                prompt=body.prompt, negative_prompt=body.negative_prompt,
                guidance_scale=body.guidance_scale, steps=body.steps,
                scheduler=body.scheduler, seed=body.seed, n=body.n, width=width, height=height)
            check_options(self.model.pipe_, options)
        except UserError as exc:
            raise APIError(400, "invalid_request_error", str(exc)) from None
        return options

    async def draw(self, options: Any) -> tuple[list[bytes], list[int]]:
        """PNG bytes and seeds for one request, drawn in a batch with others queued now."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._ensure_worker()
        self._pending.put((options, loop, future))
        return await future  # type: ignore[no-any-return]

    def close(self) -> None:
        if self._worker is not None and self._worker.is_alive():
            self._pending.put(None)
            self._worker.join(timeout=120)

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run, daemon=True, name="draw")
                self._worker.start()

    def _run(self) -> None:
        while True:
            first = self._pending.get()
            if first is None:
                return
            batch, images = [first], first[0].n
            deadline = time.monotonic() + self.gather_seconds
            while images < self.max_batch_images:
                try:
                    item = self._pending.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:  # close() while gathering: this batch first
                    self._pending.put(None)
                    break
                batch.append(item)
                images += item[0].n
            self.batch_sizes.append(len(batch))
            try:
                done = self.model.generate_many([options for options, _, _ in batch])
                answers = [([png_bytes(im) for im in pictures], seeds)
                           for pictures, seeds in done]
            except BaseException as exc:  # every caller of the batch hears of it
                for _, loop, future in batch:
                    loop.call_soon_threadsafe(_fail, future, exc)
            else:
                for (_, loop, future), answer in zip(batch, answers, strict=True):
                    loop.call_soon_threadsafe(_resolve, future, answer)


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():  # a caller that went away
        future.set_result(value)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


@router.post("/v1/images/generations", summary="OpenAI-compatible image generation",
             openapi_extra=json_body(ImagesRequest), responses=ERROR_RESPONSES)
async def generations(request: Request) -> JSON:
    body = await read_body(request, ImagesRequest, status=400, kind="invalid_request_error",
                           malformed="invalid_request_error")
    check_input(request, [body.prompt], param="prompt")
    engine: ImageEngine = request.app.state.holder.current.adapter
    options = engine.options(body)
    try:
        pngs, seeds = await engine.draw(options)
    except UserError as exc:
        raise APIError(400, "invalid_request_error", str(exc)) from None
    ident = f"img-{request.scope['state']['request_id']}"
    await remember(request, ident, route="/v1/images/generations",
                   body=body.model_dump(exclude_none=True),
                   output={"seeds": seeds})  # the seeds redraw the images; not the PNGs
    data: list[dict[str, Any]] = []
    found = moderator(request)
    for png, seed in zip(pngs, seeds, strict=True):
        verdict = found.check_image(png) if found is not None else None
        if verdict is not None and verdict.blocked:  # withheld, saying why
            data.append({"b64_json": None, "seed": seed,
                         "content_filter": {"categories": verdict.categories}})
        else:
            data.append({"b64_json": base64.b64encode(png).decode(), "seed": seed})
    return JSON({"id": ident, "created": int(time.time()), "data": data, "model": engine.name})


