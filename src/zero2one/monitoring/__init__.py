"""Production monitoring: what a served model is asked, against what it was trained on.

    zero2one serve MODEL --monitor default [--monitor-rate 0.2]    # sample the traffic
    zero2one monitor MODEL --since 24h [--html report.html] [--exit-code] [--export new.csv]

The server samples answers into the monitor store (:mod:`~zero2one.monitoring.store`); a
report (:mod:`~zero2one.monitoring.report`) compares a period of them with the training
reference the model carries (:mod:`~zero2one.monitoring.reference`) using the tests of
:mod:`~zero2one.monitoring.drift`, and reads the feedback store's ratings. The server also
computes the report of its last ``--monitor-window`` every ``--monitor-interval`` seconds for
its Prometheus gauges; ``zero2one monitor`` prints it, plots it, logs it as an MLflow run and
exports the period's served rows as a new training set.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zero2one.artifacts import read_manifest
from zero2one.errors import DataError, UserError
from zero2one.feedback import FeedbackStore
from zero2one.monitoring import reference as references
from zero2one.monitoring.embeddings import prompt_drift
from zero2one.monitoring.report import (
    PREDICTION,
    Limits,
    Report,
    add_prompt_drift,
    build,
    rows_frame,
)
from zero2one.monitoring.store import MonitorStore, Sample
from zero2one.refs import Resolved, resolve

__all__ = ["Limits", "Report", "Subject", "check_period", "export", "parse_since",
           "period_report", "subject"]

DEFAULT_LIMITS = Limits()
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class Subject:
    """A served model as the monitor store names it, and its training reference."""

    name: str
    version: str | None
    reference: dict[str, Any] | None


def served_name(resolved: Resolved, manifest: dict[str, Any]) -> str:
    """The name a server gives the model it serves (and records its samples under)."""
    return resolved.name or manifest.get("name") or resolved.display_name


def subject(ref: str | Resolved) -> Subject:
    resolved = ref if isinstance(ref, Resolved) else resolve(ref)
    manifest: dict[str, Any] = {}
    found = None
    if resolved.has_manifest and resolved.path is not None:
        manifest = read_manifest(resolved.path)
        found = references.read(resolved.path, manifest)
    return Subject(served_name(resolved, manifest), resolved.version, found)


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """``24h``, ``30m``, ``7d``, ``90s``, ``2w`` ago, or an ISO date or time (UTC unless it
    says otherwise)."""
    now = now or dt.datetime.now(dt.UTC)
    if match := _DURATION.match(text.strip()):
        return now - dt.timedelta(seconds=float(match[1]) * _UNITS[match[2]])
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise UserError(f"--since {text!r}: use a duration (30m, 24h, 7d) or an ISO time "
                        "(2026-12-01T08:00)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def check_period(since: dt.datetime, until: dt.datetime) -> None:
    if since >= until:
        raise UserError(f"the period is empty: {since.isoformat()} is not before "
                        f"{until.isoformat()}")


def period_report(found: Subject, store: MonitorStore, *, since: dt.datetime,
                  until: dt.datetime | None = None, feedback: FeedbackStore | None = None,
                  windows: int = 12, limits: Limits = DEFAULT_LIMITS,
                  flag: Any = None, newest: int | None = None,
                  baseline: tuple[dt.datetime, dt.datetime] | None = None) -> Report:
    """The report of ``found``'s samples in [since, until) (only the ``newest`` ones, when
    given) and of its ratings; with a ``baseline`` period, the prompts' embedding drift
    against that period's."""
    until = until or dt.datetime.now(dt.UTC)
    check_period(since, until)
    samples = store.read(found.name, since=since, until=until, version=found.version,
                         newest=newest)
    ratings = [] if feedback is None else feedback.ratings(
        found.name, since=since, until=until, version=found.version)
    found_report = build(samples, found.reference, ratings, model=found.name,
                         version=found.version, since=since, until=until, windows=windows,
                         limits=limits, flag=flag)
    if baseline is not None and found_report.text is not None:
        before = store.read(found.name, since=baseline[0], until=baseline[1],
                            version=found.version)
        add_prompt_drift(found_report, prompt_drift(_prompts(before), _prompts(samples)),
                         limits)
    return found_report


def _prompts(samples: list[Sample]) -> list[str]:
    return [s.payload.get("prompt") or "" for s in samples if s.kind == "text"]


def export(samples: list[Sample], out: Path) -> int:
    """The served rows as a new training set (CSV: the features and the model's prediction,
    to be checked and relabelled) or the served conversations (JSONL, chat messages);
    returns how many were written. Written atomically."""
    import json
    import os
    import tempfile

    if not out.parent.is_dir():
        raise DataError(f"--export {out}: directory {out.parent} does not exist")
    frame = rows_frame(samples)
    texts = [s.payload for s in samples if s.kind == "text"]
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            if len(frame):
                frame.drop(columns=["_served"]).rename(
                    columns={PREDICTION: f"{PREDICTION}_served"}).to_csv(fh, index=False)
                count = len(frame)
            else:
                for text in texts:
                    fh.write(json.dumps({"messages": [
                        {"role": "user", "content": text.get("prompt") or ""},
                        {"role": "assistant", "content": text.get("answer") or ""}]},
                        ensure_ascii=False) + "\n")
                count = len(texts)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count
