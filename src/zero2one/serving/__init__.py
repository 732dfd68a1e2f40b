"""The model server: one FastAPI app whose routes follow the loaded model's task.

``create_app()`` composes the routes the task declares (``Task.routes``) with the server's own
(health, metrics, admin) around shared middleware (request ids, metrics, body-size limit) and
guards (API key, rate limit). Imported lazily: ``zero2one --help`` reads the settings without
importing FastAPI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zero2one.serving.app import create_app
    from zero2one.serving.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from zero2one.serving.app import create_app

        return create_app
    if name == "ServeSettings":
        from zero2one.serving.settings import ServeSettings

        return ServeSettings
    raise AttributeError(f"module 'zero2one.serving' has no attribute {name!r}")
