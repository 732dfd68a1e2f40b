"""Text as word lists should see it: case, width, script, leetspeak and padding undone.

``normalise`` keeps one character per input character (so a match maps back to the original
span for redaction): NFKC per character (full-width ``ＡＢＣ`` and ``１２３`` to ASCII),
case-folded, traditional Chinese to simplified (zhconv), zero-width characters to spaces.
``squash`` then drops the spaces and symbols people insert to dodge a list (``傻 逼``, ``f.u.c.k``)
and reads common leetspeak digits and symbols as letters (``sh1t``, ``@ss``), keeping for each
character of the result the index of the original character it came from.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b",
                      "@": "a", "$": "s", "!": "i", "|": "l", "+": "t"})
_WORD = re.compile(r"[^\s]+")  # runs between spaces: a leetspeak digit needs a letter beside it
ZERO_WIDTH = {"\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"}


@lru_cache(maxsize=8192)
def _char(c: str) -> str:
    if c in ZERO_WIDTH:
        return " "
    folded = unicodedata.normalize("NFKC", c).casefold()
    return folded[:1] if folded else " "


def _simplified(text: str) -> str:
    try:
        from zhconv import convert
    except ImportError:  # the safety extra brings it; without it traditional text stays so
        return text
    converted = convert(text, "zh-cn")
    # zhconv converts phrase by phrase; keep its result only where it kept the length
    return converted if len(converted) == len(text) else text


def normalise(text: str) -> str:
    """Same length as ``text``: one character per character (see the module's docstring)."""
    out = "".join(_char(c) for c in text)
    return _simplified(out) if any("\u4e00" <= c <= "\u9fff" for c in out) else out


def squash(normalised: str) -> tuple[str, list[int]]:
    """Letters, digits read as letters (inside words: ``sh1t``, not ``13800138000``), and
    CJK characters only, with their source indices."""
    chars, index = [], []
    for match in _WORD.finditer(normalised):
        word = match[0]
        if any(c.isalpha() for c in word):
            word = word.translate(LEET)
        for offset, c in enumerate(word):
            if c.isalnum():
                chars.append(c)
                index.append(match.start() + offset)
    return "".join(chars), index


def is_cjk(text: str) -> bool:
    return any("\u3400" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff" for c in text)
