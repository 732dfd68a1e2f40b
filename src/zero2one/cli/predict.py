"""``zero2one predict MODEL_REF --input FILE [--output FILE]``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from zero2one.cli.output import Json, Quiet, Scheduler, Workers, console


def predict(
    model: Annotated[str, typer.Argument(
        help="Model reference: models:/NAME/VERSION, models:/NAME@ALIAS, models:/NAME/latest, "
        "runs:/ID/model, a directory or builtin:NAME.", show_default=False)],
    input_: Annotated[Path, typer.Option(
        "--input", "-i", help="What the model's task reads: CSV or Parquet rows (a file, a "
        "folder or a quoted glob such as 'data/*.parquet'; a `prompt` column for language "
        "models), an image or a folder of images, ...", show_default=False)],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write the scored rows here (.csv/.parquet); with --engine "
        "dask, a new folder of Parquet files; default: CSV on stdout.")] = None,
    engine: Annotated[Literal["pandas", "dask"], typer.Option(
        help="pandas: score in this process; dask: score the partitions of a table larger "
        "than memory on a Dask cluster (models that score table rows).")] = "pandas",
    scheduler: Scheduler = None,
    workers: Workers = None,
    allow_extra: Annotated[bool, typer.Option(
        "--allow-extra", help="Tabular models: keep columns the model does not use instead of "
        "refusing them.")] = False,
    trust: Annotated[list[str] | None, typer.Option(
        "--trust", help="Trust a type the model file holds that is not trusted by default "
        "(repeatable; only for models from a source you trust).")] = None,
    top_k: Annotated[int | None, typer.Option(
        min=1, help="Image models: classes to show per image [3].")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(
        min=1, help="Language models: most tokens per completion [128].")] = None,
    skip_bad: Annotated[bool, typer.Option(
        "--skip-bad", help="Inputs that are files: score the readable ones and report the "
        "others (counted), instead of stopping at the first that cannot be read.")] = False,
    option: Annotated[list[str] | None, typer.Option(
        "--option", "-O", help="KEY=VALUE: any other option the model's task takes "
        "(repeatable; VALUE is read as YAML).")] = None,
    json_: Json = False,
    quiet: Quiet = False,
) -> None:
    """Score a file with a model; the model's task reads it: rows of a CSV or Parquet file
    come back with prediction (and probability) columns, images (a file or a folder) with their
    top-k classes, a `prompt` column with a greedy `completion`."""
    from zero2one.api import check_output_path, load, write_frame
    from zero2one.progress import NullReporter, RichReporter

    options = {"allow_extra": allow_extra or None, "top_k": top_k, "skip_bad": skip_bad or None,
               "max_new_tokens": max_new_tokens, **parse_options(option or [])}
    reporter = NullReporter() if quiet or json_ else RichReporter()
    if engine == "dask":
        _predict_dask(model, input_, output, options, trust=tuple(trust or ()),
                      scheduler=scheduler, workers=workers, reporter=reporter, json_=json_,
                      quiet=quiet)
        return
    if output is not None:
        check_output_path(output)
    loaded = load(model, trust=trust or ())
    scored = loaded.predict_file(input_, reporter=reporter, **options)
    if output is None:
        if json_:
            sys.stdout.write(scored.to_json(orient="records", force_ascii=False) + "\n")
        else:
            scored.to_csv(sys.stdout, index=False)
        return
    write_frame(scored, output)
    if json_:
        from zero2one.cli.output import print_json

        print_json({"rows": len(scored), "output": str(output), "columns": list(scored.columns)})
    elif not quiet:
        console(stderr=True).print(f"wrote {len(scored)} rows to {output}")


def _predict_dask(model: str, input_: Path, output: Path | None, options: dict[str, object], *,
                  trust: tuple[str, ...], scheduler: str | None, workers: int | None,
                  reporter: object, json_: bool, quiet: bool) -> None:
    from zero2one.api import predict_partitions
    from zero2one.errors import UserError

    if output is None:
        raise UserError("--engine dask writes a folder of Parquet files: give --output FOLDER")
    done = predict_partitions(model, str(input_), output, scheduler=scheduler, workers=workers,
                              trust=trust, reporter=reporter,  # type: ignore[arg-type]
                              **{k: v for k, v in options.items() if v is not None})
    if json_:
        from zero2one.cli.output import print_json

        print_json({"rows": done.rows, "partitions": done.partitions, "output": str(output)})
    elif not quiet:
        console(stderr=True).print(f"wrote {done.rows} rows in {done.partitions} Parquet files "
                                   f"to {output}")


def parse_options(pairs: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` pairs, values read as YAML scalars (``3``, ``true``, ``text``)."""
    import yaml

    from zero2one.errors import UserError

    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--option {pair!r}: use KEY=VALUE")
        try:
            options[key.strip().replace("-", "_")] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise UserError(f"--option {pair!r}: the value is not valid YAML") from None
    return options
