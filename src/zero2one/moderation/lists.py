"""Phrase lists by category, matched after normalisation (:mod:`.normalize`).

A phrase matches where its squashed form (letters, digits read as letters, CJK characters)
occurs in the text's squashed form; a phrase in Latin letters must also start and end at a
word boundary of the original text ("ass" is not found in "class", "f u c k" is found).
Built in: ``profanity`` from glin-profanity's word lists (English and Chinese; single CJK
characters left out, too ambiguous alone), and ``lists/default.yaml`` (harassment, hate,
violence, self-harm, sexual, illicit, in English and Chinese).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from zero2one.errors import RecipeError
from zero2one.moderation.normalize import is_cjk, normalise, squash

BUILTIN = "default"
_MASKED = re.compile(r"(?<![A-Za-z*])[A-Za-z]+\*+[A-Za-z*]*(?![A-Za-z*])")
PROFANITY_LANGUAGES = ("english", "chinese")


@dataclass(frozen=True)
class Hit:
    category: str
    phrase: str
    source: str  # the list it came from
    start: int  # span in the original text
    end: int


class PhraseLists:
    def __init__(self, lists: dict[str, dict[str, list[str]]]) -> None:
        """``lists``: source name -> category -> phrases."""
        # squashed -> (category, source, Latin letters?); and the phrase as the list wrote it
        self.entries: dict[str, tuple[str, str, bool]] = {}
        self.phrases: dict[str, str] = {}
        for source, categories in lists.items():
            for category, phrases in categories.items():
                for phrase in phrases:
                    squashed, _ = squash(normalise(str(phrase)))
                    # two-letter Latin entries match too much by accident; a CJK entry of two
                    # characters is a word
                    if len(squashed) >= (2 if is_cjk(squashed) else 3):
                        self.entries.setdefault(squashed, (category, source,
                                                           not is_cjk(squashed)))
                        self.phrases.setdefault(squashed, str(phrase))
        ordered = sorted(self.entries, key=len, reverse=True)
        self.pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    @property
    def categories(self) -> set[str]:
        return {category for category, _, _ in self.entries.values()}

    def find(self, text: str) -> list[Hit]:
        if self.pattern is None or not text:
            return []
        squashed, index = squash(normalise(text))
        hits = []
        position = 0
        while (match := self.pattern.search(squashed, position)) is not None:
            category, source, latin = self.entries[match[0]]
            start, end = index[match.start()], index[match.end() - 1] + 1
            if latin and not (_boundary(text, start - 1) and _boundary(text, end)):
                # not at a word boundary: try the next position (a shorter phrase may fit)
                alternative = self._shorter(squashed, index, text, match.start(), match.end())
                if alternative is not None:
                    hits.append(alternative)
                position = match.start() + 1
                continue
            hits.append(Hit(category, self.phrases[match[0]], source, start, end))
            position = match.end()
        return hits + self._masked(text, hits)

    def _masked(self, text: str, found: list[Hit]) -> list[Hit]:
        """Latin words with letters masked by ``*`` (``f*cking``, ``sh*t``): a masked letter
        matches any letter."""
        hits = []
        for token in _MASKED.finditer(text):
            if any(h.start < token.end() and token.start() < h.end for h in found):
                continue
            pattern = re.compile("".join("[a-z]" if c == "*" else re.escape(c)
                                         for c in normalise(token[0])))
            for squashed, (category, source, latin) in self.entries.items():
                if latin and len(squashed) == len(token[0]) and pattern.fullmatch(squashed):
                    hits.append(Hit(category, self.phrases[squashed], source, *token.span()))
                    break
        return hits

    def _shorter(self, squashed: str, index: list[int], text: str, begin: int,
                 stop: int) -> Hit | None:
        for end in range(stop - 1, begin + 1, -1):
            candidate = squashed[begin:end]
            entry = self.entries.get(candidate)
            if entry is None:
                continue
            category, source, latin = entry
            start, last = index[begin], index[end - 1] + 1
            if not latin or (_boundary(text, start - 1) and _boundary(text, last)):
                return Hit(category, self.phrases[candidate], source, start, last)
        return None


def _boundary(text: str, i: int) -> bool:
    """Whether position ``i`` of the original text is outside a Latin word."""
    return i < 0 or i >= len(text) or not (text[i].isascii() and text[i].isalpha())


def builtin_lists() -> dict[str, dict[str, list[str]]]:
    lists = {BUILTIN: load_file(resources.files("zero2one.moderation") / "lists" /
                                "default.yaml")}
    try:
        words = resources.files("glin_profanity") / "data" / "dictionaries"
    except ModuleNotFoundError:  # the safety extra brings it
        return lists
    profanity: list[str] = []
    for language in PROFANITY_LANGUAGES:
        data = json.loads((words / f"{language}.json").read_text(encoding="utf-8"))
        profanity += [w for w in data.get("words", [])
                      if not (is_cjk(w) and len(w.strip()) < 2)]
    lists["glin-profanity"] = {"profanity": profanity}
    return lists


def load_file(path: Any) -> dict[str, list[str]]:
    """A list file: YAML mapping category -> phrases."""
    name = str(path)
    try:
        data = yaml.safe_load(Path(str(path)).read_text(encoding="utf-8")
                              if not hasattr(path, "read_text") else path.read_text("utf-8"))
    except FileNotFoundError:
        raise RecipeError(f"moderation list {name} not found") from None
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise RecipeError(f"moderation list {name}: not readable YAML ({exc})") from None
    if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(p, str) for p in v)
            for k, v in data.items()):
        raise RecipeError(f"moderation list {name}: expected a mapping of category -> list of "
                          "phrases")
    return data
