"""Feedback in the server (``zero2one serve MODEL --feedback default|URL``).

Routes record each answer (:func:`remember`) under the id it carries, off the event loop; a
store that fails is logged and the answer still goes out. ``POST /v1/feedback`` takes a rating
(up/down or 1-5), a comment and a correction for a recorded id.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from zero2one.errors import DataError
from zero2one.feedback import UnknownId
from zero2one.serving.errors import JSON, APIError, read_body
from zero2one.serving.monitor import offer_text
from zero2one.serving.schemas import ERROR_RESPONSES, ErrorResponse, json_body
from zero2one.serving.security import Guarded

log = logging.getLogger(__name__)
router = APIRouter(tags=["feedback"], dependencies=Guarded)


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64, description="The id of the answer.")
    rating: str | int | None = Field(None, description="up, down, or 1-5 stars.")
    comment: str | None = Field(None, description="Free text (at most 2000 characters).")
    correction: str | None = Field(None, description="What the answer should have been.")


def store(request: Request) -> Any:
    return getattr(request.app.state, "feedback", None)


async def remember(request: Request, ident: str, *, route: str, body: Any,
                   output: Any, finish: str | None = None) -> None:
    """Record an answer when feedback is on (a failing store is logged, not raised), and
    offer it to the monitor when monitoring is on."""
    offer_text(request, ident, route, body, output, finish=finish)
    found = store(request)
    if found is None:
        return
    info = request.app.state.holder.current.info
    try:
        await run_in_threadpool(found.record, ident, route=route, model=info.name,
                                version=info.version, request=body, output=output)
    except Exception:  # the answer matters more than its record
        log.exception("could not record answer %s in the feedback store", ident)


@router.post("/v1/feedback", summary="Rate, comment on or correct an answer",
             openapi_extra=json_body(FeedbackRequest),
             responses={**ERROR_RESPONSES, 404: {"model": ErrorResponse,
                                                 "description": "No answer has this id"}})
async def feedback(request: Request) -> JSON:
    found = store(request)
    body = await read_body(request, FeedbackRequest, status=400,
                           kind="invalid_request_error", malformed="invalid_request_error")
    try:
        saved = await run_in_threadpool(found.rate, body.id, rating=body.rating,
                                        comment=body.comment, correction=body.correction)
    except UnknownId as exc:
        raise APIError(404, "not_found", str(exc), param="id") from None
    except DataError as exc:
        raise APIError(400, "invalid_request_error", str(exc)) from None
    return JSON(saved)
