"""A generated image set: coloured circles, squares, triangles and stars on noisy backgrounds.

    zero2one datasets make shapes OUT --size 32 --per-class 1000 --seed 0

Deterministic by seed; written as an image folder (OUT/circle/00000.png, ...), the classic
32×32×3 CNN input. With ``--captions``, shapes take one of four named colours on a grey
background and each image gets a caption file (OUT/star/00000.txt: "a red star"), for
text-to-image training.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from zero2one.errors import UserError

CLASSES = ("circle", "square", "triangle", "star")
COLOURS = {"red": (215, 40, 40), "green": (40, 170, 60), "blue": (45, 80, 220),
           "yellow": (235, 205, 40)}


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if kind == "square":
        corners, radii = 4, [r] * 4
    elif kind == "triangle":
        corners, radii = 3, [r] * 3
    else:  # star: 5 outer and 5 inner points
        corners, radii = 10, [r if i % 2 == 0 else r * 0.45 for i in range(10)]
    return [(cx + radii[i] * math.cos(angle + 2 * math.pi * i / corners),
             cy + radii[i] * math.sin(angle + 2 * math.pi * i / corners)) for i in range(corners)]


def draw(kind: str, size: int, rng: np.random.Generator,
         colour_name: str | None = None) -> np.ndarray:
    """One (size, size, 3) uint8 image of ``kind``: in a random colour on a random background,
    or in the named colour on a grey one."""
    from PIL import Image, ImageDraw

    if colour_name is None:
        background = rng.integers(0, 256, 3)
        noise = rng.normal(0, 18, (size, size, 3))
    else:
        background = np.full(3, rng.integers(90, 166))
        noise = rng.normal(0, 8, (size, size, 3))
    base = np.clip(background + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(base, "RGB")
    if colour_name is None:
        colour = tuple(int(c) for c in (background + rng.integers(90, 166, 3)) % 256)
    else:
        jitter = rng.integers(-15, 16, 3)
        colour = tuple(int(c) for c in np.clip(np.asarray(COLOURS[colour_name]) + jitter, 0,
                                               255))
    r = rng.uniform(0.22, 0.4) * size
    cx, cy = rng.uniform(r, size - r, 2)
    pen = ImageDraw.Draw(image)
    if kind == "circle":
        pen.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    else:
        pen.polygon(_polygon(kind, cx, cy, r, rng.uniform(0, 2 * math.pi)), fill=colour)
    return np.asarray(image)


def make_shapes(out: Path, *, size: int = 32, per_class: int = 1000, seed: int = 0,
                captions: bool = False) -> int:
    """Write the image folder; returns the number of images. ``out`` must not exist yet.
    ``captions``: named colours and a caption file per image ("a red star")."""
    import os
    import shutil
    import tempfile

    from PIL import Image

    if out.exists():
        raise UserError(f"{out} already exists; choose a new directory")
    if not 8 <= size <= 512 or per_class < 1:
        raise UserError("--size must be in 8..512 and --per-class at least 1")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        rng = np.random.default_rng(seed)
        for kind in CLASSES:
            (tmp / kind).mkdir()
            for i in range(per_class):
                colour = list(COLOURS)[i % len(COLOURS)] if captions else None
                Image.fromarray(draw(kind, size, rng, colour)).save(tmp / kind / f"{i:05d}.png")
                if colour is not None:
                    (tmp / kind / f"{i:05d}.txt").write_text(f"a {colour} {kind}\n")
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return per_class * len(CLASSES)
