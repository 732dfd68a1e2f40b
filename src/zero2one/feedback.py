"""The feedback store: what a served model was asked and answered, and what users said of it.

    zero2one serve MODEL --feedback default          # SQLite in the workspace (WAL)
    zero2one serve MODEL --feedback postgresql://... # or any SQLAlchemy URL
    POST /v1/feedback {"id": ..., "rating": "up" | "down" | 1-5, "comment": ..., "correction": ...}
    zero2one feedback list|stats|export --format sft|dpo --out FILE

Every answer of a served model is recorded under the id it carries (``request_id`` of
``/predict``, the ``id`` of an OpenAI-style completion): the route, the request, the output and
the model's name and version. Feedback refers to that id. SQLite runs in WAL mode with a busy
timeout, so several server workers and writers share one file; every write is one transaction,
so a writer killed mid-write loses only its own uncommitted row. Stored fields are bounded
(:data:`MAX_FIELD`); longer requests and outputs are cut and marked.

Exports feed the next training: ``sft`` — chat JSONL of up-voted answers and of corrections;
``dpo`` — preference pairs (``prompt``, ``chosen``, ``rejected``): a correction over the
answer it corrects, and an up-voted over a down-voted answer to the same prompt.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from zero2one.errors import DataError, UserError
from zero2one.paths import workspace

MAX_FIELD = 64 * 1024  # characters of a stored request or output
MAX_COMMENT = 2000
MAX_CORRECTION = 20_000
GOOD, BAD = 1, -1  # thumbs; stars 1-5 map to good (4-5) and bad (1-2)


class UnknownId(UserError):
    """Feedback names an id the store never recorded."""


def store_url(spec: str, default: str = "feedback.db") -> str:
    """``default`` -> SQLite ``default`` in the workspace; a path -> SQLite there; else a
    SQLAlchemy URL."""
    if spec == "default":
        path = workspace() / default
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    if "://" not in spec:
        return f"sqlite:///{Path(spec).absolute()}"
    return spec


class FeedbackStore:
    def __init__(self, spec: str) -> None:
        import sqlalchemy as sa

        self.url = store_url(spec)
        self.engine = store_engine(self.url, f"feedback store {spec!r}")
        meta = sa.MetaData()
        self.interactions = sa.Table(
            "zero2one_interactions", meta,
            sa.Column("id", sa.String(64), primary_key=True),
            sa.Column("created", sa.DateTime(timezone=True), nullable=False),
            sa.Column("route", sa.String(64), nullable=False),
            sa.Column("model", sa.String(256), nullable=False),
            sa.Column("version", sa.String(64)),
            sa.Column("request", sa.Text, nullable=False),
            sa.Column("output", sa.Text, nullable=False),
            sa.Column("truncated", sa.Boolean, nullable=False, default=False),
        )
        self.feedback = sa.Table(
            "zero2one_feedback", meta,
            sa.Column("number", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("id", sa.String(64), sa.ForeignKey("zero2one_interactions.id"),
                      nullable=False, index=True),
            sa.Column("created", sa.DateTime(timezone=True), nullable=False),
            sa.Column("rating", sa.Integer),
            sa.Column("scale", sa.String(8)),
            sa.Column("comment", sa.Text),
            sa.Column("correction", sa.Text),
        )
        try:
            meta.create_all(self.engine)
        except sa.exc.OperationalError as exc:
            raise UserError(f"feedback store {self.url}: cannot open it "
                            f"({str(exc.orig).splitlines()[0]})") from None

    # ---- writing ------------------------------------------------------------------------

    def record(self, ident: str, *, route: str, model: str, version: str | None,
               request: Any, output: Any) -> None:
        """One answer of the server, under the id the answer carries."""
        request_text, cut_request = _bounded(request)
        output_text, cut_output = _bounded(output)
        with self.engine.begin() as db:
            db.execute(self.interactions.insert().values(
                id=ident, created=_now(), route=route, model=model, version=version,
                request=request_text, output=output_text,
                truncated=cut_request or cut_output))

    def rate(self, ident: str, *, rating: str | int | None, comment: str | None = None,
             correction: str | None = None) -> dict[str, Any]:
        """Feedback on a recorded answer; ``rating`` is up/down or 1-5."""
        import sqlalchemy as sa

        value, scale = parse_rating(rating)
        if comment is not None and len(comment) > MAX_COMMENT:
            raise DataError(f"comment: at most {MAX_COMMENT} characters")
        if correction is not None and len(correction) > MAX_CORRECTION:
            raise DataError(f"correction: at most {MAX_CORRECTION} characters")
        if value is None and not comment and not correction:
            raise DataError("feedback needs a rating, a comment or a correction")
        with self.engine.begin() as db:
            known = db.execute(sa.select(self.interactions.c.id).where(
                self.interactions.c.id == ident)).first()
            if known is None:
                raise UnknownId(f"no answer with id {ident!r} was recorded here")
            key: Any = db.execute(self.feedback.insert().values(
                id=ident, created=_now(), rating=value, scale=scale, comment=comment,
                correction=correction)).inserted_primary_key
        return {"id": ident, "feedback": int(key[0]), "rating": value, "scale": scale}

    # ---- reading ------------------------------------------------------------------------

    def rows(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Feedback joined with the answer it is about, newest first."""
        import sqlalchemy as sa

        i, f = self.interactions, self.feedback
        query = (sa.select(f.c.number, f.c.id, f.c.created, f.c.rating, f.c.scale, f.c.comment,
                           f.c.correction, i.c.route, i.c.model, i.c.version, i.c.request,
                           i.c.output)
                 .join(i, i.c.id == f.c.id).order_by(f.c.number.desc()))
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as db:
            return [dict(row._mapping) for row in db.execute(query)]

    def ratings(self, model: str, *, since: dt.datetime, until: dt.datetime,
                version: str | None = None) -> list[dict[str, Any]]:
        """The ratings given in [since, until) to answers of ``model`` (of one version)."""
        import sqlalchemy as sa

        i, f = self.interactions, self.feedback
        query = (sa.select(f.c.created, f.c.rating, f.c.scale, i.c.version)
                 .join(i, i.c.id == f.c.id)
                 .where(i.c.model == model, f.c.created >= since, f.c.created < until)
                 .order_by(f.c.number))
        if version is not None:
            query = query.where(i.c.version == version)
        with self.engine.connect() as db:
            return [dict(row._mapping) for row in db.execute(query)]

    def stats(self) -> dict[str, Any]:
        import sqlalchemy as sa

        with self.engine.connect() as db:
            answers = db.execute(sa.select(sa.func.count()).select_from(
                self.interactions)).scalar_one()
        rows = self.rows()
        good = sum(1 for r in rows if verdict(r) == GOOD)
        bad = sum(1 for r in rows if verdict(r) == BAD)
        by_model: dict[str, dict[str, int]] = {}
        for row in rows:
            entry = by_model.setdefault(f"{row['model']}@{row['version'] or '-'}",
                                        {"feedback": 0, "good": 0, "bad": 0})
            entry["feedback"] += 1
            entry["good"] += verdict(row) == GOOD
            entry["bad"] += verdict(row) == BAD
        return {"answers": answers, "feedback": len(rows), "good": good, "bad": bad,
                "corrections": sum(1 for r in rows if r["correction"]),
                "comments": sum(1 for r in rows if r["comment"]), "by_model": by_model}

    def export(self, fmt: str, out: Path) -> int:
        """Write ``sft`` or ``dpo`` JSONL to ``out`` (atomically); returns the examples."""
        import os
        import tempfile

        if fmt not in ("sft", "dpo"):
            raise UserError(f"--format {fmt}: use sft or dpo")
        examples = _sft(self.rows()) if fmt == "sft" else _dpo(self.rows())
        if not out.parent.is_dir():
            raise DataError(f"{out}: directory {out.parent} does not exist")
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for example in examples:
                fh.write(json.dumps(example, ensure_ascii=False) + "\n")
        os.replace(tmp, out)
        return len(examples)


def parse_rating(rating: str | int | None) -> tuple[int | None, str | None]:
    """up/down -> (+1/-1, thumbs); 1-5 -> (n, stars); anything else is refused."""
    if rating is None:
        return None, None
    if isinstance(rating, bool):
        raise DataError("rating: use up, down or 1-5")
    if isinstance(rating, str):
        lowered = rating.strip().lower()
        if lowered in ("up", "down"):
            return (GOOD if lowered == "up" else BAD), "thumbs"
        if lowered.isascii() and lowered.isdigit():  # not "¹9": str.isdigit takes it
            rating = int(lowered)
        else:
            raise DataError(f"rating {rating!r}: use up, down or 1-5")
    if not 1 <= rating <= 5:
        raise DataError(f"rating {rating}: stars go from 1 to 5")
    return int(rating), "stars"


def verdict(row: dict[str, Any]) -> int:
    """GOOD, BAD or 0 (neutral, unrated)."""
    rating, scale = row["rating"], row["scale"]
    if rating is None:
        return 0
    if scale == "thumbs":
        return int(rating)
    return GOOD if rating >= 4 else BAD if rating <= 2 else 0


def _messages(row: dict[str, Any]) -> list[dict[str, str]] | None:
    """The conversation an answer continued: chat messages, or a prompt as one user turn."""
    try:
        request = json.loads(row["request"])
    except json.JSONDecodeError:
        return None
    if isinstance(request, dict) and isinstance(request.get("messages"), list):
        return [m for m in request["messages"] if isinstance(m, dict)]
    if isinstance(request, dict) and isinstance(request.get("prompt"), str):
        return [{"role": "user", "content": request["prompt"]}]
    return None


def _answer(row: dict[str, Any]) -> str | None:
    try:
        output = json.loads(row["output"])
    except json.JSONDecodeError:
        return None
    return output if isinstance(output, str) else None


def _sft(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    examples, seen = [], set()
    for row in reversed(rows):  # oldest first
        messages, answer = _messages(row), _answer(row)
        if messages is None or answer is None:
            continue
        best = row["correction"] or (answer if verdict(row) == GOOD else None)
        if best and (row["id"], best) not in seen:
            seen.add((row["id"], best))
            examples.append({"messages": [*messages, {"role": "assistant", "content": best}],
                             "source": {"id": row["id"], "model": row["model"],
                                        "version": row["version"]}})
    return examples


def _dpo(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    pairs: list[dict[str, Any]] = []
    by_prompt: dict[str, dict[int, set[str]]] = {}
    for row in reversed(rows):
        messages, answer = _messages(row), _answer(row)
        if messages is None or answer is None:
            continue
        key = json.dumps(messages, sort_keys=True, ensure_ascii=False)
        if row["correction"] and row["correction"] != answer:
            pairs.append({"prompt": messages, "chosen": row["correction"], "rejected": answer})
        said = verdict(row)
        if said:
            by_prompt.setdefault(key, {GOOD: set(), BAD: set()})[said].add(answer)
    for key, answers in by_prompt.items():
        for chosen in sorted(answers[GOOD]):
            for rejected in sorted(answers[BAD] - answers[GOOD]):
                pairs.append({"prompt": json.loads(key), "chosen": chosen,
                              "rejected": rejected})
    return pairs


def _bounded(value: Any) -> tuple[str, bool]:
    text = json.dumps(value, ensure_ascii=False, default=str)
    if len(text) <= MAX_FIELD:
        return text, False
    return json.dumps({"truncated": text[:MAX_FIELD]}, ensure_ascii=False), True


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def store_engine(url: str, label: str, **connect_args: Any) -> Any:
    """A SQLAlchemy engine for a store at ``url`` (SQLite: WAL, a busy timeout, shared across
    threads); a URL SQLAlchemy refuses is a one-line ``UserError`` starting with ``label``.
    ``connect_args`` go to the driver of a server database."""
    import sqlalchemy as sa

    sqlite = url.startswith("sqlite")
    try:
        engine = sa.create_engine(url, pool_pre_ping=True, connect_args={
            "timeout": 30, "check_same_thread": False} if sqlite else connect_args)
    except (sa.exc.ArgumentError, ImportError, ModuleNotFoundError) as exc:
        raise UserError(f"{label}: {exc}") from None
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # NORMAL with WAL: a commit survives a killed process; only a power cut may lose the last
    # commits, and nothing is ever corrupted
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
