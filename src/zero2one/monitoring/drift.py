"""Drift of served values against a model's reference (:mod:`zero2one.monitoring.reference`).

Two measures per column, both needed for a verdict: the **population stability index** over
the reference's bins (numeric: its deciles; categorical: its categories, unseen ones pooled) —
how far the distribution moved, independent of the sample's size — and a **two-sample test**
from SciPy — whether the move is more than chance at this size: Kolmogorov–Smirnov against the
reference's quantile sketch for numbers, a chi-square goodness of fit against the reference's
shares for categories. A column drifts when PSI ≥ ``psi`` (0.2, the usual "significant shift")
and the test's p-value < ``p_value`` (0.01); or when its missing share moved by more than
``missing`` (0.1); or when over ``unseen`` (5 %) of its values are categories training never
had. Fewer than ``min_rows`` served values give no verdict.

SciPy rather than a monitoring library (Evidently, NannyML): the tests are SciPy's either way,
SciPy is already installed with scikit-learn, and the libraries would add hundreds of MB of
dependencies (and their own pinned pandas and plotting stacks) to every server image.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from zero2one.monitoring.reference import OTHER

if TYPE_CHECKING:
    import pandas as pd

EPSILON = 1e-4  # floor of a bin's share in PSI (an empty bin would be log(0))


@dataclass(frozen=True)
class Thresholds:
    psi: float = 0.2
    p_value: float = 0.01
    missing: float = 0.1
    unseen: float = 0.05
    min_rows: int = 30


@dataclass
class ColumnDrift:
    name: str
    kind: str
    rows: int
    psi: float | None = None
    p_value: float | None = None
    test: str = ""
    missing: float = 0.0  # the served share
    missing_reference: float = 0.0
    unseen: dict[str, int] = field(default_factory=dict)  # category -> served count
    drifted: bool = False
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins."""
    e = np.clip(np.asarray(expected, dtype=float), EPSILON, None)
    a = np.clip(np.asarray(actual, dtype=float), EPSILON, None)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def column_drift(name: str, reference: dict[str, Any], values: pd.Series,
                 thresholds: Thresholds = Thresholds()) -> ColumnDrift:
    """One column's served ``values`` against its ``reference`` summary."""
    rows = len(values)
    found = ColumnDrift(name, reference["kind"], rows,
                        missing_reference=float(reference.get("missing", 0.0)))
    if rows == 0:
        return found
    found.missing = float(values.isna().mean())
    present = values.dropna()
    if reference["kind"] == "numeric":
        _numeric(found, reference, present)
    else:
        _categorical(found, reference, present)
    if rows < thresholds.min_rows:
        found.reasons.append(f"only {rows} values (a verdict needs {thresholds.min_rows})")
        return found
    if (found.psi is not None and found.p_value is not None and found.psi >= thresholds.psi
            and found.p_value < thresholds.p_value):
        found.reasons.append(f"PSI {found.psi:.2f} (p = {found.p_value:.1e}, {found.test})")
    if abs(found.missing - found.missing_reference) > thresholds.missing:
        found.reasons.append(f"missing {found.missing:.0%} "
                             f"(training {found.missing_reference:.0%})")
    unseen = sum(found.unseen.values())
    if present.size and unseen / present.size > thresholds.unseen:
        found.reasons.append(f"{unseen / present.size:.0%} unseen categories "
                             f"({', '.join(list(found.unseen)[:3])})")
    found.drifted = bool(found.reasons)
    return found


def _numeric(found: ColumnDrift, reference: dict[str, Any], present: pd.Series) -> None:
    import pandas as pd
    from scipy import stats

    values = pd.to_numeric(present, errors="coerce").dropna().to_numpy(dtype=float)
    edges, sketch = np.asarray(reference["edges"]), np.asarray(reference["sketch"])
    if len(values) == 0 or len(sketch) == 0:
        return
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    found.psi = psi(np.asarray(reference["shares"]), counts / counts.sum())
    found.p_value = _finite(stats.ks_2samp(values, sketch).pvalue)
    found.test = "Kolmogorov-Smirnov"


def _categorical(found: ColumnDrift, reference: dict[str, Any], present: pd.Series) -> None:
    from scipy import stats

    shares: dict[str, float] = reference["shares"]
    counts = present.astype(str).value_counts()
    if counts.empty or not shares:
        return
    known = [c for c in shares if c != OTHER]
    observed = [int(counts.get(c, 0)) for c in known]
    rest = int(counts.sum()) - sum(observed)
    if OTHER not in shares:
        found.unseen = {str(k): int(v) for k, v in counts.items() if k not in shares}
    expected = [shares[c] for c in known] + [shares.get(OTHER, 0.0)]
    observed.append(rest)
    found.psi = psi(np.asarray(expected), np.asarray(observed) / max(sum(observed), 1))
    # the expected shares smoothed (half a row of the reference's size each), so that one
    # unseen category is a large statistic rather than a division by zero
    total = sum(observed)
    expected_counts = np.asarray(expected) + 0.5 / max(reference.get("rows") or 1, 1)
    expected_counts = expected_counts / expected_counts.sum() * total
    found.p_value = _finite(stats.chisquare(observed, expected_counts).pvalue)
    found.test = "chi-square"


def shares(values: pd.Series) -> dict[str, float]:
    counts = values.dropna().astype(str).value_counts()
    total = max(int(counts.sum()), 1)
    return {str(k): int(v) / total for k, v in counts.items()}


def _finite(value: Any) -> float:
    number = float(value)
    return number if math.isfinite(number) else 1.0
