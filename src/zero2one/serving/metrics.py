"""Prometheus metrics (one registry per app) and the ASGI middleware that records requests.

Metrics are per process: with several workers, scrape each pod (one worker per pod is the
Kubernetes layout ``zero2one deploy k8s`` writes).
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_RID = re.compile(r"^[\w.:-]{1,128}$")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("zero2one_requests_total", "HTTP requests.",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("zero2one_request_duration_seconds", "Request latency.",
                                 ["route", "method"], buckets=_LATENCY_BUCKETS,
                                 registry=self.registry)
        self.batch_size = Histogram("zero2one_batch_size", "Rows per predict call.",
                                    buckets=_BATCH_BUCKETS, registry=self.registry)
        self.rows = Counter("zero2one_predicted_rows_total", "Rows predicted.",
                            registry=self.registry)
        self.load_seconds = Gauge("zero2one_model_load_seconds", "Time the model took to load.",
                                  registry=self.registry)
        self.model_info = Gauge("zero2one_model_info", "The model being served (value 1).",
                                ["name", "version", "task"], registry=self.registry)

    def observe_batch(self, size: int) -> None:
        self.batch_size.observe(size)
        self.rows.inc(size)


class RequestMiddleware:
    """Pure ASGI: a request id on every response (``x-request-id``) and metrics by route."""

    def __init__(self, app: Any, metrics: Metrics, paths: frozenset[str] = frozenset()) -> None:
        self.app, self.metrics = app, metrics
        self.paths = paths  # fixed paths of the app's routes, for routes that set no scope key
        # labelled children by (route, method, status): .labels() takes a lock and builds a
        # tuple on every call, and the label sets are few
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                text = value.decode("latin-1")
                rid = text if _RID.match(text) else None
                break
        rid = rid or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []),
                                      (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            # the route's template, never the raw path: unknown paths must not explode labels
            label = getattr(route, "path", None) or (
                scope["path"] if scope["path"] in self.paths else "unmatched")
            key = (label, scope["method"], status)
            children = self._children.get(key)
            if children is None:
                children = self._children[key] = (
                    self.metrics.requests.labels(label, key[1], str(status)),
                    self.metrics.latency.labels(label, key[1]))
            children[0].inc()
            children[1].observe(time.perf_counter() - start)
