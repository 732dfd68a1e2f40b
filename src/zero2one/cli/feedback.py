"""``zero2one feedback list|stats|export``: what users said of the served answers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zero2one.cli.output import Json, console, print_json, table

app = typer.Typer(help="Feedback on served answers: list, stats, export for training.",
                  no_args_is_help=True)
Store = Annotated[str, typer.Option(
    "--store", help="'default' (the workspace's SQLite), a file, or a database URL.")]


@app.command("list")
def list_(store: Store = "default", limit: Annotated[int, typer.Option(min=1)] = 20,
          json_: Json = False) -> None:
    """The newest feedback with the answers it is about."""
    from zero2one.feedback import FeedbackStore

    rows = FeedbackStore(store).rows(limit)
    if json_:
        print_json(rows)
        return
    console().print(table(None, ["#", "id", "model", "rating", "comment", "correction",
                                 "output"], [
        [r["number"], r["id"], f"{r['model']}@{r['version'] or '-'}",
         f"{r['rating']} ({r['scale']})" if r["rating"] is not None else "-",
         (r["comment"] or "-")[:40], (r["correction"] or "-")[:40], r["output"][:40]]
        for r in rows]))


@app.command("stats")
def stats(store: Store = "default", json_: Json = False) -> None:
    """Counts: answers recorded, feedback, good and bad ratings, corrections, per model."""
    from zero2one.feedback import FeedbackStore

    found = FeedbackStore(store).stats()
    if json_:
        print_json(found)
        return
    console().print(table(None, ["answers", "feedback", "good", "bad", "corrections",
                                 "comments"],
                          [[found[k] for k in ("answers", "feedback", "good", "bad",
                                               "corrections", "comments")]]))
    console().print(table("by model", ["model", "feedback", "good", "bad"], [
        [model, v["feedback"], v["good"], v["bad"]] for model, v in found["by_model"].items()]))


@app.command("export")
def export(
    format_: Annotated[str, typer.Option("--format", "-f", help="sft: chat JSONL of "
                                         "up-voted and corrected answers; dpo: preference "
                                         "pairs.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="JSONL file to write.")],
    store: Store = "default",
    json_: Json = False,
) -> None:
    """Feedback as training data: the data of the next fine-tune (sft) or of DPO (dpo)."""
    from zero2one.feedback import FeedbackStore

    count = FeedbackStore(store).export(format_, out)
    if json_:
        print_json({"examples": count, "out": str(out), "format": format_})
    else:
        console().print(f"wrote {count} {format_} examples to {out}")
