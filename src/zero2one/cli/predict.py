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
    input_: Annotated[Path, typer.Option(
        "--input", "-i", help="CSV or Parquet rows to score; for image models an image or a "
        "folder of images; for language models rows with a `prompt` column.",
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
    top_k: Annotated[int, typer.Option(min=1, help="Image models: classes to show.")] = 3,
    json_: Json = False,
    quiet: Quiet = False,
) -> None:
    """Score rows with a model: the same rows plus prediction (and probability) columns; for
    an image model, the top-k classes of each image; for a language model, a greedy
    `completion` of each `prompt`."""
    from zero2one.api import check_output_path, load, predict_file, predict_images, write_frame

    if output is not None:
        check_output_path(output)
    loaded = load(model, trust=trust or ())
    if loaded.name == "image-classification":
        scored = predict_images(loaded, input_, top_k=top_k)
        if output is not None:
            write_frame(scored.assign(top_k=scored["top_k"].astype(str)) if "top_k" in scored
                        else scored, output)
        elif not json_:
            from zero2one.cli.output import table

            columns = [c for c in ("file", "label", "probability", "top_k", "error")
                       if c in scored.columns]
            shown = scored[columns].astype(object).where(scored[columns].notna(), None)
            console().print(table(None, columns, shown.values.tolist()))
            return
    else:
        scored = predict_file(loaded, input_, output, allow_extra=allow_extra)
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
