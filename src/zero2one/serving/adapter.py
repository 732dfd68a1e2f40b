"""What a task's serving adapter offers the server (``Task.serving_adapter`` returns one).

The shared ``/predict`` route (:func:`zero2one.serving.routes.predict.predict_routes`) calls
:meth:`Adapter.parse` on the event loop, hands the rows to the micro-batcher, which calls
:meth:`Adapter.predict` once per batch in a worker thread, and answers with
:meth:`Adapter.response`. ``GET /v1/models`` shows :meth:`Adapter.schema`. An adapter that
batches by itself (a language model's decoding engine) sets ``batched = False`` and serves its
own routes instead; one with a background thread offers ``close()``, called on hot swap and
shutdown after its work in flight is done. ``playground()``, when an adapter has it, says what
the web page at ``/`` shows for the model (see :mod:`zero2one.serving.playground`).
"""

from __future__ import annotations

from typing import Any, Protocol

from starlette.requests import Request


class Adapter(Protocol):
    #: False: the adapter batches concurrent requests itself (no micro-batcher in front)
    batched: bool
    #: the names of a row's values, in order, when rows are feature values the monitor can
    #: compare with the model's training reference (None: only predictions are monitored)
    monitored_columns: list[str] | None

    async def parse(self, request: Request) -> tuple[list[Any], dict[str, Any]]:
        """The request's rows and its options; bad input raises ``SchemaError`` or
        ``APIError`` (a 4xx), never anything else."""
        ...

    def predict(self, rows: list[Any]) -> list[Any]:
        """One result per row, for the rows of several requests at once."""
        ...

    def response(self, results: list[Any], options: dict[str, Any]) -> dict[str, Any]:
        """The JSON answer for one request's results (the server adds ``model`` and
        ``request_id``)."""
        ...

    def schema(self) -> Any:
        """The input the model takes, shown by ``GET /v1/models``."""
        ...

    def close(self) -> None:
        """Stop background work once the work in flight is done (hot swap, shutdown)."""
        ...

    def playground(self) -> dict[str, Any] | None:
        """What the web page at ``/`` shows for the model (None: the generic form)."""
        ...

    def monitored_embeddings(self, results: list[Any]) -> list[list[float]] | None:
        """Per result, the vector monitoring compares with the model's reference embedding
        (an image classifier: its class probabilities); None: none."""
        ...


class BaseAdapter:
    """The optional members of :class:`Adapter` with their defaults: an adapter subclasses it
    and writes ``parse``, ``predict``, ``response`` and ``schema``."""

    batched = True
    monitored_columns: list[str] | None = None

    def close(self) -> None:
        return None

    def playground(self) -> dict[str, Any] | None:
        return None

    def monitored_embeddings(self, results: list[Any]) -> list[list[float]] | None:
        return None
