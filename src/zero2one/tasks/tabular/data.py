"""What a tabular task's ``load_data`` returns, and the conversions between rows as users pass
them and JSON-ready values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zero2one.errors import SchemaError
from zero2one.tasks.tabular.columns import Column

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class TabularData:
    X_train: pd.DataFrame
    X_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series
    columns: list[Column]
    target: str
    classes: list[Any] | None
    class_names: list[str] | None
    fingerprint: dict[str, Any]
    source: str
    profile: dict[str, Any] | None = None  # see tasks/tabular/profile.py
    ignored: list[str] | None = None  # source columns that are not features (dropped, ids)
    # data.engine dask: every row, in partitions (X_/y_ fields then hold samples); see scaled.py
    partitions: Any = None
    # the held-out rows' targets, predictions and scores, kept for evaluate and report
    held_out: tuple[Any, Any, Any, Any] | None = None


def as_frame(rows: Any) -> pd.DataFrame:
    """A DataFrame from what users pass naturally: a frame, one record (dict) or records."""
    import pandas as pd

    if isinstance(rows, pd.DataFrame):
        return rows
    if isinstance(rows, dict):
        rows = [rows]
    if isinstance(rows, list | tuple) and rows and all(isinstance(r, dict) for r in rows):
        return pd.DataFrame(list(rows))
    raise SchemaError("a tabular model predicts a DataFrame, a dict (one row) or a list of "
                      f"dicts (rows); got {type(rows).__name__}")


def plain(value: Any) -> Any:
    """numpy scalars and containers -> JSON-ready Python values."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value
