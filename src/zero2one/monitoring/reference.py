"""What a model saw at training, kept with it as ``reference.json``: the yardstick of drift.

Per feature a compact summary, never the rows themselves: for a numeric column the decile edges
of its training values with the share of rows in each bin and a 1000-point quantile sketch (the
two-sample test compares served values with it), for a categorical one the share of each
category (the 100 most common; the rest pooled), and for both the missing share. The model's
own predictions on held-out rows give the reference class shares (or the numeric prediction's
summary for a regressor).

    >>> reference = frame_reference(X_train, predictions=model.predict(X_test))
    >>> (model_dir / REFERENCE).write_text(json.dumps(reference))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zero2one.artifacts import sha256_file
from zero2one.errors import ArtifactError, IntegrityError

if TYPE_CHECKING:
    import pandas as pd

REFERENCE = "reference.json"
FORMAT = 1
BINS = 10
SKETCH = 1000  # quantiles kept of a numeric column
TOP = 100  # categories kept by name; the rest pooled as OTHER
OTHER = "__other__"


def column_reference(series: pd.Series, *, numeric: bool) -> dict[str, Any]:
    """The summary of one column's training values."""
    import pandas as pd

    rows = len(series)
    missing = float(series.isna().mean()) if rows else 0.0
    present = series.dropna()
    if numeric:
        values = pd.to_numeric(present, errors="coerce").dropna().to_numpy(dtype=float)
        if len(values) == 0:
            return {"kind": "numeric", "missing": missing, "rows": rows, "edges": [],
                    "shares": [], "sketch": []}
        edges = np.unique(np.quantile(values, np.linspace(0, 1, BINS + 1))[1:-1])
        counts = np.bincount(np.searchsorted(edges, values, side="right"),
                             minlength=len(edges) + 1)
        sketch = np.quantile(values, np.linspace(0, 1, min(SKETCH, len(values))))
        return {"kind": "numeric", "missing": missing, "rows": rows,
                "edges": edges.tolist(), "shares": (counts / counts.sum()).tolist(),
                "sketch": sketch.tolist(), "mean": float(values.mean()),
                "std": float(values.std())}
    counts = present.astype(str).value_counts()
    total = max(int(counts.sum()), 1)
    shares = {str(k): int(v) / total for k, v in counts.head(TOP).items()}
    rest = 1.0 - sum(shares.values())
    if len(counts) > TOP and rest > 0:
        shares[OTHER] = rest
    return {"kind": "categorical", "missing": missing, "rows": rows, "shares": shares}


def frame_reference(frame: pd.DataFrame | None, *, numeric: dict[str, bool],
                    predictions: Any = None, classifier: bool = True) -> dict[str, Any]:
    """The reference of a table's features (``numeric``: column -> is numeric; None: a model
    whose inputs are not a table) and, when given, of the model's predictions (class shares of
    a classifier, a numeric summary of a regressor)."""
    import pandas as pd

    reference: dict[str, Any] = {
        "format": FORMAT, "rows": 0 if frame is None else len(frame),
        "features": {} if frame is None else {
            name: column_reference(frame[name], numeric=numeric[name]) for name in numeric}}
    if predictions is not None:
        reference["prediction"] = column_reference(pd.Series(list(predictions)),
                                                   numeric=not classifier)
    return reference


EMBEDDED = 200  # reference vectors kept
DECIMALS = 4


def embedding_rows(vectors: Any) -> list[list[float]]:
    """Vectors as JSON-ready rows, rounded (what is stored of each)."""
    return np.round(np.asarray(vectors, dtype=float), DECIMALS).tolist()


def log_probabilities(proba: Any) -> np.ndarray:
    """Class probabilities as the vectors a classifier's drift is measured on: their logs
    (floored at 1e-6), on which a linear model sees what the simplex hides."""
    return np.log(np.clip(np.asarray(proba, dtype=float), 1e-6, None))


def embedding_reference(vectors: Any, *, kind: str, seed: int = 0) -> dict[str, Any]:
    """At most :data:`EMBEDDED` of a model's vectors on held-out inputs (a random subset),
    for the embedding drift test of :mod:`zero2one.monitoring.embeddings`."""
    vectors = np.asarray(vectors, dtype=float)
    if len(vectors) > EMBEDDED:
        keep = np.random.default_rng(seed).choice(len(vectors), EMBEDDED, replace=False)
        vectors = vectors[np.sort(keep)]
    return {"kind": kind, "vectors": embedding_rows(vectors)}


def write(directory: Path, reference: dict[str, Any]) -> None:
    (directory / REFERENCE).write_text(json.dumps(reference, allow_nan=False) + "\n")


def read(directory: Path, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """A model directory's reference, checked against the manifest's hash; None when the model
    was saved without one."""
    path = directory / REFERENCE
    expected = (manifest.get("files") or {}).get(REFERENCE)
    if not path.is_file():
        return None
    if expected is None or sha256_file(path) != expected:
        raise IntegrityError(f"{path}: not the file the manifest lists (its sha256 differs); "
                             "refusing to compare with it")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ArtifactError(f"{path}: an unknown reference format")
    return data
