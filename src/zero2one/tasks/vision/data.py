"""Image data: scikit-learn's digits, a folder of class sub-folders, or a NumPy .npz file.

Everything becomes one uint8 array (N, S, S, C) of equal-sized images plus integer labels;
splitting is stratified and seeded; normalisation statistics come from the training split only.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zero2one.errors import DataError, SchemaError
from zero2one.tasks.vision.config import ImageDataConfig

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
MAX_PIXELS = 40_000_000  # a bigger image is refused as a possible decompression bomb


@dataclass
class ImageSet:
    x: np.ndarray  # (N, S, S, C) uint8
    y: np.ndarray  # (N,) int64
    class_names: list[str]
    source: str
    skipped: list[str] = field(default_factory=list)  # files that could not be read


def load_images(cfg: ImageDataConfig) -> ImageSet:
    source = cfg.source
    if source == "sklearn:digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = np.clip(digits.images * (255 / 16), 0, 255).astype(np.uint8)[..., None]
        result = ImageSet(x, digits.target.astype(np.int64), [str(c) for c in range(10)], source)
    elif source.startswith("folder:"):
        result = _folder(Path(source.removeprefix("folder:")), cfg)
    elif source.startswith("npz:"):
        result = _npz(Path(source.removeprefix("npz:")))
    else:
        raise DataError(f"data.source {source!r}: use sklearn:digits, folder:PATH or npz:PATH")
    return _conform(result, cfg)


def _folder(root: Path, cfg: ImageDataConfig) -> ImageSet:
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class sub-folders (expected {root}/CLASS/image.png)")
    images: list[Any] = []
    labels: list[int] = []
    skipped: list[str] = []
    empty: list[str] = []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.is_file())
        count = 0
        captioned = {p.stem for p in files if p.suffix.lower() in IMAGE_SUFFIXES}
        for file in files:
            if file.suffix == ".txt" and file.stem in captioned:  # an image's caption file
                continue
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                skipped.append(str(file))
                continue
            try:
                image = read_image(file.read_bytes(), name=str(file))
            except DataError as exc:
                if cfg.on_bad_file == "fail":
                    raise
                log.warning("skipping %s", exc)
                skipped.append(str(file))
                continue
            images.append(image)
            labels.append(label)
            count += 1
        if not count:
            empty.append(name)
    if empty:
        raise DataError(f"{root}: class folder(s) with no readable image: {', '.join(empty)}")
    size = cfg.image_size or Counter(im.size for im in images).most_common(1)[0][0][0]
    channels = cfg.channels or (3 if any(im.mode != "L" for im in images) else 1)
    x = np.stack([to_array(im, size, channels) for im in images])
    return ImageSet(x, np.asarray(labels, dtype=np.int64), classes, f"folder:{root}", skipped)


def read_image(data: bytes, *, name: str = "image", max_pixels: int = MAX_PIXELS) -> Any:
    """Decode image bytes with Pillow into mode L or RGB; corrupt data, unsupported formats and
    oversized images (checked from the header, before decoding) raise DataError."""
    import io
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise DataError(f"{name}: {width}×{height} pixels is over the limit of "
                                f"{max_pixels}")
            if image.format not in {"PNG", "JPEG", "BMP", "GIF", "WEBP"}:
                raise DataError(f"{name}: unsupported image format {image.format}")
            image.load()
    except DataError:
        raise
    except UnidentifiedImageError:
        raise DataError(f"{name}: not an image, or a corrupt one (unknown format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(f"{name}: too many pixels (possible decompression bomb)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{name}: not a readable image ({type(exc).__name__}: {exc})") from None
    if image.mode in ("L", "RGB"):
        return image
    if image.mode in ("1", "I", "I;16", "F", "LA") or (image.mode == "P" and _grey_palette(image)):
        return image.convert("L")
    return image.convert("RGB")  # RGBA, P, CMYK, YCbCr, ...


def _grey_palette(image: Any) -> bool:
    palette = image.getpalette() or []
    return all(palette[i] == palette[i + 1] == palette[i + 2] for i in range(0, len(palette), 3))


def open_image(value: Any) -> Any:
    """A PIL image from a PIL image, a path or bytes (decoded by :func:`read_image`); a file
    that cannot be read is a DataError, anything else a SchemaError."""
    if hasattr(value, "getbands"):
        return value
    if isinstance(value, bytes):
        return read_image(value)
    if isinstance(value, str | Path):
        try:
            blob = Path(value).read_bytes()
        except OSError as exc:
            raise DataError(f"cannot read image {value}: {exc.strerror or exc}") from None
        return read_image(blob, name=str(value))
    raise SchemaError(f"not an image: {type(value).__name__}")


def to_array(image: Any, size: int, channels: int) -> np.ndarray:
    """(size, size, channels) uint8; resized with bilinear filtering when needed."""
    from PIL import Image

    image = image.convert("L" if channels == 1 else "RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if channels == 1 else array


def _npz(path: Path) -> ImageSet:
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            x, y = data["x"], data["y"]
            names = [str(n) for n in data["class_names"]] if "class_names" in data else None
    except KeyError as exc:
        raise DataError(f"{path}: the .npz file needs arrays 'x' and 'y' (missing {exc})") from None
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[1] != x.shape[2] or x.shape[3] not in (1, 3):
        raise DataError(f"{path}: x must be (N, S, S) or (N, S, S, 1|3), got {x.shape}")
    if len(x) != len(y):
        raise DataError(f"{path}: x has {len(x)} images but y has {len(y)} labels")
    if x.dtype != np.uint8:
        if np.issubdtype(x.dtype, np.floating) and x.size and float(np.nanmax(x)) <= 1.0:
            x = x * 255.0
        x = np.clip(np.nan_to_num(x), 0, 255).astype(np.uint8)
    values = np.unique(y)
    names = names or [str(v) for v in values]
    if names and len(names) < len(values):
        raise DataError(f"{path}: class_names has {len(names)} names for {len(values)} labels")
    labels = np.searchsorted(values, y).astype(np.int64)
    return ImageSet(x, labels, [names[i] for i in range(len(values))], f"npz:{path}")


def _conform(images: ImageSet, cfg: ImageDataConfig) -> ImageSet:
    """Checks shared by every source, and a resize when the recipe asks for another size."""
    if len(images.x) == 0:
        raise DataError(f"{images.source}: no images")
    present = np.unique(images.y)
    if len(present) < 2:
        raise DataError(f"{images.source}: a single class "
                        f"({images.class_names[int(present[0])]!r}); classification needs two")
    size = images.x.shape[1]
    want_size = cfg.image_size or size
    want_channels = cfg.channels or images.x.shape[3]
    if (want_size, want_channels) != (size, images.x.shape[3]):
        from PIL import Image

        images.x = np.stack([
            to_array(Image.fromarray(im[..., 0] if im.shape[2] == 1 else im), want_size,
                     want_channels) for im in images.x])
    return images


def split(images: ImageSet, cfg: ImageDataConfig, seed: int) -> dict[str, tuple[np.ndarray,
                                                                                  np.ndarray]]:
    """Stratified train/val/test split; every class needs a few images in each part."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(images.y)
    small = [images.class_names[i] for i, c in enumerate(counts) if 0 < c < 3]
    if small:
        raise DataError(f"class(es) {', '.join(small)} have fewer than 3 images; each split "
                        "needs one")
    x_rest, x_test, y_rest, y_test = train_test_split(
        images.x, images.y, test_size=cfg.test_size, stratify=images.y, random_state=seed)
    val_share = cfg.val_size / (1 - cfg.test_size)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_share, stratify=y_rest, random_state=seed)
    return {"train": (x_train, y_train), "val": (x_val, y_val), "test": (x_test, y_test)}
