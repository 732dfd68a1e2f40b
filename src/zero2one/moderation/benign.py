"""Benign text for measuring the moderation's false positives on text it never trained on:
first sentences of installed libraries' docstrings (technical English), the sentences of a
Markdown document (e.g. the Chinese guide), and a file of chat turns one per line.

    texts = benign.docstrings(["json", "pathlib", "sklearn.metrics"])
    rate, flagged = benign.false_positives(load_moderator("default"), texts)
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import Any


def docstrings(modules: list[str]) -> list[str]:
    """The first paragraph of each public name's docstring in ``modules`` (20–300 characters,
    each once)."""
    found: dict[str, None] = {}
    for name in modules:
        module = importlib.import_module(name)
        for attribute, value in sorted(vars(module).items()):
            doc = None if attribute.startswith("_") else inspect.getdoc(value)
            if not doc:
                continue
            first = " ".join(doc.split("\n\n")[0].split())
            if 20 < len(first) < 300:
                found[first] = None
    return list(found)


def sentences(markdown: str, *, pattern: str = r"[\u4e00-\u9fff]") -> list[str]:
    """Prose sentences of a Markdown text (no code, tables or headings) that match
    ``pattern`` (default: containing Chinese)."""
    out: list[str] = []
    fenced = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.startswith(("|", "#")) or not re.search(pattern, line):
            continue
        out += [s.strip() for s in re.split(r"(?<=[。！？.!?])\s*", line) if len(s.strip()) > 4]
    return out


def lines(path: Path) -> list[str]:
    """A text file's lines, without blank ones and ``#`` comments."""
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]


def false_positives(moderator: Any, texts: list[str]) -> tuple[float, list[str]]:
    """The share of ``texts`` the moderator flags (any hit), and those texts."""
    flagged = [t for t in texts if moderator.check(t).hits]
    return len(flagged) / max(1, len(texts)), flagged
