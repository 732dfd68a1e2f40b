"""Personal data in text, found by pattern and then validated (a pattern alone flags every
long number): e-mail addresses (RFC length limits, a real-looking domain), phone numbers
(libphonenumber's validity rules; Chinese mobiles by their operator prefixes), card numbers
(Luhn checksum and a known issuer prefix), Chinese resident ID numbers (the ISO 7064 check
character, a real birth date and province code) and IP addresses (the ``ipaddress`` module).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass

KINDS = ("email", "phone", "card", "cn_id", "ip")
LABELS = {"email": "[EMAIL]", "phone": "[PHONE]", "card": "[CARD]", "cn_id": "[ID]",
          "ip": "[IP]"}


@dataclass(frozen=True)
class Found:
    kind: str
    start: int
    end: int


_EMAIL = re.compile(r"(?<![\w.+-])([\w.+-]{1,64})@((?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24})"
                    r"(?![\w-])")
_CARD_RUN = re.compile(r"(?<![\w-])\d+(?:[ -]\d+)*(?![\w-])")
_CN_ID = re.compile(r"(?<![\dA-Za-z])(\d{17}[\dXx])(?![\dA-Za-z])")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_CN_MOBILE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?(1[3-9]\d[- ]?\d{4}[- ]?\d{4})(?!\d)")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_PROVINCES = {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45,
              46, 50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82}
_CARD_PREFIXES = ("4", "5", "2", "34", "37", "35", "36", "30", "38", "39", "6", "62")


def luhn(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def cn_id_valid(text: str) -> bool:
    """An 18-character resident ID: province code, birth date, check character."""
    text = text.upper()
    if int(text[:2]) not in _PROVINCES:
        return False
    try:
        born = dt.date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
    except ValueError:
        return False
    if not dt.date(1900, 1, 1) <= born <= dt.date.today():
        return False
    total = sum(int(d) * w for d, w in zip(text[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == text[17]


def _phones(text: str) -> Iterator[Found]:
    seen: list[tuple[int, int]] = []
    for match in _CN_MOBILE.finditer(text):
        seen.append(match.span())
        yield Found("phone", *match.span())
    try:
        import phonenumbers
    except ImportError:  # the safety extra brings it; without it only Chinese mobiles
        return
    for region in ("CN", "US"):
        for found in phonenumbers.PhoneNumberMatcher(text, region,
                                                     leniency=phonenumbers.Leniency.VALID):
            span = (found.start, found.end)
            if not any(a < span[1] and span[0] < b for a, b in seen):
                seen.append(span)
                yield Found("phone", *span)


def _cards(text: str) -> Iterator[Found]:
    """Card numbers: runs of digit groups (single spaces or dashes between), and within a
    run every sequence of whole groups with 13-19 digits, a known issuer prefix and a valid
    Luhn checksum (the longest from each starting group)."""
    for run in _CARD_RUN.finditer(text):
        groups = [(run.start() + g.start(), run.start() + g.end())
                  for g in re.finditer(r"\d+", run[0])]
        i = 0
        while i < len(groups):
            best = None
            digits = ""
            for j in range(i, len(groups)):
                digits += text[groups[j][0]: groups[j][1]]
                if len(digits) > 19:
                    break
                if (len(digits) >= 13 and luhn(digits) and digits.startswith(_CARD_PREFIXES)):
                    best = j
            if best is None:
                i += 1
                continue
            yield Found("card", groups[i][0], groups[best][1])
            i = best + 1


def find(text: str, kinds: tuple[str, ...] = KINDS) -> list[Found]:
    """Every validated piece of personal data in ``text``, sorted, without overlaps (an ID
    number is not also a phone or card number)."""
    found: list[Found] = []
    if "email" in kinds:
        found += [Found("email", *m.span()) for m in _EMAIL.finditer(text)
                  if not m[1].startswith(".") and ".." not in m[0]]
    if "cn_id" in kinds:
        found += [Found("cn_id", *m.span(1)) for m in _CN_ID.finditer(text)
                  if cn_id_valid(m[1])]
    if "card" in kinds:
        found += list(_cards(text))
    if "ip" in kinds:
        for pattern in (_IPV4, _IPV6):
            for m in pattern.finditer(text):
                try:
                    address = ipaddress.ip_address(m[0])
                except ValueError:
                    continue
                # this machine (127.0.0.1, ::1, 0.0.0.0) is in every tutorial, and no one's
                if not (address.is_loopback or address.is_unspecified):
                    found.append(Found("ip", *m.span()))
    if "phone" in kinds:
        found += list(_phones(text))
    order = {k: i for i, k in enumerate(("cn_id", "card", "email", "ip", "phone"))}
    kept: list[Found] = []
    for item in sorted(found, key=lambda f: (order[f.kind], f.start)):
        if not any(item.start < k.end and k.start < item.end for k in kept):
            kept.append(item)
    return sorted(kept, key=lambda f: f.start)
