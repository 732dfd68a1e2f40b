"""``GET /v1/models``: what is loaded and the input it takes."""

from __future__ import annotations

from fastapi import APIRouter, Request

from zero2one.serving.errors import JSON
from zero2one.serving.security import Guarded

router = APIRouter(tags=["models"], dependencies=Guarded)


@router.get("/v1/models", summary="The served model and its input schema")
async def models(request: Request) -> JSON:
    served = request.app.state.holder.current
    manifest = served.manifest
    return JSON({
        "object": "list",
        "data": [{
            "id": served.info.name,
            "object": "model",
            **served.info.model_dump(),
            "input_schema": served.adapter.schema(),
            "classes": manifest.get("classes"),
            "class_names": manifest.get("class_names"),
            "metrics": manifest.get("metrics"),
            "loaded_at": served.loaded_at,
            "load_seconds": served.load_seconds,
        }],
    })
