"""``POST /predict`` for predictive models. The loaded model's serving adapter parses the
request, predicts a micro-batch and shapes the answer; the task declares the documented request
and response forms (:func:`predict_routes`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.routing import BaseRoute, Route

from zero2one.errors import SchemaError
from zero2one.serving.errors import JSON
from zero2one.serving.feedback import remember
from zero2one.serving.monitor import offer_rows
from zero2one.serving.schemas import ERROR_RESPONSES
from zero2one.serving.security import GUARDS, Guarded


def predict_routes(*, content: dict[str, Any], summary: str,
                   response_model: Any = None) -> list[APIRouter | BaseRoute]:
    """The documented /predict of a task's request ``content`` (OpenAPI media types ->
    schemas), and the fast route that answers requests first (see :data:`fast_route`)."""
    router = APIRouter(tags=["predict"], dependencies=Guarded)

    @router.post("/predict", summary=summary, responses=ERROR_RESPONSES,
                 response_model=response_model,
                 openapi_extra={"requestBody": {"required": True, "content": content}})
    async def predict(request: Request) -> JSON:
        return await _predict(request)

    return [fast_route, router]


async def _guarded_predict(request: Request) -> JSON:
    for guard in GUARDS:  # the same guards, in the same order, as every FastAPI route
        await guard(request)
    return await _predict(request)


# The hot path as a plain Starlette route, placed before the FastAPI one: the same handler and
# the same guards, without FastAPI's per-request dependency solving (about a third of the
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
    offer_rows(request, served, rows, results, content)
    if request.app.state.feedback is not None:
        await remember(request, content["request_id"], route="/predict",
                       body=await _recorded_request(request),
                       output={k: v for k, v in content.items() if k != "model"})
    return JSON(content)


async def _recorded_request(request: Request) -> Any:
    """What the feedback store keeps of a request: its JSON; for a multipart upload (already
    parsed by the adapter, so read from starlette's cache) each file's name and size."""
    import orjson

    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        return {"form": [{"field": key, "value": value[:200]} if isinstance(value, str) else
                         {"field": key, "file": value.filename, "bytes": value.size}
                         for key, value in form.multi_items()]}
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError:  # a raw upload: recorded by size only
        return {"bytes": len(await request.body())}
