"""An image classifier as an MLflow model: an ``image`` column of encoded images in (bytes; a
base64 string, as MLflow's JSON carries ``binary`` columns, is decoded), the top class, its
probability and the top-k (JSON) out. The image-text models use :func:`image_bytes` too."""

from __future__ import annotations

import base64
import binascii
import io
import json
from typing import TYPE_CHECKING, Any

from zero2one.errors import SchemaError
from zero2one.task import PyfuncSchema, pyfunc_columns

if TYPE_CHECKING:
    import pandas as pd

    from zero2one.tasks.vision.task import ImageClassification


def schema(task: ImageClassification) -> PyfuncSchema:
    import pandas as pd

    example = {"image": [blank_png(task.image_size_, task.channels_)]}
    outputs = pyfunc_columns(predict(task, pd.DataFrame(example), {}))
    return PyfuncSchema(inputs=[("image", "binary")], outputs=outputs, example=example,
                        params={"top_k": 3})


def predict(task: ImageClassification, frame: pd.DataFrame,
            params: dict[str, Any]) -> pd.DataFrame:
    import pandas as pd

    top = task.predict(image_bytes(frame), top_k=int(params.get("top_k", 3)))
    return pd.DataFrame({"label": [row[0]["label"] for row in top],
                         "probability": [row[0]["probability"] for row in top],
                         "top_k": [json.dumps(row) for row in top]})


def image_bytes(frame: pd.DataFrame, column: str = "image") -> list[bytes]:
    """The encoded images of a frame's column: bytes as they are, base64 strings (or ``data:``
    URLs) decoded; anything else a one-line SchemaError."""
    if column not in frame.columns:
        raise SchemaError(f"the input needs an `{column}` column (encoded images); it has "
                          f"{', '.join(map(str, frame.columns)) or 'none'}")
    out = []
    for number, value in enumerate(frame[column].tolist()):
        if isinstance(value, bytes | bytearray):
            out.append(bytes(value))
            continue
        if not isinstance(value, str):
            raise SchemaError(f"row {number}: `{column}` is a {type(value).__name__}, not "
                              "encoded image bytes or base64")
        text = value.split(",", 1)[1] if value.startswith("data:") else value
        try:
            out.append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            raise SchemaError(f"row {number}: `{column}` is not valid base64") from None
    return out


def blank_png(size: int, channels: int) -> bytes:
    """A mid-grey PNG the model's size (the MLflow input example)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L" if channels == 1 else "RGB", (size, size),
              128 if channels == 1 else (128, 128, 128)).save(buffer, format="PNG")
    return buffer.getvalue()
