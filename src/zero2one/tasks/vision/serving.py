"""Request images -> an image classifier's top-k classes.

Images arrive as multipart uploads (``file``/``files`` fields) or base64 strings in JSON
(``{"image": ...}`` or ``{"images": [...]}``). Each is checked for size in bytes, pixel count
(read from the header before decoding, so decompression bombs are refused) and format, then
resized and normalised as in training; the network runs once per micro-batch.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.requests import Request

from zero2one.errors import DataError, SchemaError
from zero2one.monitoring.reference import embedding_rows, log_probabilities
from zero2one.serving.adapter import BaseAdapter
from zero2one.serving.errors import APIError, read_body
from zero2one.tasks.vision.data import read_image

if TYPE_CHECKING:
    from zero2one.tasks.vision.task import ImageClassification


class ImagePredictRequest(BaseModel):
    """Exactly one of ``image`` or ``images`` (base64-encoded PNG/JPEG/BMP/GIF/WebP)."""

    model_config = ConfigDict(extra="forbid")

    image: str | None = Field(None, description="One base64-encoded image.")
    images: list[str] | None = Field(None, description="Several base64-encoded images.")
    top_k: int = Field(3, ge=1, le=1000, description="Classes to return per image.")

    @model_validator(mode="after")
    def _one_form(self) -> ImagePredictRequest:
        if (self.image is None) == (self.images is None):
            raise ValueError("send exactly one of image or images")
        return self


class ImageAdapter(BaseAdapter):
    def __init__(self, model: ImageClassification, *, max_rows: int, max_pixels: int,
                 max_image_bytes: int) -> None:
        self.model = model
        self.max_rows = max_rows
        self.max_pixels = max_pixels
        self.max_image_bytes = max_image_bytes

    def schema(self) -> dict[str, Any]:
        return {"image_size": self.model.image_size_, "channels": self.model.channels_,
                "formats": ["PNG", "JPEG", "BMP", "GIF", "WEBP"],
                "max_pixels": self.max_pixels, "max_image_bytes": self.max_image_bytes}

    def playground(self) -> dict[str, Any]:
        """Image upload; the top classes come back with their probabilities."""
        return {"kind": "upload", "route": "/predict", "field": "file",
                "accept": "image/png,image/jpeg,image/bmp,image/gif,image/webp",
                "max_bytes": self.max_image_bytes, "max_files": min(self.max_rows, 16),
                "top_k": min(5, len(self.model.class_names_))}

    async def parse(self, request: Request) -> tuple[list[Any], dict[str, Any]]:
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            blobs, top_k = await self._multipart(request)
        else:
            body = await read_body(request, ImagePredictRequest)
            encoded = [body.image] if body.image is not None else body.images or []
            blobs = [self._b64(i, text) for i, text in enumerate(encoded)]
            top_k = body.top_k
        if not blobs:
            raise SchemaError("no images: send at least one")
        if len(blobs) > self.max_rows:
            raise SchemaError(f"{len(blobs)} images is over the maximum of {self.max_rows}")
        rows = [self._decode(i, blob) for i, blob in enumerate(blobs)]
        return rows, {"top_k": top_k}

    async def _multipart(self, request: Request) -> tuple[list[bytes], int]:
        try:
            form = await request.form(max_files=self.max_rows, max_fields=20,
                                      max_part_size=self.max_image_bytes)
        except Exception as exc:  # starlette raises its own errors for malformed forms
            raise APIError(400, "invalid_form", f"malformed multipart form: {exc}") from None
        blobs = []
        for key in ("file", "files", "image", "images"):
            for item in form.getlist(key):
                if isinstance(item, str):
                    raise SchemaError(f"form field {key!r} must be a file upload")
                blobs.append(await item.read())
        raw_k = form.get("top_k", "3")
        try:
            top_k = int(str(raw_k))
        except ValueError:
            raise SchemaError(f"top_k must be an integer, got {raw_k!r}") from None
        if not 1 <= top_k <= 1000:
            raise SchemaError("top_k must be between 1 and 1000")
        return blobs, top_k

    def _b64(self, i: int, text: str) -> bytes:
        return from_base64(text, f"image {i}", self.max_image_bytes)

    def _decode(self, i: int, blob: bytes) -> Any:
        image = request_image(blob, f"image {i}", max_bytes=self.max_image_bytes,
                              max_pixels=self.max_pixels)
        return self.model.prepare([image])[0]  # (C, S, S) normalised

    def predict(self, rows: list[Any]) -> list[Any]:
        import torch

        return list(self.model.probabilities(torch.stack(rows)))

    def monitored_embeddings(self, results: list[Any]) -> list[list[float]] | None:
        return embedding_rows(log_probabilities(results))

    def response(self, results: list[Any], options: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        top = self.model.top_k(np.stack(results), options["top_k"])
        return {"result": [t[0]["index"] for t in top], "labels": [t[0]["label"] for t in top],
                "top_k": top}


def from_base64(text: str, where: str, most: int) -> bytes:
    """A request's base64 image (or the payload of a ``data:`` URL), at most ``most`` bytes;
    anything else a one-line SchemaError naming ``where``."""
    if "," in text[:100] and text.startswith("data:"):
        text = text.split(",", 1)[1]  # a data: URL
    if len(text) > most * 4 // 3 + 4:
        raise SchemaError(f"{where}: over {most} bytes")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SchemaError(f"{where}: not valid base64") from None


def request_image(blob: bytes, where: str, *, max_bytes: int, max_pixels: int) -> Any:
    """A request's image bytes decoded (mode L or RGB), within the byte and pixel limits (the
    pixels read from the header, before decoding); a bad one is a SchemaError (a 4xx)."""
    if len(blob) > max_bytes:
        raise SchemaError(f"{where}: {len(blob)} bytes is over {max_bytes}")
    try:
        return read_image(blob, name=where, max_pixels=max_pixels)
    except DataError as exc:
        raise SchemaError(str(exc)) from None
