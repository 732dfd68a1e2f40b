"""This machine's helpers: work on a thread of its own (whose OpenMP threads end with it)."""

from __future__ import annotations

import contextvars
import threading
from pathlib import Path

import pytest

from zero2one.machine import on_own_thread

WHO = contextvars.ContextVar("who", default="nobody")


def test_work_on_its_own_thread_returns_raises_and_keeps_the_context() -> None:
    seen: list[threading.Thread] = []

    def work() -> str:
        seen.append(threading.current_thread())
        return WHO.get()

    token = WHO.set("caller")
    try:
        assert on_own_thread(work) == "caller"
    finally:
        WHO.reset(token)
    assert seen[0] is not threading.current_thread() and not seen[0].is_alive()

    def fails() -> None:
        raise KeyError("inside")

    with pytest.raises(KeyError, match="inside"):
        on_own_thread(fails)


def test_the_server_loads_its_model_on_a_thread_that_ends(
        iris_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever threads torch starts while a model loads end before it is served."""
    from zero2one.serving import ServeSettings, state
    from zero2one.serving.metrics import Metrics

    loaders: list[threading.Thread] = []
    load = state.load

    def recorded(*args: object, **kwargs: object) -> object:
        loaders.append(threading.current_thread())
        return load(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(state, "load", recorded)
    served = state.load_served(ServeSettings(model=str(iris_model)), Metrics())
    assert served.info.task == "tabular-classification"
    (loader,) = loaders
    assert loader is not threading.current_thread() and not loader.is_alive()
