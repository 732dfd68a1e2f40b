"""Liveness and readiness probes (never behind auth)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from zero2one.serving.errors import JSON

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> JSON:
    return JSON({"status": "ok"})


@router.get("/readyz", summary="A model is loaded and requests are accepted",
            responses={503: {"description": "The model is still loading"}})
async def readyz(request: Request) -> JSON:
    served = request.app.state.holder.current
    if served is None:
        return JSON({"status": "loading"}, status_code=503)
    return JSON({"status": "ready", "model": served.info.model_dump()})
