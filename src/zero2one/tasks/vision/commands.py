"""``zero2one datasets make shapes OUT``: generated data sets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zero2one.cli.output import console

app = typer.Typer(help="Generated data sets.", no_args_is_help=True)
make = typer.Typer(help="Generate a data set.", no_args_is_help=True)
app.add_typer(make, name="make")


@make.command("shapes")
def shapes(
    out: Annotated[Path, typer.Argument(help="Directory to create.", show_default=False)],
    size: Annotated[int, typer.Option(min=8, max=512, help="Image side in pixels.")] = 32,
    per_class: Annotated[int, typer.Option(min=1, help="Images per class.")] = 1000,
    seed: Annotated[int, typer.Option(min=0, help="Random seed (same seed, same images).")] = 0,
    captions: Annotated[bool, typer.Option(
        help="Named colours (red, green, blue, yellow) on grey, and a caption file per image "
        "(\"a red star\"): text-to-image training data.")] = False,
) -> None:
    """Circles, squares, triangles and stars on noisy backgrounds, as an image folder."""
    from zero2one.tasks.vision.shapes import CLASSES, make_shapes

    count = make_shapes(out, size=size, per_class=per_class, seed=seed, captions=captions)
    console().print(f"wrote {count} images ({', '.join(CLASSES)}) to {out}/; use it with "
                    f"data.source: folder:{out}")
