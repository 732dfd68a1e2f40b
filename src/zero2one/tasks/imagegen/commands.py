"""``zero2one generate-image MODEL_REF --prompt TEXT --out DIR``: PNGs and a grid."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from zero2one.cli.output import Json, ModerationOption, Quiet, check_prompt, console, print_json


class Sampler(StrEnum):
    ddim = "ddim"
    dpm = "dpm++"
    euler = "euler"
    ddpm = "ddpm"


def generate_image(
    model: Annotated[str, typer.Argument(
        help="A model trained by zero2one (models:/NAME@ALIAS, runs:/ID/model, its directory), "
        "a diffusers pipeline directory (model_index.json) or diffusers:ORG/NAME.",
        show_default=False)],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="What to draw.",
                                        show_default=False)],
    out: Annotated[Path, typer.Option(help="New (or empty) directory for the PNGs and grid.png.",
                                      show_default=False)],
    negative_prompt: Annotated[str | None, typer.Option(help="What to steer away from.")] = None,
    guidance_scale: Annotated[float | None, typer.Option(
        help="1: no guidance; higher: closer to the prompt [the model's].")] = None,
    steps: Annotated[int | None, typer.Option(help="Denoising steps [the model's].")] = None,
    scheduler: Annotated[Sampler | None, typer.Option(help="Sampler [the model's].")] = None,
    seed: Annotated[int | None, typer.Option(help="Image i uses seed + i [random].")] = None,
    n: Annotated[int, typer.Option("--n", "-n", help="Number of images.")] = 4,
    width: Annotated[int | None, typer.Option(help="Pixels [the model's].")] = None,
    height: Annotated[int | None, typer.Option(help="Pixels [the model's].")] = None,
    moderation: ModerationOption = None,
    json_: Json = False,
    quiet: Quiet = False,
) -> None:
    """Draw images for a prompt; writes OUT/image-SEED.png for each and OUT/grid.png."""
    import time

    from zero2one.api import load
    from zero2one.errors import UserError
    from zero2one.progress import NullReporter, RichReporter
    from zero2one.tasks.imagegen.generate import check_options

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} exists and is not an empty directory; choose a new one")
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: directory {out.parent} does not exist")
    guard: Any = check_prompt(moderation, prompt)
    started = time.perf_counter()
    task = load(model)
    if not hasattr(task, "generate_many"):
        raise UserError(f"{model} is a {task.name} model; generate-image draws with "
                        "image-generation models")
    options = task.options(prompt=prompt, negative_prompt=negative_prompt,  # type: ignore[attr-defined]
                           guidance_scale=guidance_scale, steps=steps,
                           scheduler=scheduler.value if scheduler else None, seed=seed, n=n,
                           width=width, height=height)
    check_options(task.pipe_, options)  # type: ignore[attr-defined]  # before any bar is drawn
    total = options.steps or task.defaults_.steps  # type: ignore[attr-defined]
    reporter = NullReporter() if quiet or json_ else RichReporter()
    drawn = time.perf_counter()
    with reporter.step(f"drawing {n} image(s)", total=total) as progress:
        images, seeds = task.generate_many([options],  # type: ignore[attr-defined]
                                           callback=progress.advance)[0]
    seconds = time.perf_counter() - drawn
    files, seeds, withheld = _write_images(out, images, seeds, guard)
    summary = {"model": model, "prompt": prompt, "negative_prompt": negative_prompt,
               "seeds": seeds, "withheld_seeds": withheld, "files": files,
               "grid": str(out / "grid.png"),
               "seconds": round(seconds, 3), "total_seconds": round(time.perf_counter() -
                                                                     started, 3)}
    if json_:
        print_json(summary)
    elif not quiet:
        console().print(f"wrote {len(files)} image(s) and grid.png to {out}/ "
                        f"(seeds {seeds[0]}..{seeds[-1]}, {seconds:.1f} s)")


def _write_images(out: Path, images: list[Any], seeds: list[int],
                  guard: Any) -> tuple[list[str], list[int], list[int]]:
    """OUT/image-SEED.png for each image the image checker (where the moderation config names
    one) lets through, and OUT/grid.png: (files, their seeds, the withheld seeds)."""
    import numpy as np

    from zero2one.errors import UserError
    from zero2one.tasks.imagegen.images import tile, to_array, to_pil

    withheld = []
    if guard is not None:
        kept = [(im, s) for im, s in zip(images, seeds, strict=True)
                if not guard.check_image(im).blocked]
        withheld = [s for s in seeds if s not in {s for _, s in kept}]
        images, seeds = [im for im, _ in kept], [s for _, s in kept]
        if not images:
            raise UserError(f"every image was withheld by the image checker (seeds "
                            f"{', '.join(map(str, withheld))})")
    out.mkdir(exist_ok=True)
    files = []
    for image, used in zip(images, seeds, strict=True):
        path = out / f"image-{used}.png"
        image.save(path)
        files.append(str(path))
    to_pil(tile(np.stack([to_array(im) for im in images]), columns=min(4, len(images)))).save(
        out / "grid.png")
    return files, seeds, withheld
