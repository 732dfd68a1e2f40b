"""The feedback store (SQLite, and PostgreSQL where one is running), POST /v1/feedback,
`zero2one feedback`, exports for training, concurrent and killed writers."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zero2one.errors import DataError, UserError
from zero2one.feedback import MAX_COMMENT, FeedbackStore, UnknownId, parse_rating

from .conftest import database


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FeedbackStore]:
    with database(request.param, tmp_path, "feedback") as url:
        found = FeedbackStore(url)
        yield found
        found.engine.dispose()


def _chat(store: FeedbackStore, ident: str, question: str, answer: str) -> None:
    store.record(ident, route="/v1/chat/completions", model="tiny", version="3",
                 request={"messages": [{"role": "user", "content": question}]}, output=answer)


def test_ratings_are_parsed_and_refused() -> None:
    assert parse_rating("up") == (1, "thumbs") and parse_rating("DOWN") == (-1, "thumbs")
    assert parse_rating(4) == (4, "stars") and parse_rating("5") == (5, "stars")
    for bad, message in ((0, "stars go from 1 to 5"), (6, "stars go from 1 to 5"),
                         ("sideways", "use up, down or 1-5"), (True, "use up, down or 1-5"),
                         ("\u00b99", "use up, down or 1-5"), ("\u0663", "use up, down or 1-5")):
        with pytest.raises(DataError, match=message):
            parse_rating(bad)  # type: ignore[arg-type]


def test_feedback_is_stored_and_exported(store: FeedbackStore, tmp_path: Path) -> None:
    _chat(store, "a", "What is zero2one?", "A fruit.")
    _chat(store, "b", "What is zero2one?", "A workbench for ML.")
    _chat(store, "c", "How do I serve?", "zero2one serve MODEL")
    store.rate("a", rating="down", correction="A workbench from data to served models.")
    store.rate("b", rating=5, comment="right")
    store.rate("c", rating="up")
    with pytest.raises(UnknownId, match="no answer with id 'nope'"):
        store.rate("nope", rating="up")
    with pytest.raises(DataError, match=f"at most {MAX_COMMENT}"):
        store.rate("a", rating="up", comment="x" * (MAX_COMMENT + 1))
    with pytest.raises(DataError, match="needs a rating, a comment or a correction"):
        store.rate("a", rating=None)
    stats = store.stats()
    assert (stats["answers"], stats["feedback"], stats["good"], stats["bad"],
            stats["corrections"]) == (3, 3, 2, 1, 1)
    assert stats["by_model"] == {"tiny@3": {"feedback": 3, "good": 2, "bad": 1}}
    sft = tmp_path / "sft.jsonl"
    assert store.export("sft", sft) == 3
    answers = sorted(json.loads(line)["messages"][-1]["content"]
                     for line in sft.read_text().splitlines())
    assert answers == ["A workbench for ML.", "A workbench from data to served models.",
                       "zero2one serve MODEL"]
    dpo = tmp_path / "dpo.jsonl"
    assert store.export("dpo", dpo) == 2
    pairs = [json.loads(line) for line in dpo.read_text().splitlines()]
    assert {(p["chosen"], p["rejected"]) for p in pairs} == {
        ("A workbench from data to served models.", "A fruit."),
        ("A workbench for ML.", "A fruit.")}
    assert pairs[0]["prompt"] == [{"role": "user", "content": "What is zero2one?"}]
    with pytest.raises(UserError, match="use sft or dpo"):
        store.export("csv", tmp_path / "x.jsonl")
    with pytest.raises(DataError, match="does not exist"):
        store.export("sft", tmp_path / "missing" / "x.jsonl")


def test_long_fields_are_bounded(store: FeedbackStore) -> None:
    store.record("big", route="/predict", model="m", version=None, request={"x": "y" * 100_000},
                 output="z")
    (row,) = [r for r in _interactions(store) if r["id"] == "big"]
    assert row["truncated"] and len(row["request"]) < 70_000


def _interactions(store: FeedbackStore) -> list[dict[str, object]]:
    import sqlalchemy as sa

    with store.engine.connect() as db:
        return [dict(r._mapping) for r in db.execute(sa.select(store.interactions))]


def _writer(url: str, prefix: str, count: int) -> None:
    store = FeedbackStore(url)
    for i in range(count):
        store.record(f"{prefix}-{i}", route="/predict", model="m", version="1",
                     request={"i": i}, output=i)
        store.rate(f"{prefix}-{i}", rating="up")


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    url = str(tmp_path / "feedback.db")
    FeedbackStore(url)  # the tables, before the writers race to make them
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_writer, args=(url, f"w{n}", 40)) for n in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0
    stats = FeedbackStore(url).stats()
    assert (stats["answers"], stats["feedback"]) == (160, 160)


def test_a_writer_killed_mid_write_corrupts_nothing(tmp_path: Path) -> None:
    path = tmp_path / "feedback.db"
    FeedbackStore(str(path))
    script = (f"from zero2one.feedback import FeedbackStore\n"
              f"s = FeedbackStore({str(path)!r})\n"
              "i = 0\n"
              "while True:\n"
              "    s.record(f'k{i}', route='/predict', model='m', version='1', request={'i': i},"
              " output='x' * 5000)\n"
              "    i += 1\n"
              "    print(i, flush=True)\n")
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout is not None
    committed = 0
    deadline = time.monotonic() + 60
    while committed < 50 and time.monotonic() < deadline:
        committed = int(process.stdout.readline())
    os.kill(process.pid, signal.SIGKILL)  # mid-way through a later write
    process.wait()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = db.execute("SELECT count(*) FROM zero2one_interactions").fetchone()[0]
    assert rows >= committed  # every write it reported as done is there


def test_a_bad_store_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="feedback store"):
        FeedbackStore("nosuchdialect://x")
    with pytest.raises(UserError, match="cannot open it"):
        FeedbackStore(str(tmp_path / "missing-dir" / "feedback.db"))


# ---- the server ---------------------------------------------------------------------------

@pytest.fixture
def served(tiny_lm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from zero2one.serving import ServeSettings, create_app

    monkeypatch.delenv("ZERO2ONE_API_KEY", raising=False)
    settings = ServeSettings(model=str(tiny_lm), feedback=str(tmp_path / "fb.db"))  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as client:
        yield client


def test_served_answers_take_feedback(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    answer = served.post("/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "hello"}], "max_tokens": 3,
        "temperature": 0}).json()
    ident, text = answer["id"], answer["choices"][0]["message"]["content"]
    assert served.post("/v1/feedback", json={"id": ident, "rating": "down",
                                             "correction": "Hello!"}).status_code == 200
    stream = served.post("/v1/completions", json={"prompt": "hi", "max_tokens": 3,
                                                  "stream": True})
    first = json.loads(stream.text.splitlines()[0].removeprefix("data: "))
    assert served.post("/v1/feedback", json={"id": first["id"], "rating": 4}).status_code == 200
    for body, status, words in (
            ({"id": "nope", "rating": "up"}, 404, "no answer with id"),
            ({"id": ident, "rating": 9}, 400, "stars go from 1 to 5"),
            ({"id": ident, "rating": "up", "comment": "x" * 5000}, 400, "at most 2000"),
            ({"id": ident}, 400, "needs a rating"),
            ({"id": ident, "stars": 3}, 400, "stars")):
        refused = served.post("/v1/feedback", json=body)
        assert refused.status_code == status and words in refused.text, refused.text
    store = FeedbackStore(str(tmp_path / "fb.db"))
    (pair,) = [json.loads(line) for line in _export(store, tmp_path, "dpo")]
    assert pair == {"prompt": [{"role": "user", "content": "hello"}], "chosen": "Hello!",
                    "rejected": text}
    assert store.stats()["answers"] == 2


def _export(store: FeedbackStore, tmp_path: Path, fmt: str) -> list[str]:
    out = tmp_path / f"{fmt}.jsonl"
    store.export(fmt, out)
    return out.read_text().splitlines()


def test_predictions_take_feedback(iris_model: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from zero2one.serving import ServeSettings, create_app

    monkeypatch.delenv("ZERO2ONE_API_KEY", raising=False)
    settings = ServeSettings(model=str(iris_model), feedback=str(tmp_path / "fb.db"))  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as client:
        answer = client.post("/predict", json={"features": [5.1, 3.5, 1.4, 0.2]}).json()
        saved = client.post("/v1/feedback", json={"id": answer["request_id"], "rating": 5,
                                                  "comment": "correct"})
        assert saved.status_code == 200 and saved.json()["rating"] == 5
    (row,) = FeedbackStore(str(tmp_path / "fb.db")).rows()
    assert json.loads(row["request"]) == {"features": [5.1, 3.5, 1.4, 0.2]}
    assert json.loads(row["output"])["result"] == answer["result"]


def test_uploads_take_feedback(trained: Any, tmp_path: Path) -> None:
    """A multipart upload is recorded by file name and size (the adapter has read the form)."""
    from fastapi.testclient import TestClient

    from zero2one.serving import ServeSettings, create_app

    from .cases import _png

    model = trained("image-classification").directory
    settings = ServeSettings(model=str(model), feedback=str(tmp_path / "fb.db"))  # type: ignore[call-arg]
    png = _png(200)
    with TestClient(create_app(settings)) as client:
        answer = client.post("/predict", files=[("file", ("seven.png", png, "image/png"))],
                             data={"top_k": "2"})
        assert answer.status_code == 200, answer.text
        saved = client.post("/v1/feedback", json={"id": answer.json()["request_id"],
                                                  "rating": "down"})
        assert saved.status_code == 200
    (row,) = FeedbackStore(str(tmp_path / "fb.db")).rows()
    form = sorted(json.loads(row["request"])["form"], key=lambda part: part["field"])
    assert form == [{"field": "file", "file": "seven.png", "bytes": len(png)},
                    {"field": "top_k", "value": "2"}]
    assert row["rating"] == -1  # thumbs down


def test_cli_feedback(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from zero2one.cli.main import app

    url = str(tmp_path / "fb.db")
    store = FeedbackStore(url)
    _chat(store, "a", "q", "bad answer")
    store.rate("a", rating="down", correction="good answer")
    runner = CliRunner()
    listed = runner.invoke(app, ["feedback", "list", "--store", url, "--json"])
    assert json.loads(listed.stdout)[0]["correction"] == "good answer"
    stats = runner.invoke(app, ["feedback", "stats", "--store", url, "--json"])
    assert json.loads(stats.stdout)["bad"] == 1
    out = tmp_path / "sft.jsonl"
    done = runner.invoke(app, ["feedback", "export", "--store", url, "--format", "sft",
                               "--out", str(out)])
    assert done.exit_code == 0 and "wrote 1 sft examples" in done.stdout
    bad = runner.invoke(app, ["feedback", "export", "--store", url, "--format", "xml",
                              "--out", str(out)])
    assert bad.exit_code != 0 and "use sft or dpo" in str(bad.exception)
