"""``zero2one predict`` for image classifiers: an image or a folder of images -> one row per
file."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zero2one.errors import DataError
from zero2one.progress import NullReporter
from zero2one.tasks.vision.data import IMAGE_SUFFIXES, read_image

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd

    from zero2one.progress import Reporter
    from zero2one.tasks.vision.task import ImageClassification

log = logging.getLogger(__name__)


def image_files(path: str | Path) -> list[Path]:
    """An image file, or every image under a folder (sorted)."""

    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)})")
        return files
    raise DataError(f"input not found: {path}")


def predict_images(model: ImageClassification, path: str | Path, *, top_k: int = 3,
                   skip_bad: bool = False, chunk: int = 256,
                   reporter: Reporter | None = None) -> pd.DataFrame:
    """Top-k classes for an image or a folder of images: one row per file, ``top_k`` as JSON.
    A file that cannot be read as an image is an error; with ``skip_bad`` it gets an ``error``
    instead of predictions (counted in a warning) and the rest are still scored."""
    import pandas as pd

    rows: list[dict[str, Any]] = []
    files = image_files(path)
    with (reporter or NullReporter()).step(f"classifying {len(files)} image(s)",
                                           total=len(files)) as step:
        _predict_chunks(model, files, rows, top_k=top_k, skip_bad=skip_bad, chunk=chunk,
                        advance=step.advance)
    bad = sum(1 for row in rows if "error" in row)
    if bad:
        log.warning("%d of %d file(s) could not be read as images and were skipped", bad,
                    len(files))
    return pd.DataFrame(rows).sort_values("file", kind="stable").reset_index(drop=True)


def _predict_chunks(model: ImageClassification, files: list[Path], rows: list[dict[str, Any]],
                    *, top_k: int, skip_bad: bool, chunk: int,
                    advance: Callable[[int], None]) -> None:
    for start in range(0, len(files), chunk):
        images, names = [], []
        for file in files[start: start + chunk]:
            try:
                images.append(read_image(file.read_bytes(), name=str(file)))
                names.append(file)
            except (DataError, OSError) as exc:
                if not skip_bad:
                    said = str(exc) if str(file) in str(exc) else f"{file}: {exc}"
                    raise DataError(f"{said} (--skip-bad scores the other files)") from None
                rows.append({"file": str(file), "error": str(exc)})
        if images:
            for file, top in zip(names, model.predict(images, top_k=top_k), strict=True):
                rows.append({"file": str(file), "label": top[0]["label"],
                             "probability": top[0]["probability"],
                             "top_k": json.dumps([[t["label"], round(t["probability"], 6)]
                                                  for t in top], ensure_ascii=False)})
        advance(len(files[start: start + chunk]))
