"""Fixtures the task tests share."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def tuned(tiny_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA fine-tune of the tiny Llama (chat data, ``chats.jsonl`` beside it), saved as
    zero2one saves it; trained once per session, read only."""
    import os

    from zero2one.api import train

    from .test_finetune import chats, recipe, write_jsonl

    work = tmp_path_factory.mktemp("tuned")
    old = os.getcwd()
    os.chdir(work)
    try:
        data = write_jsonl(work / "chats.jsonl", chats(24))
        train(recipe(tiny_lm, data, max_steps=3), out=work / "tuned")
    finally:
        os.chdir(old)
    return work / "tuned"


# llama.cpp's server engine (what the default, auto, serves with here) and zero2one's own
ENGINES = [pytest.param("llama.cpp", id="llama.cpp"), pytest.param("zero2one", id="zero2one")]


@contextlib.contextmanager
def served_lm(model: Path, engine: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``model`` served by ``engine`` (by name: ``auto`` times them, and a loaded test machine
    can sway that), no API key, as a TestClient."""
    from fastapi.testclient import TestClient

    from zero2one.serving import ServeSettings, create_app

    monkeypatch.delenv("ZERO2ONE_API_KEY", raising=False)
    settings = ServeSettings(model=str(model), engine=engine)  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as client:
        yield client


def client_of(http: Any) -> Any:
    """The official openai client over a TestClient."""
    import openai

    return openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=http,
                         max_retries=0)


@pytest.fixture(params=ENGINES)
def lm_client(tiny_lm: Path, monkeypatch: pytest.MonkeyPatch,
              request: pytest.FixtureRequest) -> Iterator[Any]:
    """The tiny model served by each engine, as a TestClient."""
    with served_lm(tiny_lm, request.param, monkeypatch) as client:
        yield client
