"""Column profiling: what a careful data scientist checks before fitting a table.

:func:`profile_frame` flags, per column: identifiers (unique or nearly unique per row: monotonic
integers, UUID-like or id-named strings), constant columns, very high-cardinality categories,
and columns that leak the target (one value, one class; or a near-perfect correlation). For
classification it records the class balance and flags an imbalance. Identifiers are excluded
from the features by default (``data.keep`` keeps them); the rest are warnings.

    >>> profile = profile_frame(frame, target="churned", kind="classification")
    >>> profile.excluded, profile.warnings
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

# a row-unique share at or above this makes a text column an identifier
ID_UNIQUE_SHARE = 0.95
# a categorical column with more distinct values than this (and mostly unique) is flagged
HIGH_CARDINALITY = 50
# minority class / majority class below this is an imbalance worth a warning (7 % positives:
# 0.075; a 30/70 split: 0.43, fine)
IMBALANCE_RATIO = 0.25
# |correlation| with a numeric target (or class code) above this is a likely leak
LEAK_CORRELATION = 0.995
MIN_ROWS = 20  # below this, uniqueness says nothing
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
                   r"[0-9a-fA-F]{12}$")
_ID_NAME = re.compile(r"(^|[_\s-])(id|uuid|guid|key|code|number|no)$|^id[_\s-]", re.I)


@dataclass
class ColumnProfile:
    name: str
    dtype: str
    missing: float  # share of rows
    unique: int
    # identifier, empty, constant, high_cardinality, leak
    flags: list[str] = field(default_factory=list)
    note: str = ""


@dataclass
class Profile:
    rows: int
    columns: list[ColumnProfile]
    target: str | None = None
    class_counts: dict[str, int] | None = None
    excluded: list[str] = field(default_factory=list)  # identifiers left out of the features
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def minority_share(self) -> float | None:
        if not self.class_counts:
            return None
        return min(self.class_counts.values()) / max(sum(self.class_counts.values()), 1)


def profile_frame(frame: pd.DataFrame, *, target: str | None = None, kind: str | None = None,
                  keep: tuple[str, ...] = (), features: tuple[str, ...] = ()) -> Profile:
    """Profile every column of ``frame``; ``features`` (named by the user) and ``keep`` are
    never excluded, only warned about."""
    rows = len(frame)
    profiles: list[ColumnProfile] = []
    profile = Profile(rows=rows, columns=profiles, target=target)
    y = frame[target] if target is not None and target in frame.columns else None
    for name in frame.columns:
        series = frame[name]
        column = ColumnProfile(str(name), str(series.dtype), float(series.isna().mean()),
                               int(series.nunique(dropna=True)))
        profiles.append(column)
        if name == target:
            continue
        _flag(column, series, rows)
        if y is not None and "identifier" not in column.flags:
            _leak(column, series, y, kind)
        if ({"identifier", "empty"} & set(column.flags) and name not in keep
                and name not in features):
            profile.excluded.append(str(name))
    if y is not None and kind == "classification":
        counts = y.astype(str).value_counts()
        profile.class_counts = {str(k): int(v) for k, v in counts.items()}
        if len(counts) >= 2 and counts.min() / counts.max() < IMBALANCE_RATIO:
            smallest = counts.idxmin()
            profile.warnings.append(
                f"class imbalance: {smallest!r} is {counts.min() / rows:.1%} of rows "
                f"({counts.min()} of {rows}); accuracy says little here — compare with the "
                "majority-class baseline, read per-class recall and PR-AUC, consider "
                "model.class_weight: balanced")
    for column in profiles:
        if "identifier" in column.flags:
            action = ("excluded from the features (data.keep to keep it)"
                      if column.name in profile.excluded else "kept, as asked")
            profile.warnings.append(f"column {column.name!r} looks like an identifier "
                                    f"({column.note}); {action}")
        elif "empty" in column.flags:
            action = ("excluded from the features" if column.name in profile.excluded
                      else "kept, as asked")
            profile.warnings.append(f"column {column.name!r} has no values; {action}")
        elif "constant" in column.flags:
            profile.warnings.append(f"column {column.name!r} is constant; it carries nothing")
        elif "high_cardinality" in column.flags:
            profile.warnings.append(f"column {column.name!r} has {column.unique} distinct "
                                    "categories; one-hot encoding makes it one feature each")
        if "leak" in column.flags:
            profile.warnings.append(f"column {column.name!r} may leak the target "
                                    f"({column.note}); drop it if it is not known at "
                                    "prediction time")
    return profile


def _flag(column: ColumnProfile, series: pd.Series, rows: int) -> None:
    import pandas as pd

    values = series.dropna()
    if values.empty:  # no value at all: nothing to learn, and imputers refuse it
        column.flags.append("empty")
        return
    if column.unique <= 1:
        column.flags.append("constant")
        return
    if rows < MIN_ROWS or values.empty:
        return
    share = column.unique / len(values)
    is_text = not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series))
    if is_text and pd.to_numeric(values, errors="coerce").notna().mean() >= 0.9:
        return  # numbers with a few typos: a numeric column (training reports the typos)
    if is_text:
        sample = values.astype(str).head(200)
        if sample.map(lambda v: bool(_UUID.match(v))).mean() > 0.9:
            column.flags.append("identifier")
            column.note = "UUID-like values"
        elif share >= ID_UNIQUE_SHARE:
            column.flags.append("identifier")
            column.note = f"{share:.0%} of values unique"
        elif column.unique > HIGH_CARDINALITY and share > 0.5:
            column.flags.append("high_cardinality")
    elif pd.api.types.is_integer_dtype(series) and share == 1.0:
        monotonic = values.is_monotonic_increasing or values.is_monotonic_decreasing
        if monotonic or _ID_NAME.search(column.name):
            column.flags.append("identifier")
            column.note = ("unique, monotonic integers" if monotonic
                           else "unique integers with an id-like name")


def _leak(column: ColumnProfile, series: pd.Series, y: pd.Series, kind: str | None) -> None:
    import numpy as np
    import pandas as pd

    both = pd.DataFrame({"x": series, "y": y}).dropna()
    if len(both) < MIN_ROWS or both["x"].nunique() < 2:
        return
    if kind == "classification" and both["x"].nunique() <= len(both) / 2:
        classes_per_value = both.groupby("x", observed=True)["y"].nunique()
        if (classes_per_value == 1).all() and both["y"].nunique() > 1:
            column.flags.append("leak")
            column.note = "each of its values goes with a single class"
            return
    if pd.api.types.is_numeric_dtype(both["x"]):
        target = both["y"]
        if not pd.api.types.is_numeric_dtype(target):
            target = target.astype("category").cat.codes
        with np.errstate(all="ignore"):
            corr = np.corrcoef(both["x"].astype(float), target.astype(float))[0, 1]
        if np.isfinite(corr) and abs(corr) >= LEAK_CORRELATION:
            column.flags.append("leak")
            column.note = f"correlation {corr:+.3f} with the target"
