"""Images between the forms the task hands around: (S, S, C) uint8 arrays, PIL images, PNG
bytes, and grids of many images."""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np


def to_pil(array: np.ndarray) -> Any:
    """(S, S, C) uint8 -> a PIL image (L or RGB)."""
    from PIL import Image

    return Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)


def to_array(image: Any) -> np.ndarray:
    """A PIL image (L or RGB) -> (S, S, C) uint8."""
    array = np.asarray(image)
    return array[..., None] if array.ndim == 2 else array


def png_bytes(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def tile(images: np.ndarray, columns: int, pad: int = 1) -> np.ndarray:
    """(N, S, S, C) uint8 -> one (rows*(S+pad), columns*(S+pad), C) grid."""
    n, size, _, channels = images.shape
    rows = math.ceil(n / columns)
    grid = np.full((rows * (size + pad) + pad, columns * (size + pad) + pad, channels), 255,
                   dtype=np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        top, left = pad + r * (size + pad), pad + c * (size + pad)
        grid[top: top + size, left: left + size] = image
    return grid
