"""Shared CLI options and printing: human tables on stdout, ``--json`` for scripts."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Annotated, Any

import typer

Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no summary.")]
Scheduler = Annotated[str | None, typer.Option(
    "--scheduler", envvar="DASK_SCHEDULER_ADDRESS", help="A running Dask scheduler "
    "(tcp://HOST:PORT) for the steps that use a cluster; default: a local cluster for this "
    "machine, started and stopped by the command.", show_default=False)]
Workers = Annotated[int | None, typer.Option(
    "--workers", min=1, help="Local Dask cluster: worker processes [one per core].",
    show_default=False)]
ModerationOption = Annotated[str | None, typer.Option(
    "--moderation", help="Check the prompt (and generated text): 'default' or a moderation "
    "YAML file.", show_default=False)]


def check_prompt(spec: str | None, prompt: str) -> object:
    """The moderator for ``--moderation`` (None when off); a blocked prompt is refused."""
    if spec is None:
        return None
    from zero2one.moderation import load_moderator
    from zero2one.moderation.stream import Blocked

    moderator = load_moderator(spec)
    verdict = moderator.check(prompt, where="input")
    if verdict.blocked:
        raise Blocked(verdict, "prompt")
    return moderator


class Precision(StrEnum):
    bfloat16 = "bfloat16"
    float32 = "float32"
    int8 = "int8"


PrecisionOption = Annotated[Precision | None, typer.Option(
    help="Language models: weights of each decoding step — bfloat16 (about 3× faster on a CPU), "
    "float32 (exactly transformers' numbers) or int8 [int8 for a model compressed to int8 "
    "weights, else bfloat16].", show_default=False)]


def console(stderr: bool = False) -> Any:
    """A rich console; piped output gets a wide page so tables stay readable in logs."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 200
    return Console(stderr=stderr, width=width)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> Any:
    """A rich table; cells are plain text (``[x]`` is shown, not read as markup) unless they
    are already rich renderables such as ``Text``."""
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    result = Table(title=escape(title) if title else None, title_justify="left")
    for column in columns:
        result.add_column(column, overflow="fold")
    for row in rows:
        result.add_row(*(v if isinstance(v, Text) else escape(fmt(v)) for v in row))
    return result


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={fmt(v)}" for k, v in value.items())
    return str(value)
