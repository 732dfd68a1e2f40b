"""The routes an app answers, read the same way by the server, the playground and the tests."""

from __future__ import annotations

from typing import Any


def route_table(app: Any) -> list[tuple[str, frozenset[str]]]:
    """Every (path, methods) the app answers, routers included: FastAPI 0.16x keeps an
    included router as one entry of ``app.routes`` whose routes it lists itself."""
    table = []
    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        for item in contexts() if callable(contexts) else [route]:
            path = getattr(item, "path", None)
            if path:
                table.append((str(path), frozenset(getattr(item, "methods", None) or ())))
    return table
