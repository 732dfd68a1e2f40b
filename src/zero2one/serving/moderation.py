"""Moderation in the server (``zero2one serve MODEL --moderation default|FILE.yaml``).

The moderator is built once with the app (a bad configuration fails before the server
starts). Routes that take or produce free text (a task's generative routes) call
:func:`check_input` and :func:`output_policy`; ``POST /v1/moderations`` answers in OpenAI's
format for any text.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from zero2one.serving.errors import JSON, APIError, read_body
from zero2one.serving.monitor import offer_text
from zero2one.serving.schemas import ERROR_RESPONSES, json_body
from zero2one.serving.security import Guarded

router = APIRouter(tags=["moderation"], dependencies=Guarded)
MAX_INPUTS = 32


class ModerationRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: str | list[str] = Field(description="A text or a list of texts.")
    model: str | None = None


def moderator(request: Request) -> Any:
    """The app's moderator, or None when moderation is off."""
    return getattr(request.app.state, "moderator", None)


def check_input(request: Request, texts: list[str], *, param: str) -> None:
    """Refuse a request whose text moderation blocks: a 400 in OpenAI's error shape naming
    the category (``code: content_policy_violation``)."""
    found = moderator(request)
    if found is None or not found.config.inputs:
        return
    for text in texts:
        verdict = found.check(text, where="input")
        if verdict.blocked:
            offer_text(request, "", request.url.path, {"prompt": text}, "", finish="refused")
            raise APIError(400, "invalid_request_error",
                           f"the input was flagged by moderation: {verdict.reason()}",
                           code="content_policy_violation", param=param)


def output_policy(request: Request) -> str:
    """What to do with a flagged output: block, redact, regenerate, or off."""
    found = moderator(request)
    return "off" if found is None else str(found.config.outputs)


@router.post("/v1/moderations", summary="Moderation of texts (OpenAI's format)",
             openapi_extra=json_body(ModerationRequest), responses=ERROR_RESPONSES)
async def moderations(request: Request) -> JSON:
    body = await read_body(request, ModerationRequest, status=400,
                           kind="invalid_request_error", malformed="invalid_request_error")
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or len(texts) > MAX_INPUTS:
        raise APIError(400, "invalid_request_error",
                       f"input: send 1 to {MAX_INPUTS} texts", param="input")
    found = moderator(request)
    results = [found.check(text, where="moderations").openai() for text in texts]
    return JSON({"id": f"modr-{uuid.uuid4().hex[:24]}", "model": "zero2one-moderation",
                 "created": int(time.time()), "results": results})
