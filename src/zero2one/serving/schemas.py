"""Request and response bodies of the HTTP API (kept apart from the routes)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

Value = float | int | str | bool | None


class PredictRequest(BaseModel):
    """Exactly one of ``features`` (one row), ``instances`` (rows) or ``records`` (named rows)."""

    model_config = ConfigDict(extra="forbid")

    features: list[Value] | None = Field(
        None, description="One row, values in the model's column order.",
        examples=[[5.1, 3.5, 1.4, 0.2]])
    instances: list[list[Value]] | None = Field(
        None, description="Several rows, each in the model's column order.")
    records: list[dict[str, Value]] | None = Field(
        None, description="Several rows as column name -> value.")
    probabilities: bool = Field(False, description="Also return class probabilities.")

    @model_validator(mode="after")
    def _one_form(self) -> PredictRequest:
        given = [n for n in ("features", "instances", "records") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("send exactly one of features, instances or records"
                             + (f" (got {', '.join(given)})" if given else ""))
        return self


class ModelInfo(BaseModel):
    name: str
    version: str | None = None
    ref: str
    task: str


class PredictResponse(BaseModel):
    result: list[Any] = Field(description="One prediction per row (a class or a number).")
    labels: list[str] | None = Field(None, description="Class names of the predictions.")
    probabilities: list[dict[str, float]] | None = Field(
        None, description="Per row, class name -> probability (when asked and available).")
    model: ModelInfo
    request_id: str | None = None


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
