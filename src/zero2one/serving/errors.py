"""One JSON error shape for every 4xx/5xx: ``{"error": {"type", "message"}, "request_id"}``."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from zero2one.errors import ModelRefError, SchemaError, UserError

log = logging.getLogger(__name__)


M = TypeVar("M", bound=BaseModel)


async def read_body(request: Request, model: type[M], *, status: int = 422,
                    kind: str = "invalid_input", malformed: str = "invalid_json") -> M:
    """The request's JSON body validated by ``model``. Parsed with orjson (which refuses NaN and
    Infinity) rather than by FastAPI; malformed JSON is a 400, a body the model refuses is a
    ``status`` whose message names the fields (:func:`describe`)."""
    try:
        data = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise APIError(400, malformed, f"malformed JSON: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise APIError(status, kind, describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """A pydantic error as one line: ``features: Input should be a valid list; ...``."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts[:5]) + (f" (+{len(parts) - 5} more)" if len(parts) > 5 else "")


class JSON(Response):
    """A JSON response rendered by orjson (fast; refuses NaN rather than writing it)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class APIError(Exception):
    """An error answered with ``status`` and a message meant for the caller."""

    def __init__(self, status: int, kind: str, message: str,
                 headers: dict[str, str] | None = None, *, code: str | None = None,
                 param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers
        self.code, self.param = code, param  # OpenAI's error fields, where they apply


def error_body(kind: str, message: str, request_id: str | None, *, code: str | None = None,
               param: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": kind, "message": message}
    if code is not None:
        error["code"] = code
    if param is not None:
        error["param"] = param
    return {"error": error, "request_id": request_id}


def _rid(request: Request) -> str | None:
    return request.scope.get("state", {}).get("request_id")


def install(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSON:
        return JSON(error_body(exc.kind, exc.message, _rid(request), code=exc.code,
                               param=exc.param), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(SchemaError)
    async def _schema(request: Request, exc: SchemaError) -> JSON:
        return JSON(error_body("invalid_input", str(exc), _rid(request)), 422)

    @app.exception_handler(ModelRefError)
    async def _ref(request: Request, exc: ModelRefError) -> JSON:
        return JSON(error_body("model_not_found", str(exc), _rid(request)), 404)

    @app.exception_handler(UserError)
    async def _user(request: Request, exc: UserError) -> JSON:
        return JSON(error_body("invalid_request", str(exc), _rid(request)), 400)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSON:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"] if p != "body")
            parts.append(f"{where}: {err['msg']}" if where else err["msg"])
        return JSON(error_body("invalid_input", "; ".join(parts), _rid(request)), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSON:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSON(error_body(kind, str(exc.detail), _rid(request)),
                              status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSON:
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return JSON(error_body("internal_error", "internal server error",
                                         _rid(request)), 500)
