"""A tabular model as an MLflow model: the feature columns in (each column's type from the
manifest's schema, an example row of typical values — the imputer's, the first known
category), the prediction columns out (the class, its name, per-class probabilities)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zero2one.task import PyfuncSchema, pyfunc_columns
from zero2one.tasks.tabular.fastpath import known_values

if TYPE_CHECKING:
    import pandas as pd

    from zero2one.tasks.tabular.columns import Column
    from zero2one.tasks.tabular.task import TabularTask


def schema(task: TabularTask) -> PyfuncSchema:
    import pandas as pd

    # an ONNX graph (an exported model) keeps no scikit-learn steps to ask
    graph = hasattr(task.pipeline_, "run_rows")
    known = {} if graph else known_values(task.pipeline_)
    inputs = [(c.name, _kind(c)) for c in task.columns_]
    example = {c.name: [_typical(c, known.get(c.name, {}))] for c in task.columns_}
    outputs = pyfunc_columns(predict(task, pd.DataFrame(example), {}))
    return PyfuncSchema(inputs=inputs, outputs=outputs, example=example)


def predict(task: TabularTask, frame: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """The prediction columns alone (the input columns are the caller's)."""
    out = task.predict_rows(frame, **params)
    return out[[c for c in out.columns if c not in frame.columns]]


def _kind(column: Column) -> str:
    if column.kind == "numeric":
        return "double"
    if column.dtype == "bool":
        return "boolean"
    return {"i": "long", "u": "long", "f": "double"}.get(column.dtype[:1], "string")


def _typical(column: Column, known: dict[str, Any]) -> Any:
    if column.kind == "numeric":
        return float(known.get("value", 0.0))
    options = known.get("options") or []
    kind = _kind(column)
    if kind == "string":
        return str(options[0]) if options else ""
    value = options[0] if options else 0
    return {"boolean": bool, "long": int, "double": float}[kind](value)
