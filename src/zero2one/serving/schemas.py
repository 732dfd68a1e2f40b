"""Request and response bodies of the HTTP API (kept apart from the routes)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ModelInfo(BaseModel):
    name: str
    version: str | None = None
    ref: str
    task: str


class ErrorDetail(BaseModel):
    type: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail
    request_id: str | None = None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        400: "Malformed JSON or request", 401: "Missing or wrong API key",
        413: "Body too large", 422: "Input does not fit the model", 429: "Rate limited",
    }.items()
}
