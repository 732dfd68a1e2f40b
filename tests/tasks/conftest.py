"""Fixtures the task tests share."""

from __future__ import annotations

from pathlib import Path

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
