"""``create_app()``: the FastAPI app, composed from routers and shared middleware."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from zero2one import __version__
from zero2one.serving import errors
from zero2one.serving.metrics import Metrics, RequestMiddleware
from zero2one.serving.routes import admin, health, models, openai, predict
from zero2one.serving.security import BodySizeLimit, RateLimiter
from zero2one.serving.settings import ServeSettings
from zero2one.serving.state import ModelHolder, served_task


def create_app(settings: ServeSettings) -> FastAPI:
    metrics = Metrics()
    holder = ModelHolder(settings, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await holder.load()
        # everything loaded so far (libraries, the model) lives as long as the process: keep it
        # out of the cyclic GC's full scans, which otherwise stall requests for tens of ms
        gc.collect()
        gc.freeze()
        follower = (asyncio.create_task(holder.follow(settings.follow_seconds))
                    if settings.follow_seconds else None)
        yield
        if follower is not None:
            follower.cancel()
        await holder.close()  # queued requests finish before the process exits

    app = FastAPI(title="zero2one model server", version=__version__, lifespan=lifespan)
    app.state.holder = holder
    app.state.metrics = metrics
    app.state.api_key = (settings.api_key.get_secret_value().encode()
                         if settings.api_key else None)
    app.state.rate_limiter = (RateLimiter(settings.rate_limit, settings.rate_burst)
                              if settings.rate_limit else None)
    errors.install(app)

    app.include_router(health.router)
    task = served_task(settings.model)  # the model itself loads at start-up
    if task == "text-generation":
        app.include_router(openai.router)
    else:
        app.include_router(models.router)
        app.router.routes.insert(0, predict.fast_route)  # see routes/predict.py
        app.include_router(predict.router_for(task))
    if settings.api_key is not None:  # no unauthenticated admin routes, ever
        app.include_router(admin.router)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", include_in_schema=False)
    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type"])
    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes)
    paths = frozenset(r.path for r in app.routes if "{" not in getattr(r, "path", "{"))
    app.add_middleware(RequestMiddleware, metrics=metrics, paths=paths)  # outermost
    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn workers: settings come from ``ZERO2ONE_SERVE_*``."""
    return create_app(ServeSettings())  # type: ignore[call-arg]
