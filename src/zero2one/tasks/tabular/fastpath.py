"""A NumPy fast path for the preprocessing zero2one's tabular pipelines use.

scikit-learn's ColumnTransformer costs about 3 ms per call on a one-row DataFrame (column
selection, validation, output wrapping) — 15× the SVC's own predict. A server answers one small
batch after another, so the fitted steps are replayed here with plain array arithmetic:
SimpleImputer (its fitted ``statistics_``), StandardScaler (``mean_``/``scale_``), OneHotEncoder
(``categories_``, unknown categories -> zeros) and passthrough. Anything else — or a pipeline
whose fast output differs from scikit-learn's on a probe batch — keeps the scikit-learn path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

Transform = Callable[[np.ndarray], np.ndarray]


def compile_pipeline(pipeline: Any, names: list[str], numeric: list[bool]) -> Transform | None:
    """A function mapping rows (object array, columns in ``names`` order) to the estimator's
    input, or None when a step is not one this module replays exactly."""
    from sklearn.compose import ColumnTransformer

    pre = pipeline.steps[0][1] if len(pipeline.steps) == 2 else None
    if not isinstance(pre, ColumnTransformer) or getattr(pre, "sparse_output_", False):
        return None
    if hasattr(pipeline.steps[-1][1], "feature_names_in_"):  # it expects a DataFrame
        return None
    parts: list[tuple[list[int], list[Transform], bool]] = []
    index = {n: i for i, n in enumerate(names)}
    for _, transformer, columns in pre.transformers_:
        if transformer == "drop" or (not isinstance(columns, list | tuple) or not columns):
            continue
        try:
            positions = [index[c] for c in columns]
        except (KeyError, TypeError):
            return None
        steps = _steps(transformer)
        if steps is None:
            return None
        parts.append((positions, steps, all(numeric[p] for p in positions)))
    if not parts:
        return None

    def transform(rows: np.ndarray) -> np.ndarray:
        blocks = []
        for positions, steps, is_numeric in parts:
            block = rows[:, positions]
            if is_numeric:  # None (a missing value in JSON) -> NaN, which the imputer fills
                nulls = np.equal(block, None)  # type: ignore[call-overload]  # element-wise
                block = np.where(nulls, np.nan, block).astype(np.float64)
            for step in steps:
                block = step(block)
            blocks.append(block)
        return np.hstack(blocks).astype(np.float64, copy=False)

    return transform


def _steps(transformer: Any) -> list[Transform] | None:
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    if transformer == "passthrough":
        return []
    chain = [s for _, s in transformer.steps] if isinstance(transformer, Pipeline) else [
        transformer]
    steps: list[Transform] = []
    for step in chain:
        if step == "passthrough" or (isinstance(step, FunctionTransformer) and step.func is None):
            continue  # fitted ColumnTransformers hold "passthrough" as an identity function
        if isinstance(step, SimpleImputer) and not step.add_indicator:
            steps.append(_imputer(step))
        elif isinstance(step, StandardScaler):
            steps.append(_scaler(step))
        elif (isinstance(step, OneHotEncoder) and step.handle_unknown == "ignore"
              and step.drop is None and getattr(step, "_infrequent_enabled", False) is False
              and not step.sparse_output):
            steps.append(_one_hot(step))
        else:
            return None
    return steps


def _imputer(step: Any) -> Transform:
    fill = np.asarray(step.statistics_, dtype=object)

    def impute(block: np.ndarray) -> np.ndarray:
        if block.dtype == np.float64:
            missing = np.isnan(block)
            if missing.any():
                block = np.where(missing, fill.astype(np.float64), block)
            return block
        missing = np.vectorize(_is_missing, otypes=[bool])(block)
        if missing.any():
            block = np.where(missing, fill, block)
        return block

    return impute


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _scaler(step: Any) -> Transform:
    mean = step.mean_ if step.with_mean else None
    scale = step.scale_ if step.with_std else None

    def scale_block(block: np.ndarray) -> np.ndarray:
        if mean is not None:
            block = block - mean
        if scale is not None:
            block = block / scale
        return block

    return scale_block


def _one_hot(step: Any) -> Transform:
    lookups = [{value: i for i, value in enumerate(categories)} for categories in step.categories_]
    widths = [len(categories) for categories in step.categories_]
    offsets = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(int)
    total = int(sum(widths))

    def encode(block: np.ndarray) -> np.ndarray:
        out = np.zeros((block.shape[0], total))
        for j, lookup in enumerate(lookups):
            for i, value in enumerate(block[:, j]):
                position = lookup.get(value)
                if position is not None:  # unknown category: all zeros, as handle_unknown=ignore
                    out[i, offsets[j] + position] = 1.0
        return out

    return encode


def known_values(pipeline: Any) -> dict[str, dict[str, Any]]:
    """What the fitted preprocessing knows of each column: ``options`` (a categorical column's
    categories, as one-hot encoded) and ``value`` (a numeric column's typical value: the imputer's
    fill value, else the scaler's mean)."""
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    known: dict[str, dict[str, Any]] = {}
    for _, transformer, columns in pipeline.steps[0][1].transformers_:
        if not isinstance(columns, list) or transformer in ("drop", "passthrough"):
            continue
        for _, step in getattr(transformer, "steps", [("", transformer)]):
            for i, column in enumerate(columns):
                values = known.setdefault(column, {})
                if isinstance(step, OneHotEncoder):
                    values["options"] = [c for c in step.categories_[i].tolist()
                                         if c != "(missing)"]
                elif (isinstance(step, SimpleImputer) and "value" not in values
                      and step.statistics_.dtype.kind == "f"):
                    values["value"] = float(step.statistics_[i])
                elif isinstance(step, StandardScaler) and "value" not in values \
                        and getattr(step, "mean_", None) is not None:
                    values["value"] = float(step.mean_[i])
    return known


def probe_rows(pipeline: Any, names: list[str], numeric: list[bool]) -> list[list[Any]]:
    """Rows that exercise every step: ordinary, negative and missing numbers; known, missing
    and unseen categories."""
    known = {name: values["options"] for name, values in known_values(pipeline).items()
             if "options" in values}
    rows = []
    for i, number in enumerate([0.5, -1.25, None, 3.0e3]):
        row: list[Any] = []
        for name, is_numeric in zip(names, numeric, strict=True):
            if is_numeric:
                row.append(number)
            else:
                options = known.get(name) or ["a"]
                row.append([options[0], options[-1], None, "__unseen__"][i])
        rows.append(row)
    return rows


def verified(pipeline: Any, transform: Transform, probe: Any, names: list[str]) -> bool:
    """True when ``transform`` matches scikit-learn's preprocessing on ``probe`` rows."""
    import pandas as pd

    try:
        expected = np.asarray(pipeline.steps[0][1].transform(pd.DataFrame(probe, columns=names)),
                              dtype=np.float64)
        actual = transform(np.asarray(probe, dtype=object))
    except Exception:  # any failure means: keep scikit-learn's path
        log.debug("fast path failed its probe", exc_info=True)
        return False
    return actual.shape == expected.shape and bool(np.allclose(actual, expected, equal_nan=True))
