"""Plots of a tabular model's hyperparameter search; the shared metrics and plots live in
:mod:`zero2one.metrics` and :mod:`zero2one.plots`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from zero2one.plots import figure, save

if TYPE_CHECKING:
    import pandas as pd


def plot_search(results: pd.DataFrame, scoring: str, path: Path, top: int = 30) -> Path:
    """The best candidates' mean cross-validated score with ±1 std error bars."""
    shown = results.head(top)
    params = [c for c in shown.columns if c not in {"mean_score", "std_score", "fit_time", "rank"}]
    labels = [", ".join(f"{p}={row[p]}" for p in params) for _, row in shown.iterrows()]
    height = max(3.0, 0.3 * len(shown) + 1.5)
    fig, ax = figure(9, height)
    positions = list(range(len(shown)))[::-1]
    ax.barh(positions, shown["mean_score"], xerr=shown["std_score"], color="tab:blue", alpha=0.8)
    ax.set_yticks(positions, labels, fontsize=8)
    low = float((shown["mean_score"] - shown["std_score"]).min())
    high = float((shown["mean_score"] + shown["std_score"]).max())
    pad = max(1e-3, 0.05 * (high - low))
    ax.set_xlim(low - pad, high + pad)
    ax.set_xlabel(f"mean CV {scoring} (±1 std)")
    ax.set_title(f"Search results (best {len(shown)} of {len(results)})")
    longest = max((len(label) for label in labels), default=1)
    return save(fig, path, left=min(0.6, 0.04 + 0.0085 * longest), bottom=0.9 / height,
                 top=1 - 0.5 / height)
