"""``POST /admin/reload``: hot-swap to what the configured reference resolves to now.

The model always comes from the server's own ``--model`` reference, never from the request; the
route exists only when an API key is set.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from zero2one.serving.errors import JSON
from zero2one.serving.schemas import ERROR_RESPONSES
from zero2one.serving.security import Guarded

router = APIRouter(tags=["admin"], dependencies=Guarded)


@router.post("/admin/reload", summary="Reload the model reference (e.g. a moved alias)",
             responses=ERROR_RESPONSES)
async def reload(request: Request) -> JSON:
    old, new = await request.app.state.holder.reload()
    return JSON({
        "previous": old.info.model_dump() if old else None,
        "current": new.info.model_dump(),
    })
