"""``POST /predict``: for tabular models the classic ``{"features": [...]}`` ->
``{"result": [...]}`` contract, plus batches (``instances``) and named columns (``records``);
for image models, uploads or base64 images -> top-k classes. The loaded model's adapter parses
the request and shapes the answer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.routing import Route

from zero2one.errors import SchemaError
from zero2one.serving.errors import JSON
from zero2one.serving.schemas import ERROR_RESPONSES, PredictRequest, PredictResponse
from zero2one.serving.security import Guarded, rate_limit, require_api_key


def router_for(task: str) -> APIRouter:
    """The documented /predict of ``task``'s request form (requests take :data:`fast_route`)."""
    from zero2one.serving.images import ImagePredictRequest

    router = APIRouter(tags=["predict"], dependencies=Guarded)
    if task == "image-classification":
        content: dict[str, Any] = {
            "application/json": {"schema": ImagePredictRequest.model_json_schema()},
            "multipart/form-data": {"schema": {"type": "object", "properties": {
                "file": {"type": "string", "format": "binary"},
                "top_k": {"type": "integer", "minimum": 1}}, "required": ["file"]}},
        }
        summary = "Top-k classes of one or more images"
    else:
        content = {"application/json": {"schema": PredictRequest.model_json_schema()}}
        summary = "Predict one row, a batch, or named records"

    @router.post("/predict", summary=summary, responses=ERROR_RESPONSES,
                 response_model=PredictResponse if task != "image-classification" else None,
                 openapi_extra={"requestBody": {"required": True, "content": content}})
    async def predict(request: Request) -> JSON:
        return await _predict(request)

    return router


async def _guarded_predict(request: Request) -> JSON:
    await require_api_key(request)
    await rate_limit(request)
    return await _predict(request)


# The hot path as a plain Starlette route, placed before the FastAPI one: the same handler and
# the same checks, without FastAPI's per-request dependency solving (about a third of the
# request's cost at this size). Errors still go through the app's exception handlers.
fast_route = Route("/predict", _guarded_predict, methods=["POST"], include_in_schema=False)


async def _predict(request: Request) -> JSON:
    served = request.app.state.holder.current
    rows, options = await served.adapter.parse(request)
    try:
        results = await served.batcher.submit(rows)
    except (ValueError, TypeError) as exc:  # what scikit-learn says about values it refuses
        raise SchemaError(f"the model refused the input: {exc}") from None
    content = served.adapter.response(results, options)
    content["model"] = served.info_dict
    content["request_id"] = request.scope["state"]["request_id"]
    return JSON(content)
