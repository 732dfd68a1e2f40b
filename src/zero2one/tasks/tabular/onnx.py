"""Tabular pipelines as ONNX graphs (skl2onnx), run by ONNX Runtime.

The whole fitted pipeline — imputers, scaler, one-hot encoder and estimator — becomes one graph
with one input per column (float32 numbers, strings), so a served model needs neither
scikit-learn nor pandas on the request path. :class:`OnnxPipeline` answers ``predict``,
``predict_proba`` and ``decision_function`` on DataFrames like the pipeline it came from, and
``run_rows`` on the server's validated rows.

Before a graph is kept its outputs are compared with the pipeline's on the held-out rows:
labels must agree on every row, and probabilities, scores or regression values within
:func:`tolerance` (float32 inputs: tree ensembles may send a value near a threshold down the
other branch in a few trees, hence their wider tolerance).
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zero2one.errors import ConversionError
from zero2one.onnxrt import OnnxModel

if TYPE_CHECKING:
    import pandas as pd

    from zero2one.tasks.tabular.columns import Column

MISSING = ""  # what a missing categorical value is fed as (the graph's imputer replaces it)


def tolerance(estimator: Any) -> float:
    """Largest difference allowed between the graph's and the pipeline's probabilities or
    scores (regression: relative to the target's spread)."""
    trees = hasattr(estimator, "estimators_") or hasattr(estimator, "tree_") or hasattr(
        estimator, "_predictors")
    return 0.05 if trees else 1e-3


def convert(pipeline: Any, columns: list[Column], directory: Path) -> Path:
    """``pipeline`` as ``directory/model.onnx``: one [N, 1] input per column."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    _integer_missing_flags()
    pipeline = copy.deepcopy(pipeline)
    _missing_as_empty(pipeline)
    inputs = [(c.name, FloatTensorType([None, 1]) if c.kind == "numeric"
               else StringTensorType([None, 1])) for c in columns]
    estimator = pipeline.steps[-1][1]
    options = {id(estimator): {"zipmap": False}} if hasattr(estimator, "classes_") else None
    try:
        with warnings.catch_warnings():  # deprecated attributes the converter reads
            warnings.simplefilter("ignore")
            graph = convert_sklearn(pipeline, initial_types=inputs, options=options)
    except Exception as exc:  # skl2onnx raises many types for what it cannot convert
        message = str(exc).strip().splitlines()[0][:240] if str(exc).strip() else ""
        raise ConversionError(
            f"skl2onnx cannot convert this pipeline ({type(estimator).__name__}): "
            f"{type(exc).__name__}{': ' + message if message else ''}") from None
    path = directory / "model.onnx"
    path.write_bytes(graph.SerializeToString())
    return path


def _integer_missing_flags() -> None:
    """skl2onnx 1.20 passes HistGradientBoosting's ``missing_go_to_left`` (a NumPy bool) to an
    integer attribute, which protobuf now refuses ("Expected an int, got a boolean"): the
    flag is made an int on its way in. Idempotent."""
    from skl2onnx.common import tree_ensemble

    add_node = tree_ensemble.add_node
    if getattr(add_node, "_zero2one", False):
        return

    def patched(*args: Any, **kwargs: Any) -> Any:
        if "nodes_missing_value_tracks_true" in kwargs:
            kwargs["nodes_missing_value_tracks_true"] = int(
                kwargs["nodes_missing_value_tracks_true"])
        return add_node(*args, **kwargs)

    patched._zero2one = True  # type: ignore[attr-defined]
    tree_ensemble.add_node = patched


def _missing_as_empty(pipeline: Any) -> None:
    """skl2onnx converts a string imputer only when its missing value is a string: the
    graph's categorical imputers treat ``""`` as missing, and :meth:`OnnxPipeline.feeds`
    sends missing values as ``""``."""
    from sklearn.impute import SimpleImputer

    for step in _all_steps(pipeline):
        if isinstance(step, SimpleImputer) and step.strategy == "constant" and isinstance(
                step.fill_value, str):
            step.missing_values = MISSING


def _all_steps(obj: Any) -> list[Any]:
    found = [obj]
    for attr in ("steps", "transformers_"):
        for item in getattr(obj, attr, None) or []:
            found.extend(_all_steps(item[1]))
    return found


class OnnxPipeline:
    """A fitted pipeline's graph, with the pipeline's prediction methods."""

    def __init__(self, graph: OnnxModel, columns: list[Column], *, probabilities: bool,
                 classification: bool) -> None:
        self.graph, self.columns = graph, columns
        self.classification = classification
        self.has_proba = probabilities
        self.named_steps: dict[str, Any] = {"model": None}  # no decision threshold to report

    def __getattr__(self, name: str) -> Any:
        if name == "predict_proba" and self.__dict__.get("has_proba"):
            return self._proba
        if name == "decision_function" and self.__dict__.get("classification") and not \
                self.__dict__.get("has_proba"):
            return self._scores
        raise AttributeError(name)

    def feeds(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for column in self.columns:
            values = frame[column.name]
            if column.kind == "numeric":
                out[column.name] = values.to_numpy(dtype=np.float32, na_value=np.nan)[:, None]
            else:
                out[column.name] = np.array([MISSING if _missing(v) else str(v)
                                             for v in values], dtype=object)[:, None]
        return out

    def rows_feeds(self, rows: list[list[Any]]) -> dict[str, np.ndarray]:
        """The server's validated rows (values in column order, None for missing)."""
        out: dict[str, np.ndarray] = {}
        for j, column in enumerate(self.columns):
            if column.kind == "numeric":
                out[column.name] = np.array([[np.nan if r[j] is None else r[j]] for r in rows],
                                            dtype=np.float32)
            else:
                out[column.name] = np.array([[MISSING if r[j] is None else str(r[j])]
                                             for r in rows], dtype=object)
        return out

    def outputs(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        result = self.graph.run(feeds)
        first = np.asarray(result[0]).reshape(len(next(iter(feeds.values()))), -1)
        labels = first[:, 0] if first.shape[1] == 1 else first
        second = np.asarray(result[1], dtype=np.float64) if len(result) > 1 else None
        return labels, second

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        labels, _ = self.outputs(self.feeds(frame))
        return labels if self.classification else labels.astype(np.float64)

    def _proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self._second(frame)

    def _scores(self, frame: pd.DataFrame) -> np.ndarray:
        scores = self._second(frame)
        return scores[:, 1] if scores.ndim == 2 and scores.shape[1] == 2 else scores

    def _second(self, frame: pd.DataFrame) -> np.ndarray:
        _, second = self.outputs(self.feeds(frame))
        if second is None:
            raise AttributeError("the graph gives labels only")
        return second

    def run_rows(self, rows: list[list[Any]]) -> list[tuple[Any, list[float] | None]]:
        """(prediction, probabilities or None) per row, as the server's adapter returns."""
        labels, second = self.outputs(self.rows_feeds(rows))
        values = labels.tolist() if self.classification else labels.astype(float).tolist()
        if self.has_proba and second is not None:
            return list(zip(values, second.tolist(), strict=True))
        return [(v, None) for v in values]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def check_agreement(pipeline: Any, graph: OnnxPipeline, X: pd.DataFrame, y: Any,
                    *, classification: bool) -> dict[str, float]:
    """The graph's outputs against the pipeline's on ``X``; ConversionError beyond tolerance."""
    atol = tolerance(pipeline.steps[-1][1])
    expected = pipeline.predict(X)
    actual = graph.predict(X)
    details: dict[str, float] = {"checked_rows": float(len(X)), "tolerance": atol}
    if classification:
        agreement = float(np.mean(np.asarray(expected) == np.asarray(actual)))
        details["label_agreement"] = agreement
        reference = None
        if graph.has_proba:
            reference, second = pipeline.predict_proba(X), graph.predict_proba(X)
        elif hasattr(pipeline, "decision_function"):
            reference, second = pipeline.decision_function(X), graph.decision_function(X)
        if reference is not None:
            difference = float(np.max(np.abs(np.asarray(reference) - np.asarray(second))))
            details["max_difference"] = difference
        if agreement < 1.0 or details.get("max_difference", 0.0) > atol:
            raise ConversionError(
                f"the ONNX graph disagrees with the pipeline on the held-out rows: labels agree "
                f"on {agreement:.2%}, scores differ by up to "
                f"{details.get('max_difference', 0.0):.3g} (tolerance {atol:g}); nothing was "
                "written")
        return details
    spread = float(np.std(np.asarray(y, dtype=np.float64))) or 1.0
    difference = float(np.max(np.abs(np.asarray(expected, dtype=np.float64) - actual)))
    details["max_difference"] = difference
    if difference > atol * spread:
        raise ConversionError(
            f"the ONNX graph's predictions differ from the pipeline's by up to "
            f"{difference:.3g} on the held-out rows (tolerance {atol:g} × the target's "
            f"standard deviation {spread:.3g}); nothing was written")
    return details
