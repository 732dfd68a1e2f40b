"""Moderating text that is streamed as it is generated.

:class:`StreamGuard` holds back the last :data:`HOLD` characters of what it is fed, checks
the whole text so far at every piece, and releases only text that can no longer become part
of a flagged phrase or personal datum that is still being written: a blocked stream stops
before the flagged words go out (:class:`Blocked`), a redacted one sends the labels in their
place.
"""

from __future__ import annotations

from zero2one.errors import UserError
from zero2one.moderation import Moderator, Verdict

HOLD = 40  # characters kept back: longer than the phrases and most personal data
EVERY = 16  # characters between two checks of the growing text (a check of 2000 characters
# took 4.7 ms here: checking at every token of a long answer would cost more than its decoding)


class Blocked(UserError):
    """Moderation refused the text; ``verdict`` says why."""

    def __init__(self, verdict: Verdict, where: str) -> None:
        super().__init__(f"the {where} was flagged by moderation: {verdict.reason()}")
        self.verdict = verdict


class StreamGuard:
    def __init__(self, moderator: Moderator, *, redact: bool) -> None:
        self.moderator, self.redact = moderator, redact
        self.text = ""
        self.sent = 0  # characters of the (redacted) text already released
        self.checked = 0  # length of the text at the last check

    def feed(self, piece: str) -> str:
        """What may be sent now of the text so far; raises :class:`Blocked`."""
        self.text += piece
        if len(self.text) - self.checked < EVERY:
            return ""
        return self._release(final=False)

    def finish(self) -> str:
        """The rest, once generation has ended; raises :class:`Blocked`."""
        return self._release(final=True)

    def _release(self, *, final: bool) -> str:
        self.checked = len(self.text)
        verdict = self.moderator.check(self.text, where="output") if self.text else Verdict()
        if verdict.blocked and not self.redact:
            raise Blocked(verdict, "output")
        shown = self.moderator.redact(self.text, verdict) if verdict.hits else self.text
        # the tail may still grow into a flagged phrase: keep it back until the end
        ready = len(shown) if final else max(self.sent, len(shown) - HOLD)
        out, self.sent = shown[self.sent: ready], ready
        return out
