"""``zero2one moderate TEXT|FILE`` and ``zero2one moderate eval FILE.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from zero2one.cli.output import Json, console, print_json, table
from zero2one.errors import DataError, UserError

ConfigOption = Annotated[str, typer.Option(
    "--config", "-c", help="'default' (the built-in checks) or a moderation YAML file.")]


def moderate(
    target: Annotated[str, typer.Argument(
        help="Text to check, a file of texts (.jsonl with a `text` field, or one text per "
        "line), or `eval` followed by a labelled .jsonl file.", show_default=False)],
    file: Annotated[Path | None, typer.Argument(
        help="With `eval`: JSONL lines {\"text\", \"categories\": [...]} ([] = clean).",
        show_default=False)] = None,
    config: ConfigOption = "default",
    json_: Json = False,
) -> None:
    """Check text with the moderation pipeline (phrase lists in Chinese and English,
    validated personal data, a configured classifier or API); `eval` prints precision and
    recall per category on a labelled file."""
    from zero2one.moderation import load_moderator

    moderator = load_moderator(config)
    if target == "eval":
        if file is None:
            raise UserError("moderate eval needs a labelled file: zero2one moderate eval "
                            "FILE.jsonl")
        _evaluate(moderator, file, json_)
        return
    if file is not None:
        raise UserError(f"unexpected argument {file}; quote a text with spaces")
    path = Path(target)
    texts = _texts(path) if path.is_file() else [target]
    verdicts = [moderator.check(text) for text in texts]
    if json_:
        print_json([{"text": t, **v.openai()} for t, v in zip(texts, verdicts, strict=True)])
        return
    console().print(table(None, ["text", "flagged", "blocked", "categories", "found",
                                 "redacted"], [
        [t[:60], v.flagged, v.blocked, ", ".join(v.categories) or "-",
         "; ".join(f"{h.category}: {h.rule} ({h.source})" for h in v.hits) or "-",
         moderator.redact(t, v)[:60]]
        for t, v in zip(texts, verdicts, strict=True)]))


def _texts(path: Path) -> list[str]:
    rows = _lines(path)
    if path.suffix.lower() != ".jsonl":
        return [line for _, line in rows]
    return [str(_record(path, number, line).get("text", "")) for number, line in rows]


def _lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    rows = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not rows:
        raise DataError(f"{path}: no texts")
    return rows


def _record(path: Path, number: int, line: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise DataError(f"{path}:{number}: expected an object with a string `text`")
    return record


def _evaluate(moderator: Any, path: Path, json_: bool) -> None:
    from zero2one.moderation import evaluate

    if not path.is_file():
        raise DataError(f"{path}: not found")
    records = []
    for number, line in _lines(path):
        record = _record(path, number, line)
        labels = record.get("categories", [])
        if not isinstance(labels, list) or not all(isinstance(c, str) for c in labels):
            raise DataError(f"{path}:{number}: `categories` must be a list of category names")
        records.append((record["text"], labels))
    report = evaluate(moderator, records)
    if json_:
        print_json(report)
        return
    rows = [[c, s["support"], s["precision"], s["recall"], s["f1"]]
            for c, s in report["categories"].items()]
    overall = report["flagged"]
    rows.append(["(any: flagged or not)", overall["support"], overall["precision"],
                 overall["recall"], overall["f1"]])
    console().print(table(f"{path.name}: {report['texts']} texts", ["category", "labelled",
                                                                    "precision", "recall",
                                                                    "f1"], rows))
