"""API-key auth, per-client rate limits and the request body-size limit."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Annotated, Any

from fastapi import Depends, Request

from zero2one.serving.errors import APIError, error_body


def client_id(request: Request) -> str:
    """The API key's hash when one is sent, else the peer address."""
    auth = request.headers.get("authorization", "")
    if auth:
        return "key:" + hashlib.sha256(auth.encode()).hexdigest()[:16]
    return "ip:" + (request.client.host if request.client else "unknown")


# dependencies are async on purpose: FastAPI runs plain `def` dependencies in a thread pool,
# a thread hop per request for a few microseconds of work
async def require_api_key(request: Request) -> None:
    """With an API key configured, every guarded route needs ``Authorization: Bearer KEY``."""
    expected: bytes | None = request.app.state.api_key
    if expected is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    # compare_digest: the time taken does not depend on how much of the key matched
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
        raise APIError(401, "unauthorized", "missing or wrong API key; send "
                       "'Authorization: Bearer <key>'", headers={"WWW-Authenticate": "Bearer"})


class RateLimiter:
    """Token buckets per client: ``rate`` requests per second, bursts of ``burst``."""

    MAX_CLIENTS = 100_000  # forget idle buckets beyond this many, so memory stays bounded

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def check(self, key: str) -> float:
        """0 when allowed, else the seconds to wait."""
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate
        if len(self._buckets) >= self.MAX_CLIENTS and key not in self._buckets:
            self._buckets.clear()
        self._buckets[key] = (tokens - 1, now)
        return 0.0


async def rate_limit(request: Request) -> None:
    limiter: RateLimiter | None = request.app.state.rate_limiter
    if limiter is None:
        return
    wait = limiter.check(client_id(request))
    if wait:
        raise APIError(429, "rate_limited", f"too many requests; retry in {wait:.2f} s",
                       headers={"Retry-After": str(max(1, round(wait)))})


# every guarded route runs these, in order: FastAPI routes as dependencies (``Guarded``), plain
# Starlette routes (the fast /predict) by calling them; a guard added here covers both
GUARDS = (require_api_key, rate_limit)
Guarded = [Depends(guard) for guard in GUARDS]
ApiKey = Annotated[None, Depends(require_api_key)]


class BodySizeLimit:
    """Pure ASGI middleware: answers 413 for bodies over ``limit`` bytes, by Content-Length when
    given and by counting otherwise (chunked uploads)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_big = int(value) > self.limit
                except ValueError:
                    await _reply(send, scope, 400, "bad_request", "invalid Content-Length")
                    return
                if too_big:
                    await _reply(send, scope, 413, "body_too_large",
                                 f"request body over {self.limit} bytes")
                    return
                # the HTTP parser reads exactly Content-Length bytes: nothing left to count
                await self.app(scope, receive, send)
                return
        received = 0
        responded = False

        async def counting_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            nonlocal responded
            if message["type"] == "http.response.start":
                responded = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _TooLarge:
            if not responded:
                await _reply(send, scope, 413, "body_too_large",
                             f"request body over {self.limit} bytes")


class _TooLarge(Exception):
    pass


async def _reply(send: Any, scope: dict[str, Any], status: int, kind: str, message: str) -> None:
    import orjson

    rid = scope.get("state", {}).get("request_id")
    body = orjson.dumps(error_body(kind, message, rid))
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
