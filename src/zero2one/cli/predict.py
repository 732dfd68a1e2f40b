"""``zero2one predict MODEL_REF --input FILE [--output FILE]``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from zero2one.cli.output import Json, Quiet, console


def predict(
    model: Annotated[str, typer.Argument(
        help="Model reference: models:/NAME/VERSION, models:/NAME@ALIAS, runs:/ID/model or a "
        "directory.", show_default=False)],
    input_: Annotated[Path, typer.Option("--input", "-i", help="CSV or Parquet rows to score.",
                                         show_default=False)],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write the scored rows here (.csv/.parquet); default: CSV on "
        "stdout.")] = None,
    allow_extra: Annotated[bool, typer.Option(
        "--allow-extra", help="Keep columns the model does not use instead of refusing them.")
    ] = False,
    trust: Annotated[list[str] | None, typer.Option(
        "--trust", help="Trust a type the model file holds that is not trusted by default "
        "(repeatable; only for models from a source you trust).")] = None,
    json_: Json = False,
    quiet: Quiet = False,
) -> None:
    """Score rows with a model: the same rows plus prediction (and probability) columns."""
    from zero2one.api import predict_file

    scored = predict_file(model, input_, output, allow_extra=allow_extra, trust=trust or ())
    if output is None:
        if json_:
            sys.stdout.write(scored.to_json(orient="records", force_ascii=False) + "\n")
        else:
            scored.to_csv(sys.stdout, index=False)
        return
    if json_:
        from zero2one.cli.output import print_json

        print_json({"rows": len(scored), "output": str(output), "columns": list(scored.columns)})
    elif not quiet:
        console(stderr=True).print(f"wrote {len(scored)} rows to {output}")
