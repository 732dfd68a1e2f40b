"""Captioned images: scikit-learn's digits, class folders with a caption template, or images
with a caption file beside each.

Everything becomes one uint8 array (N, S, S, C) and one caption per image. Captions that repeat
(class captions) also give class labels, which the evaluation's judge classifier learns.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zero2one.errors import DataError
from zero2one.tasks.imagegen.config import DIGIT_WORDS, CaptionedDataConfig
from zero2one.tasks.vision.data import IMAGE_SUFFIXES, read_image, to_array

log = logging.getLogger(__name__)

MIN_PER_CLASS = 5  # captions with fewer images are free text, not classes


@dataclass
class Captioned:
    x: np.ndarray  # (N, S, S, C) uint8
    captions: list[str]
    source: str
    skipped: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # class caption -> class name


    @property
    def prompts(self) -> list[str]:
        """The class captions (each on at least MIN_PER_CLASS images), in first-seen order."""
        counts = Counter(self.captions)
        return [c for c in dict.fromkeys(self.captions) if counts[c] >= MIN_PER_CLASS]

    def labels(self) -> np.ndarray:
        """Class index per image (-1: a caption that is not a class caption)."""
        index = {c: i for i, c in enumerate(self.prompts)}
        return np.asarray([index.get(c, -1) for c in self.captions], dtype=np.int64)

    def fingerprint(self) -> dict[str, Any]:
        digest = hashlib.sha256(self.x.tobytes())
        digest.update("\n".join(self.captions).encode())
        return {"sha256": digest.hexdigest(), "rows": len(self.x), "shape": list(self.x.shape),
                "captions": len(set(self.captions))}


def load_captioned(cfg: CaptionedDataConfig) -> Captioned:
    source = cfg.source
    if source == "sklearn:digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = np.clip(digits.images * (255 / 16), 0, 255).astype(np.uint8)
        words = {**DIGIT_WORDS, **cfg.words}
        captions = [cfg.template.format(label=words[str(t)]) for t in digits.target]
        images: list[Any] = [_pil(im) for im in x]
        result = _conform(images, captions, cfg, source, [])
        result.names = {cfg.template.format(label=words[str(t)]): str(t) for t in range(10)}
        return result
    if source.startswith("folder:"):
        return _folder(Path(source.removeprefix("folder:")), cfg)
    raise DataError(f"data.source {source!r}: use sklearn:digits or folder:PATH")


def _pil(array: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray(array)


def _folder(root: Path, cfg: CaptionedDataConfig) -> Captioned:
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    image_files = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if not image_files:
        raise DataError(f"{root}: no images (PNG, JPEG, BMP, GIF, WebP)")
    mode = cfg.captions
    if mode == "auto":
        mode = "files" if any(p.suffix == ".txt" for p in files) else "template"
    if mode == "files":
        missing = [p for p in image_files if not p.with_suffix(".txt").is_file()]
        if missing:
            shown = ", ".join(str(p.relative_to(root)) for p in missing[:3])
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise DataError(f"{root}: {len(missing)} image(s) have no caption file "
                            f"(IMAGE.txt beside IMAGE.png): {shown}{more}")
    elif any(p.parent == root for p in image_files):
        raise DataError(f"{root}: images directly in the folder need caption files "
                        "(IMAGE.txt); for class captions put them in class sub-folders")
    images, captions, skipped = [], [], []
    names: dict[str, str] = {}
    for path in image_files:
        try:
            image = read_image(path.read_bytes(), name=str(path))
        except DataError as exc:
            log.warning("skipping %s", exc)
            skipped.append(str(path))
            continue
        if mode == "files":
            caption = " ".join(path.with_suffix(".txt").read_text(encoding="utf-8").split())
            if not caption:
                raise DataError(f"{path.with_suffix('.txt')}: empty caption")
        else:
            name = path.parent.relative_to(root).parts[0]
            caption = cfg.template.format(label=cfg.words.get(name, name.replace("_", " ")))
            names[caption] = name
        images.append(image)
        captions.append(caption)
    if not images:
        raise DataError(f"{root}: no readable image")
    result = _conform(images, captions, cfg, f"folder:{root}", skipped)
    result.names = names
    return result


def _conform(images: list[Any], captions: list[str], cfg: CaptionedDataConfig, source: str,
             skipped: list[str]) -> Captioned:
    """One size and channel count for all: the recipe's, or the images' own when they agree."""

    if cfg.image_size is None:
        sizes = Counter(im.size for im in images)
        if len(sizes) > 1:
            shown = ", ".join(f"{w}×{h} ({n})" for (w, h), n in sizes.most_common(4))
            raise DataError(f"{source}: images of mixed sizes ({shown}); set data.image_size "
                            "to resize them all to one square size")
        width, height = next(iter(sizes))
        if width != height:
            raise DataError(f"{source}: the images are {width}×{height}; the model draws square "
                            "images: set data.image_size to resize them")
        size = width
    else:
        size = cfg.image_size
    channels = cfg.channels or (3 if any(im.mode != "L" for im in images) else 1)
    x = np.stack([to_array(im, size, channels) for im in images])
    return Captioned(x, captions, source, skipped)


def split(data: Captioned, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the generator's training images and of the held-out ones (stratified by
    class caption when every class has enough images)."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(data.x))
    if holdout <= 0:
        return index, index[:0]
    labels = data.labels()
    stratify = labels if (labels >= 0).all() and len(data.prompts) > 1 else None
    try:
        train, held = train_test_split(index, test_size=holdout, stratify=stratify,
                                       random_state=seed)
    except ValueError as exc:
        raise DataError(f"{data.source}: cannot hold out {holdout:.0%} of {len(index)} images "
                        f"({exc})") from None
    return np.sort(train), np.sort(held)
