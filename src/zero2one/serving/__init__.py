"""The model server: one FastAPI app whose routes follow the loaded model's task.

``create_app()`` composes routers (health, models, predict, admin) around shared middleware
(request ids, metrics, body-size limit) and dependencies (API key, rate limit).
"""

from zero2one.serving.app import create_app
from zero2one.serving.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]
