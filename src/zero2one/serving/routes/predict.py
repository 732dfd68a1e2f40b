"""``POST /predict``: the classic ``{"features": [...]}`` -> ``{"result": [...]}`` contract, plus
batches (``instances``) and named columns (``records``)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.routing import Route

from zero2one.errors import SchemaError
from zero2one.serving.errors import JSON, APIError
from zero2one.serving.schemas import ERROR_RESPONSES, PredictRequest, PredictResponse
from zero2one.serving.security import Guarded, rate_limit, require_api_key

router = APIRouter(tags=["predict"], dependencies=Guarded)


@router.post(
    "/predict",
    summary="Predict one row, a batch, or named records",
    response_model=PredictResponse,
    responses=ERROR_RESPONSES,
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": PredictRequest.model_json_schema()}}}},
)
async def predict(request: Request) -> JSON:
    """Documents the route in OpenAPI; requests are served by :data:`fast_route`."""
    return await _predict(request)


async def _guarded_predict(request: Request) -> JSON:
    await require_api_key(request)
    await rate_limit(request)
    return await _predict(request)


# The hot path as a plain Starlette route, placed before the FastAPI one: the same handler and
# the same checks, without FastAPI's per-request dependency solving (about a third of the
# request's cost at this size). Errors still go through the app's exception handlers.
fast_route = Route("/predict", _guarded_predict, methods=["POST"], include_in_schema=False)


async def _predict(request: Request) -> JSON:
    # the body is parsed here rather than by FastAPI: orjson refuses NaN and Infinity, and the
    # rows are checked against the model's schema without a second pass
    raw = await request.body()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise APIError(400, "invalid_json", f"malformed JSON: {exc}") from None
    try:
        body = PredictRequest.model_validate(data)
    except ValidationError as exc:
        raise APIError(422, "invalid_input", _describe(exc)) from None
    served = request.app.state.holder.current
    rows = served.adapter.rows(body)
    try:
        results = await served.batcher.submit(rows)
    except (ValueError, TypeError) as exc:  # what scikit-learn says about values it refuses
        raise SchemaError(f"the model refused the input: {exc}") from None
    content = served.adapter.response(results, body.probabilities)
    content["model"] = served.info_dict
    content["request_id"] = request.scope["state"]["request_id"]
    return JSON(content)


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts[:5]) + (f" (+{len(parts) - 5} more)" if len(parts) > 5 else "")
