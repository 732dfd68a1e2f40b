"""``create_app()``: the FastAPI app, composed from routers and shared middleware.

The routes follow the served model's task: the task declares them (``Task.routes``); health,
metrics, the web playground at ``/`` and (with an API key) admin routes come with every server.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from zero2one.catalog import get_task
from zero2one.feedback import FeedbackStore
from zero2one.moderation import load_moderator
from zero2one.refs import Resolved, resolve
from zero2one.serving import errors
from zero2one.serving.metrics import Metrics, RequestMiddleware
from zero2one.serving.monitor import Monitor
from zero2one.serving.routes import admin, health, models
from zero2one.serving.routing import route_table
from zero2one.serving.security import BodySizeLimit, RateLimiter
from zero2one.serving.settings import ServeSettings
from zero2one.serving.state import ModelHolder, Served
from zero2one.version import __version__

if TYPE_CHECKING:
    from zero2one.refs import Resolved

# the reference resolved by `zero2one serve`, handed to worker processes so that they do not
# resolve (or download) it again
RESOLVED_ENV = "ZERO2ONE_SERVE_RESOLVED"


def _include_routes(app: FastAPI, settings: ServeSettings, task: str) -> None:
    """Health, the playground if asked, the task's routes, ``GET /v1/models`` unless the task
    answers it, and the admin routes where an API key guards them."""
    app.include_router(health.router)
    if settings.playground:
        from zero2one.serving import playground

        app.include_router(playground.router)
    for route in get_task(task).routes():
        if isinstance(route, APIRouter):
            app.include_router(route)
        else:  # a plain Starlette route: answers before the documented FastAPI one
            app.router.routes.insert(0, route)
    if not any(path == "/v1/models" and "GET" in methods for path, methods in route_table(app)):
        app.include_router(models.router)  # every server's, unless the task answers it
    if settings.api_key is not None:  # no unauthenticated admin routes, ever
        app.include_router(admin.router)


def create_app(settings: ServeSettings, *, resolved: Resolved | None = None,
               served: Served | None = None, metrics: Metrics | None = None) -> FastAPI:
    """The server for ``settings.model``. ``resolved`` skips resolving the reference again;
    ``served`` is a model already loaded in this process (with the ``metrics`` it reported
    its load to)."""

    metrics = metrics or Metrics()
    resolved = resolved or resolve(settings.model)
    holder = ModelHolder(settings, metrics, resolved=resolved, served=served)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await holder.load()
        # everything loaded so far (libraries, the model) lives as long as the process: keep it
        # out of the cyclic GC's full scans, which otherwise stall requests for tens of ms
        gc.collect()
        gc.freeze()
        follower = (asyncio.create_task(holder.follow(settings.follow_seconds))
                    if settings.follow_seconds else None)
        watcher = None
        if app.state.monitor is not None:
            await app.state.monitor.start(holder.current)
            watcher = asyncio.create_task(app.state.monitor.watch(holder))
        yield
        for task in (follower, watcher):
            if task is not None:
                task.cancel()
        await holder.close()  # queued requests finish before the process exits
        if app.state.monitor is not None:  # their samples too
            await asyncio.to_thread(app.state.monitor.close)

    app = FastAPI(title="zero2one model server", version=__version__, lifespan=lifespan)
    app.state.holder = holder
    app.state.metrics = metrics
    app.state.api_key = (settings.api_key.get_secret_value().encode()
                         if settings.api_key else None)
    app.state.rate_limiter = (RateLimiter(settings.rate_limit, settings.rate_burst)
                              if settings.rate_limit else None)
    errors.install(app)
    app.state.moderator = None
    if settings.moderation:  # built now: a bad configuration fails before serving
        from zero2one.serving import moderation

        app.state.moderator = load_moderator(settings.moderation)
        app.include_router(moderation.router)
    app.state.feedback = None
    if settings.feedback:
        from zero2one.serving import feedback

        app.state.feedback = FeedbackStore(settings.feedback)
        app.include_router(feedback.router)
    app.state.monitor = (Monitor(settings, metrics.registry, app.state.feedback)
                         if settings.monitor else None)

    _include_routes(app, settings, resolved.task)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", include_in_schema=False)
    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type"])
    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes)
    paths = frozenset(path for path, _ in route_table(app) if "{" not in path)
    app.add_middleware(RequestMiddleware, metrics=metrics, paths=paths)  # outermost
    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn workers: settings come from ``ZERO2ONE_SERVE_*``, the resolved
    reference from ``ZERO2ONE_SERVE_RESOLVED``."""

    raw = os.environ.get(RESOLVED_ENV)
    resolved = Resolved.from_json(json.loads(raw)) if raw else None
    return create_app(ServeSettings(), resolved=resolved)  # type: ignore[call-arg]
