"""The monitor store: a sample of what a served model was asked and answered.

    zero2one serve MODEL --monitor default           # SQLite in the workspace (WAL)
    zero2one serve MODEL --monitor postgresql://...  # or any SQLAlchemy URL

:class:`Sampler` takes a share (``--monitor-rate``) of the answers on the serving path and
writes them from a thread of its own, many per transaction: a request only pays for a queue
put. Strings are stored with personal data replaced (the moderation package's PII detector:
e-mail addresses, phone, card and ID numbers, IP addresses). Storage is bounded: the newest
``--monitor-max-samples`` samples of each model are kept. A store that cannot be reached never
stops serving: it is said once in the log, samples are dropped (and counted) until it answers.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

try:  # the server's extra has it: 8 times json's speed on a sample
    import orjson
except ImportError:  # pragma: no cover - the monitor's CLI side, without the serve extra
    orjson = None  # type: ignore[assignment]

from zero2one.errors import UserError
from zero2one.feedback import store_engine, store_url
from zero2one.moderation import pii

log = logging.getLogger(__name__)

MAX_PAYLOAD = 256 * 1024  # characters of one stored sample (rows past it are left out)
QUEUE = 10_000  # samples waiting for the writer; more are dropped (and counted)
BATCH = 500  # samples per transaction at most
SLICE = 50  # samples prepared between two hand-overs of the GIL to the serving thread
FLUSH_SECONDS = 0.5  # a sample waits at most this long for others to share its transaction
RETRY_SECONDS = 5.0  # between tries of a store that did not answer
PRUNE_EVERY = 1000  # samples written between two prunings


# what every kind of personal data pii.find looks for contains: an @ (e-mail addresses), a digit
# (phone, card and ID numbers, IPv4) or a colon (IPv6)
_MAY_HOLD_PII = re.compile(r"[@:\d]")


@dataclass
class Sample:
    number: int  # of the stored row it came in
    created: dt.datetime
    model: str
    version: str | None
    route: str
    kind: str  # rows (inputs and predictions) or text (a prompt and its answer)
    payload: dict[str, Any]


def redact(value: Any) -> Any:
    """``value`` with personal data in its strings replaced by labels ([EMAIL], [PHONE], ...)."""
    if isinstance(value, str):
        if not _MAY_HOLD_PII.search(value):  # most values: a category, a word (~50x faster)
            return value
        for found in reversed(pii.find(value)):
            value = value[:found.start] + pii.LABELS[found.kind] + value[found.end:]
        return value
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def _private(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """What users sent, redacted: a table's rows (its column names and the predictions come
    from the model), or all of a text sample."""
    if kind == "rows":
        search = _MAY_HOLD_PII.search
        return {**payload, "rows": [
            [redact(v) if type(v) is str and search(v) else v for v in row]
            if isinstance(row, list) else redact(row) for row in payload.get("rows") or []]}
    return {k: redact(v) for k, v in payload.items()}


class MonitorStore:
    """The samples table. Nothing connects until :meth:`open` (a server starts even when the
    store is down)."""

    def __init__(self, spec: str) -> None:
        import sqlalchemy as sa

        # default: monitor.db in the workspace; a store that is down answers within 5 s
        self.url = store_url(spec, "monitor.db")
        self.engine = store_engine(self.url, f"monitor store {spec!r}", **(
            {"connect_timeout": 5} if self.url.startswith("postgresql") else {}))
        self.meta = sa.MetaData()
        # one row per batch of samples of one model, version, route and kind: a row per sample
        # cost more to insert (and to index) than the request it samples
        self.chunks = sa.Table(
            "zero2one_samples", self.meta,
            sa.Column("number", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("first", sa.DateTime(timezone=True), nullable=False),
            sa.Column("last", sa.DateTime(timezone=True), nullable=False),
            sa.Column("model", sa.String(256), nullable=False),
            sa.Column("version", sa.String(64)),
            sa.Column("route", sa.String(64), nullable=False),
            sa.Column("kind", sa.String(16), nullable=False),
            sa.Column("count", sa.Integer, nullable=False),
            sa.Column("samples", sa.Text, nullable=False),  # JSON: [[time, payload], ...]
            sa.Index("zero2one_samples_model_last", "model", "last"),
        )
        self._opened = False

    def open(self) -> None:
        """Create the table where missing; raises ``UserError`` when the store cannot be
        reached."""
        import sqlalchemy as sa

        if self._opened:
            return
        try:
            self.meta.create_all(self.engine)
        except sa.exc.SQLAlchemyError as exc:
            raise UserError(f"monitor store {self.safe_url}: cannot open it "
                            f"({_first_line(exc)})") from None
        self._opened = True

    @property
    def safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def write(self, batch: list[dict[str, Any]]) -> None:
        """Samples (``created``, ``model``, ``version``, ``route``, ``kind`` and ``payload``,
        the payload already JSON), one row per model, version, route and kind."""
        self.open()
        groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        for item in batch:
            key = (item["model"], item["version"], item["route"], item["kind"])
            groups.setdefault(key, []).append(item)
        rows = [{"model": model, "version": version, "route": route, "kind": kind,
                 "first": items[0]["created"], "last": items[-1]["created"],
                 "count": len(items),
                 "samples": "[" + ",".join(f'["{i["created"].isoformat()}",{i["payload"]}]'
                                           for i in items) + "]"}
                for (model, version, route, kind), items in groups.items()]
        with self.engine.begin() as db:
            db.execute(self.chunks.insert(), rows)

    def prune(self, model: str, keep: int) -> int:
        """Delete the oldest samples of ``model`` beyond its newest ``keep`` (whole rows: up to
        one row's samples more stay); returns how many went."""
        import sqlalchemy as sa

        t = self.chunks
        with self.engine.begin() as db:
            rows = db.execute(sa.select(t.c.number, t.c.count).where(t.c.model == model)
                              .order_by(t.c.number.desc())).all()
            kept, cut = 0, None
            for number, count in rows:
                if kept >= keep:
                    cut = number
                    break
                kept += count
            if cut is None:
                return 0
            gone = sum(count for number, count in rows if number <= cut)
            db.execute(t.delete().where(t.c.model == model, t.c.number <= cut))
            return gone

    def read(self, model: str, *, since: dt.datetime | None = None,
             until: dt.datetime | None = None, version: str | None = None,
             newest: int | None = None) -> list[Sample]:
        """The samples of ``model`` (a version of it, when given) served in [since, until),
        oldest first; only the ``newest`` ones when given."""
        import sqlalchemy as sa

        self.open()
        t = self.chunks
        query = sa.select(t).where(t.c.model == model).order_by(t.c.number.desc())
        if since is not None:
            query = query.where(t.c.last >= since)
        if until is not None:
            query = query.where(t.c.first < until)
        if version is not None:
            query = query.where(t.c.version == version)
        found: list[Sample] = []
        with self.engine.connect() as db:
            for row in db.execute(query):
                for moment, payload in reversed(json.loads(row.samples)):
                    served = aware(dt.datetime.fromisoformat(moment))
                    if (since is None or served >= since) and (until is None or served < until):
                        found.append(Sample(row.number, served, row.model, row.version,
                                            row.route, row.kind, payload))
                if newest is not None and len(found) >= newest:
                    break
        return found[:newest][::-1]


class Sampler:
    """Samples answers on the serving path and writes them from a background thread.

    The serving path only appends to a deque (atomic, no lock, no wake-up); the thread wakes
    every :data:`FLUSH_SECONDS` and writes what came, :data:`BATCH` samples per transaction. A
    queue it waited on would wake it, and hand it the GIL, once per sample: measured, that
    alone took a fifth of a saturated server's throughput."""

    def __init__(self, store: MonitorStore, *, rate: float, max_samples: int,
                 per_second: float = 0.0,
                 on_drop: Callable[[int], None] = lambda n: None) -> None:
        self.store, self.rate, self.max_samples = store, rate, max_samples
        self.per_second = per_second  # at most this many samples a second (0: no cap)
        self._tokens, self._last = per_second, time.monotonic()
        self.on_drop = on_drop
        self.pending: collections.deque[dict[str, Any]] = collections.deque()
        self.dropped = 0
        self.written = 0
        self._failing = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zero2one-monitor", daemon=True)
        self._thread.start()

    def wants(self) -> bool:
        """Whether to keep the next answer: with probability ``rate`` and within
        ``per_second`` (a token bucket holding one second's worth: a quiet server keeps every
        answer, a busy one a steady sample). Called from one thread (the event loop), before
        the sample is built."""
        if self.rate < 1.0 and random.random() >= self.rate:
            return False
        if self.per_second:
            now = time.monotonic()
            self._tokens = min(self.per_second,
                               self._tokens + (now - self._last) * self.per_second)
            self._last = now
            if self._tokens < 1.0:
                return False
            self._tokens -= 1.0
        return True

    def offer(self, *, model: str, version: str | None, route: str, kind: str,
              payload: dict[str, Any]) -> None:
        """Queue a sample :meth:`wants` kept; never blocks, never raises."""
        if len(self.pending) >= QUEUE:  # the writer is behind (or the store down): drop
            self._drop(1)
            return
        self.pending.append({"created": time.time(), "model": model, "version": version,
                             "route": route, "kind": kind, "payload": payload})

    def say_failing(self) -> None:
        """The store was found down (and said so): the writer says only when it is back."""
        self._failing = True

    def close(self, timeout: float = 10.0) -> None:
        """Write what is pending (within ``timeout``), then stop the thread."""
        self._stop.set()
        self._thread.join(timeout)

    def _drop(self, count: int) -> None:
        self.dropped += count
        self.on_drop(count)

    def _run(self) -> None:
        since_prune: dict[str, int] = {}
        while True:
            stopping = self._stop.wait(FLUSH_SECONDS)
            while self.pending:
                batch: list[dict[str, Any]] = []
                while self.pending and len(batch) < BATCH:
                    batch.append(self.pending.popleft())
                self._write(batch, since_prune)
            if stopping:
                return

    def _write(self, batch: list[dict[str, Any]], since_prune: dict[str, int]) -> None:
        rows = []
        for i, item in enumerate(batch, 1):
            try:
                rows.append({**item, "created": dt.datetime.fromtimestamp(item["created"], dt.UTC),
                             "payload": bounded(_private(item["kind"], item["payload"]))})
            except Exception:  # a sample that cannot be stored never stops the writer
                log.debug("monitor: a sample could not be stored", exc_info=True)
                self._drop(1)
            if i % SLICE == 0:
                time.sleep(0)  # let the event loop have the GIL: shorter waits for requests
        try:
            if rows:
                self.store.write(rows)
        except Exception as exc:  # the store is down: serving goes on, said once
            dropped = len(rows)
            while self.pending:  # what came meanwhile would fail the same way
                self.pending.popleft()
                dropped += 1
            self._drop(dropped)
            if not self._failing:
                log.warning("monitor store %s does not answer (%s); serving goes on, samples "
                            "are dropped until it does", self.store.safe_url, _first_line(exc))
                self._failing = True
            self._stop.wait(RETRY_SECONDS)
            return
        self.written += len(rows)
        if self._failing:
            log.warning("monitor store %s answers again", self.store.safe_url)
            self._failing = False
        self._prune(rows, since_prune)

    def _prune(self, rows: list[dict[str, Any]], since_prune: dict[str, int]) -> None:
        for row in rows:
            since_prune[row["model"]] = since_prune.get(row["model"], 0) + 1
        for model, count in list(since_prune.items()):
            if count >= PRUNE_EVERY:
                since_prune[model] = 0
                try:
                    self.store.prune(model, self.max_samples)
                except Exception:  # tried again after the next PRUNE_EVERY samples
                    log.debug("monitor: pruning %s failed", model, exc_info=True)


def bounded(payload: dict[str, Any]) -> str:
    """JSON of at most :data:`MAX_PAYLOAD` characters: rows past it are left out (and counted),
    long texts cut."""
    text = _dumps(payload)
    if len(text) <= MAX_PAYLOAD:
        return text
    rows = payload.get("rows")
    if isinstance(rows, list) and len(rows) > 1:
        keep = max(1, len(rows) * MAX_PAYLOAD // len(text) - 1)
        return bounded({**payload, "rows": rows[:keep],
                        "left_out": len(rows) - keep + payload.get("left_out", 0)})
    cut = {k: v[:MAX_PAYLOAD // 4] if isinstance(v, str) else v for k, v in payload.items()}
    return _dumps({**cut, "truncated": True})


def _dumps(value: Any) -> str:
    if orjson is not None:
        return orjson.dumps(value, default=str).decode()
    return json.dumps(value, ensure_ascii=False, default=str)


def aware(moment: dt.datetime) -> dt.datetime:
    """``moment`` with UTC as its zone when it has none (SQLite keeps none)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]
