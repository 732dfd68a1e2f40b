"""Column types: inferred at training, recorded in the manifest, enforced at prediction.

The same :func:`coerce` runs on training data and on prediction input, so a model sees its
columns in the same order and types at both times.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from zero2one.errors import DataError, UserError

if TYPE_CHECKING:
    import pandas as pd

ColumnKind = Literal["numeric", "categorical"]

# An object column whose non-empty values parse as numbers this often is numeric with typos,
# not categorical: it is reported rather than one-hot encoded into nonsense.
_MOSTLY_NUMERIC = 0.9


@dataclass(frozen=True)
class Column:
    name: str
    kind: ColumnKind
    dtype: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Column:
        return cls(name=str(data["name"]), kind=data["kind"], dtype=str(data["dtype"]))


def infer_columns(
    frame: pd.DataFrame,
    features: list[str],
    *,
    categorical: list[str] = (),  # type: ignore[assignment]
    numeric: list[str] = (),  # type: ignore[assignment]
) -> list[Column]:
    """Decide numeric or categorical for each feature; text in a numeric column is a DataError."""
    import pandas as pd

    columns = []
    for name in features:
        series = frame[name]
        if name in categorical:
            kind: ColumnKind = "categorical"
        elif name in numeric or pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(
            series
        ):
            kind = "numeric"
        else:
            kind = "numeric" if _mostly_numeric(series) else "categorical"
        if kind == "numeric":
            _check_numeric(series, name, DataError, declared=name in numeric)
        columns.append(Column(name=name, kind=kind, dtype=str(series.dtype)))
    return columns


def coerce(
    frame: pd.DataFrame,
    columns: list[Column],
    *,
    error: type[UserError] = DataError,
    ignore: tuple[str, ...] = (),
    allow_extra: bool = False,
) -> pd.DataFrame:
    """Select ``columns`` from ``frame`` in order and cast them to their kinds.

    Missing columns, extra columns (unless ``allow_extra``; ``ignore`` names columns that may be
    present, such as the target) and text in numeric columns raise ``error`` naming them.
    """
    import pandas as pd

    names = [c.name for c in columns]
    present = {str(c) for c in frame.columns}
    missing = [n for n in names if n not in present]
    if missing:
        raise error(f"missing column{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
    extra = [c for c in map(str, frame.columns) if c not in names and c not in ignore]
    if extra and not allow_extra:
        raise error(
            f"unexpected column{'s' if len(extra) > 1 else ''}: {', '.join(extra)}; "
            f"the model takes {', '.join(names)} (--allow-extra ignores other columns)"
        )
    out = pd.DataFrame(index=frame.index)
    for column in columns:
        series = frame[column.name]
        if column.kind == "numeric":
            out[column.name] = _check_numeric(series, column.name, error, declared=True)
        else:
            out[column.name] = categories(series)
    return out


def categories(series: pd.Series) -> pd.Series:
    """A categorical column as scikit-learn should see it: strings (so 1 and "1" are one
    category), and missing values as NaN. Not None: scikit-learn's imputer takes None for missing
    only when the column also holds a string, so a batch whose column is all None was encoded
    as an unknown category instead, and a row's prediction depended on the rows beside it."""
    nan = float("nan")
    return series.astype("object").where(series.notna(), None).map(
        lambda v: nan if v is None else str(v))


def _mostly_numeric(series: pd.Series) -> bool:
    import pandas as pd

    values = series.dropna()
    if values.empty:
        return False
    parsed = pd.to_numeric(values.astype(str).str.strip(), errors="coerce")
    return bool(parsed.notna().mean() >= _MOSTLY_NUMERIC)


def _check_numeric(
    series: pd.Series, name: str, error: type[UserError], *, declared: bool
) -> pd.Series:
    """The column as float64; text values raise ``error`` naming the column, value and row."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_bool_dtype(series):
        return series.astype("float64")
    if pd.api.types.is_numeric_dtype(series):
        values = series.astype("float64")
    else:
        text = series.where(series.isna(), series.astype(str).str.strip())
        values = pd.to_numeric(text, errors="coerce")
        bad = series.notna() & values.isna() & (text != "")
        if bad.any():
            row = bad.idxmax()
            hint = "" if declared else "; list it in data.categorical if it is a category"
            raise error(
                f"column {name!r} is numeric but has text: {series[row]!r} in row {row} "
                f"({int(bad.sum())} such value{'s' if bad.sum() > 1 else ''}){hint}"
            )
        values = values.astype("float64")
    if np.isinf(values.to_numpy()).any():
        raise error(f"column {name!r} has infinite values")
    return values
