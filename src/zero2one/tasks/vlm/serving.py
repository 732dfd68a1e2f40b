"""A vision-language model behind the server: ``/predict`` (``{"image": BASE64, "question":
...}`` or ``{"instances": [...]}``) and OpenAI's ``/v1/chat/completions`` with ``image_url``
content parts (base64 ``data:`` URLs), streamed or not, through the language models' own route
(:mod:`zero2one.tasks.textgen.openai`: auth, limits, metrics, moderation of the text parts and
feedback are the same). The model answers the last user message about the conversation's one
image; answers are decoded one request at a time (no batching across requests yet).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.requests import Request

from zero2one.errors import SchemaError, UserError
from zero2one.serving.adapter import BaseAdapter
from zero2one.serving.errors import read_body
from zero2one.serving.routes.predict import predict_routes
from zero2one.tasks.textgen import openai
from zero2one.tasks.textgen.generate import Outcome
from zero2one.tasks.vision.serving import from_base64, request_image

if TYPE_CHECKING:
    from zero2one.tasks.vlm.task import VisionLanguage

IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp")
DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)(?P<params>(;[^,;]*)*?);base64,")
MAX_IMAGES = 1  # per conversation: the model was trained on one image per question
FETCH_SECONDS = 10.0  # --allow-image-urls: the longest an image's download may take


class Instance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: str = Field(description="A base64-encoded image (or a data: URL).")
    question: str = Field(min_length=1, max_length=2000)


class VLPredictRequest(BaseModel):
    """One ``image`` and ``question``, or ``instances``."""

    model_config = ConfigDict(extra="forbid")

    image: str | None = None
    question: str | None = Field(None, min_length=1, max_length=2000)
    instances: list[Instance] | None = None
    max_tokens: int = Field(16, ge=1, le=256)

    @model_validator(mode="after")
    def _one_form(self) -> VLPredictRequest:
        if (self.instances is None) == (self.image is None or self.question is None):
            raise ValueError("send image and question, or instances")
        return self


@dataclass
class VLPrompt:
    question: str
    image: Any  # a PIL image


class VLAdapter(BaseAdapter):
    def __init__(self, model: VisionLanguage, name: str, *, max_rows: int = 16,
                 max_pixels: int = 40_000_000, max_image_bytes: int = 10_000_000,
                 allow_urls: bool = False) -> None:
        self.model, self.name, self.allow_urls = model, name, allow_urls
        self.max_rows, self.max_pixels, self.max_image_bytes = max_rows, max_pixels, \
            max_image_bytes
        self.template = None  # no tool calls: the model answers questions about an image
        self._lock = threading.Lock()  # one decoding at a time (torch's global seed)

    def schema(self) -> dict[str, Any]:
        return {"inputs": {"image": "base64 image", "question": "text"},
                "max_images": MAX_IMAGES,
                "formats": ["PNG", "JPEG", "BMP", "GIF", "WEBP"],
                "max_pixels": self.max_pixels, "max_image_bytes": self.max_image_bytes}

    # ---- /predict ---------------------------------------------------------------------------

    async def parse(self, request: Request) -> tuple[list[Any], dict[str, Any]]:
        body = await read_body(request, VLPredictRequest)
        pairs = [(i.image, i.question) for i in body.instances] if body.instances is not None \
            else [(body.image or "", body.question or "")]
        if not pairs:
            raise SchemaError("no instances: send at least one")
        if len(pairs) > self.max_rows:
            raise SchemaError(f"{len(pairs)} instances is over the maximum of {self.max_rows}")
        rows = [(self.image(from_base64(text, f"instances.{i}.image", self.max_image_bytes),
                            f"instances.{i}.image"), question, body.max_tokens)
                for i, (text, question) in enumerate(pairs)]
        return rows, {}

    def predict(self, rows: list[Any]) -> list[Any]:
        """(image, question, max_tokens) rows of several requests: decoded together where
        they ask for the same number of tokens."""
        answers: list[Any] = [None] * len(rows)
        budgets: dict[int, list[int]] = {}
        for i, row in enumerate(rows):
            budgets.setdefault(row[2], []).append(i)
        with self._lock:
            for budget, where in budgets.items():
                said = self.model.answer([rows[i][0] for i in where],
                                         [rows[i][1] for i in where], max_new_tokens=budget)
                for i, text in zip(where, said, strict=True):
                    answers[i] = text
        return answers

    def response(self, results: list[Any], options: dict[str, Any]) -> dict[str, Any]:
        return {"answers": list(results)}

    def image(self, blob: bytes, where: str) -> Any:
        return request_image(blob, where, max_bytes=self.max_image_bytes,
                             max_pixels=self.max_pixels)

    # ---- the chat route's engine ------------------------------------------------------------

    async def read_images(self, parts: list[tuple[str, str]]) -> list[Any]:
        """The ``image_url`` parts' images (url, where), decoded in a worker thread: base64
        ``data:`` URLs of the usual image types, and http(s) URLs where the server allows
        fetching them (:func:`fetch`)."""
        if len(parts) > MAX_IMAGES:
            raise SchemaError(f"{len(parts)} images: this model reads {MAX_IMAGES} per "
                              "conversation")
        return [await asyncio.to_thread(self.read_image_url, url, where) for url, where in parts]

    def read_image_url(self, url: str, where: str) -> Any:
        if url.startswith(("http://", "https://")):
            if not self.allow_urls:
                raise SchemaError(f"{where}: this server does not fetch image URLs (zero2one "
                                  "serve --allow-image-urls); send the image inline as a "
                                  "base64 data: URL")
            return self.image(fetch(url, where, self.max_image_bytes), where)
        found = DATA_URL.match(url)
        if found is None:
            raise SchemaError(f"{where}: not a base64 data: URL (data:image/png;base64,...)")
        if found["type"].lower() not in IMAGE_TYPES:
            raise SchemaError(f"{where}: unsupported image type {found['type']}; send one of "
                              f"{', '.join(IMAGE_TYPES)}")
        return self.image(from_base64(url[found.end():], where, self.max_image_bytes), where)

    def chat_prompt(self, messages: list[dict[str, Any]], tools: Any = None, *,
                    images: list[Any] | None = None) -> VLPrompt:
        if tools:
            raise UserError("this model does not call tools")
        if not images:
            raise UserError("this model answers questions about an image: send one image_url "
                            "part")
        question = next((str(m["content"]) for m in reversed(messages)
                         if m["role"] == "user"), "")
        question = question.replace(openai.IMAGE_MARK, " ").strip()
        if not question:
            raise UserError("the last user message has no question (a text part)")
        return VLPrompt(question, images[0])

    def count(self, prompt: Any) -> int:
        if isinstance(prompt, VLPrompt):
            return int(self.model.model_.count(prompt.question))
        return len(self.model.model_.tokenizer(str(prompt))["input_ids"])

    async def stream(self, prompt: Any, settings: Any,
                     outcome: Outcome | None = None) -> AsyncIterator[str]:
        """The answer's text pieces as decoded (a thread decodes; transformers' streamer)."""
        from transformers import TextIteratorStreamer

        if not isinstance(prompt, VLPrompt):
            raise UserError("this model answers questions about an image: use "
                            "/v1/chat/completions with an image_url part")
        if settings.json_schema is not None or settings.grammar is not None:
            raise UserError("this model does not take response_format or tools")
        tokenizer = self.model.model_.tokenizer
        # a pretrained model's generate hands the prompt to the streamer first: skipped
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True,
                                        timeout=600)
        loop = asyncio.get_running_loop()
        failure: list[BaseException] = []
        generated: list[int] = []

        def run() -> None:
            import torch

            try:
                with self._lock:
                    if settings.seed is not None:
                        torch.manual_seed(settings.seed)
                    generated.extend(self.model.generate_ids(
                        [prompt.image], [prompt.question], streamer=streamer,
                        max_new_tokens=settings.max_new_tokens,
                        temperature=settings.temperature, top_p=settings.top_p,
                        stop=settings.stop)[0])
            except BaseException as exc:  # handed to the caller, who re-raises it
                failure.append(exc)
                streamer.end()

        thread = threading.Thread(target=run, daemon=True, name="vlm-answer")
        thread.start()
        text = ""
        while True:
            piece = await loop.run_in_executor(None, next, streamer, None)
            if piece is None:
                break
            cut = _cut(text + piece, settings.stop)
            if cut is not None:
                if cut > len(text):
                    yield (text + piece)[len(text):cut]
                text = (text + piece)[:cut]
                break
            text += piece
            if piece:
                yield piece
        await loop.run_in_executor(None, thread.join)
        if failure:
            raise failure[0]
        if outcome is not None:
            ends = {tokenizer.eos_token_id, tokenizer.pad_token_id}
            outcome.completion_tokens = len(generated)
            outcome.finish_reason = "length" if len(generated) >= settings.max_new_tokens and \
                not ends & set(generated[-1:]) else "stop"

    def playground(self) -> dict[str, Any]:
        """A chat whose messages may carry an image (no schema, tools or system prompt)."""
        return {"kind": "chat", "route": "/v1/chat/completions", "chat": True,
                "max_tokens": 32, "temperature": 0.0, "images": MAX_IMAGES,
                "structured": False}


def fetch(url: str, where: str, most: int, *, seconds: float = FETCH_SECONDS) -> bytes:
    """An image URL's bytes: at most ``most`` of them, within ``seconds``, no redirects (a
    redirect could lead anywhere the server can reach); failures are one-line SchemaErrors."""
    import urllib.error
    import urllib.request

    class NoRedirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirects)
    deadline = time.monotonic() + seconds
    try:
        with opener.open(urllib.request.Request(url, headers={"Accept": "image/*"}),
                         timeout=seconds) as response:
            if response.status != 200:
                raise SchemaError(f"{where}: fetching the image answered {response.status}")
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isascii() and declared.isdigit() \
                    and int(declared) > most:
                raise SchemaError(f"{where}: the image is {declared} bytes, over {most}")
            blob = b""
            while len(blob) <= most:
                if time.monotonic() > deadline:
                    raise SchemaError(f"{where}: fetching the image took over {seconds:g} s")
                chunk = response.read(65536)
                if not chunk:
                    break
                blob += chunk
    except urllib.error.HTTPError as exc:
        raise SchemaError(f"{where}: fetching the image answered {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SchemaError(f"{where}: cannot fetch the image ({reason})") from None
    if len(blob) > most:
        raise SchemaError(f"{where}: the image is over {most} bytes")
    return blob


def _cut(text: str, stops: list[str]) -> int | None:
    """Where the first stop string starts in ``text`` (None: none is in it)."""
    found = [text.find(s) for s in stops if s in text]
    return min(found) if found else None


def routes() -> list[Any]:
    content = {"application/json": {"schema": VLPredictRequest.model_json_schema()}}
    return [*predict_routes(content=content, summary="Answers to questions about images"),
            openai.router]
