"""The web playground at ``/``: a page for trying the served model in a browser.

The page is static (``static/playground.*``: plain HTML, CSS and one JavaScript module, no build
step) and holds nothing about the model, so it is served without the API key; it asks for the
key once, keeps it in the tab's ``sessionStorage`` and reads ``GET /playground/config`` (behind
the key) to learn what to show.

What to show is the serving adapter's to say (``adapter.playground()``, a dict whose ``kind`` is
one of the page's widgets): ``form`` (fields posted as a record to ``/predict``), ``upload``
(files posted as a multipart form), ``chat`` (streamed OpenAI chat or text completions),
``prompt`` (OpenAI image generations with the diffusion options) or ``json`` (a request body
edited by hand). An adapter without the method gets the ``json`` widget on ``/predict`` when the
server has that route, else a page that says there is nothing to try.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from zero2one.serving.errors import JSON, APIError
from zero2one.serving.routing import route_table
from zero2one.serving.security import Guarded

STATIC = Path(__file__).with_name("static")
FILES = {"app.js": ("playground.js", "text/javascript; charset=utf-8"),
         "app.css": ("playground.css", "text/css; charset=utf-8")}
KINDS = ("form", "upload", "chat", "prompt", "json", "none")

# the page runs only its own script, talks only to this server and cannot be framed; images come
# back as data: URLs (generated images) or blob: URLs (an upload's preview)
HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page() -> Response:
    return _static("playground.html", "text/html; charset=utf-8")


@router.get("/playground/config", dependencies=Guarded)
async def config(request: Request) -> JSON:
    app = request.app
    served = app.state.holder.current
    return JSON({
        "model": served.info_dict,
        "widget": widget(served.adapter, app),
        "feedback": app.state.feedback is not None,
        "moderation": app.state.moderator is not None,
        "metrics": served.manifest.get("metrics"),
    })


@router.get("/playground/{name}")
async def asset(name: str) -> Response:
    if name not in FILES:  # a fixed list: no path from the request reaches the file system
        raise APIError(404, "not_found", f"no playground file {name!r}")
    return _static(*FILES[name])


def widget(adapter: Any, app: Any) -> dict[str, Any]:
    """What the page shows for ``adapter``: its own declaration, else the JSON editor on
    ``/predict`` when there is one."""
    declare = getattr(adapter, "playground", None)  # an adapter not made from BaseAdapter
    declared: dict[str, Any] | None = declare() if declare is not None else None
    if declared is not None:
        if declared.get("kind") not in KINDS:
            raise APIError(500, "server_error", f"the model's playground widget "
                           f"{declared.get('kind')!r} is not one of {', '.join(KINDS)}")
        return declared
    if any(path == "/predict" and "POST" in methods for path, methods in route_table(app)):
        schema = adapter.schema() if hasattr(adapter, "schema") else None
        return {"kind": "json", "route": "/predict", "schema": schema, "example": {}}
    return {"kind": "none"}


@functools.cache
def _read(file: str) -> bytes:
    return (STATIC / file).read_bytes()


def _static(file: str, media_type: str) -> Response:
    return Response(_read(file), media_type=media_type, headers=HEADERS)
