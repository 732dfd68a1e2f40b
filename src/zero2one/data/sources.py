"""Tabular data sources: CSV, Parquet and scikit-learn's built-in data sets.

A source string is either ``sklearn:NAME`` (iris, wine, breast_cancer, diabetes, digits), a
path to a ``.csv``, ``.parquet``/``.pq`` file, relative to the working directory, or a folder or
glob of such files (see :mod:`zero2one.scale.frames`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zero2one.errors import DataError
from zero2one.scale.frames import is_glob, read_frame, read_pandas

if TYPE_CHECKING:
    import pandas as pd

SKLEARN_DATASETS = ("iris", "wine", "breast_cancer", "diabetes", "digits")


@dataclass
class Table:
    """A loaded data set: the frame plus what the source knows about it."""

    frame: pd.DataFrame
    source: str
    # display names for integer class codes (scikit-learn's target_names), in code order
    class_names: list[str] | None = None
    default_target: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def load_table(source: str) -> Table:
    """Load a source string into a :class:`Table`; a missing or unreadable file is a DataError."""
    if source.startswith("sklearn:"):
        return _load_sklearn(source.removeprefix("sklearn:"))
    path = Path(source)
    if is_glob(source) or path.is_dir():  # several files: checked to agree, then concatenated
        return Table(frame=read_pandas(source), source=source)
    frame = read_frame(path)
    return Table(frame=frame, source=str(path))


def _load_sklearn(name: str) -> Table:
    from sklearn import datasets

    if name not in SKLEARN_DATASETS:
        raise DataError(
            f"unknown built-in data set sklearn:{name}; choose one of: "
            + ", ".join(f"sklearn:{n}" for n in SKLEARN_DATASETS)
        )
    bunch = getattr(datasets, f"load_{name}")(as_frame=True)
    frame = bunch.frame.rename(columns=_snake)
    target_names = getattr(bunch, "target_names", None)
    class_names = None
    if target_names is not None and name != "diabetes":
        class_names = [str(n) for n in target_names]
    return Table(
        frame=frame, source=f"sklearn:{name}", class_names=class_names, default_target="target"
    )


def _snake(name: str) -> str:
    """``'sepal length (cm)'`` -> ``'sepal_length'``; ``'pixel_0_0'`` unchanged."""
    name = re.sub(r"\(.*?\)", "", str(name)).strip().lower()
    return re.sub(r"[^0-9a-z]+", "_", name).strip("_")


def fingerprint(frame: pd.DataFrame) -> dict[str, Any]:
    """Content hash, shape and schema of a frame; equal data gives an equal hash, whatever file."""
    import pandas as pd

    digest = hashlib.sha256()
    digest.update(repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return {
        "sha256": digest.hexdigest(),
        "rows": int(frame.shape[0]),
        "columns": int(frame.shape[1]),
        "schema": {str(c): str(t) for c, t in frame.dtypes.items()},
    }
