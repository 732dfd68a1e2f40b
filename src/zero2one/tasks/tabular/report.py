"""Held-out metrics and PNG plots for tabular models."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


def classification_metrics(
    y_true: Any, y_pred: Any, scores: np.ndarray | None, classes: list[Any]
) -> dict[str, float]:
    """accuracy, macro precision/recall/F1, and ROC-AUC where scores make it defined."""
    from sklearn import metrics

    result = {
        "accuracy": metrics.accuracy_score(y_true, y_pred),
        "precision_macro": metrics.precision_score(y_true, y_pred, average="macro",
                                                   zero_division=0),
        "recall_macro": metrics.recall_score(y_true, y_pred, average="macro", zero_division=0),
        "f1_macro": metrics.f1_score(y_true, y_pred, average="macro", zero_division=0),
    }
    auc = _roc_auc(y_true, scores, classes)
    if auc is not None:
        result["roc_auc"] = auc
    return {k: float(v) for k, v in result.items()}


def _roc_auc(y_true: Any, scores: np.ndarray | None, classes: list[Any]) -> float | None:
    """Binary: on the positive class's score; multiclass: one-vs-rest macro average."""
    import numpy as np
    from sklearn import metrics

    present = set(list(y_true))
    if scores is None or len(present) < 2:
        return None
    try:
        if len(classes) == 2:
            positive = scores[:, 1] if scores.ndim == 2 else scores
            return float(metrics.roc_auc_score(y_true, positive, labels=classes))
        if len(present) < len(classes):  # a class absent from the test split: undefined
            return None
        # one-vs-rest macro average: AUC ranks scores, so decision-function values (SVC without
        # probabilities) give the same curve as probabilities would
        y = np.asarray(y_true)
        return float(np.mean([
            metrics.roc_auc_score(y == label, scores[:, i]) for i, label in enumerate(classes)
        ]))
    except ValueError:
        return None


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    from sklearn import metrics

    return {
        "rmse": float(math.sqrt(metrics.mean_squared_error(y_true, y_pred))),
        "mae": float(metrics.mean_absolute_error(y_true, y_pred)),
        "r2": float(metrics.r2_score(y_true, y_pred)),
    }


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Any, Any]:
    """A figure outside pyplot's global state (no display, no figure manager, thread-safe)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    return fig, fig.subplots(1, ncols)


def _save(fig: Any, path: Path, **margins: float) -> Path:
    # fixed margins instead of tight_layout(), which draws every figure twice
    fig.subplots_adjust(**{"left": 0.12, "right": 0.97, "bottom": 0.12, "top": 0.9, **margins})
    fig.savefig(path)
    return path


def plot_confusion_matrix(y_true: Any, y_pred: Any, labels: list[Any], names: list[str],
                          path: Path) -> Path:
    from sklearn.metrics import ConfusionMatrixDisplay

    size = max(4.0, 0.6 * len(labels) + 2)
    fig, ax = _figure(size, size)
    ConfusionMatrixDisplay.from_predictions(
        y_true, y_pred, labels=labels, display_labels=names, ax=ax, colorbar=False,
        xticks_rotation=45 if len(labels) > 4 else "horizontal",
    )
    ax.set_title("Confusion matrix (test split)")
    longest = max((len(str(n)) for n in names), default=1)
    return _save(fig, path, left=min(0.45, 0.12 + 0.015 * longest),
                 bottom=min(0.45, 0.12 + 0.012 * longest))


def plot_roc(y_true: Any, scores: np.ndarray, labels: list[Any], names: list[str],
             path: Path) -> Path | None:
    """ROC curve for binary problems, one-vs-rest curves for multiclass."""
    import numpy as np
    from sklearn.metrics import RocCurveDisplay

    fig, ax = _figure(5, 5)
    y = np.asarray(y_true)
    drawn = 0
    pairs = [(1, labels[1], names[1])] if len(labels) == 2 else list(
        zip(range(len(labels)), labels, names, strict=True)
    )
    for column, label, name in pairs:
        positive = y == label
        if positive.all() or not positive.any():
            continue
        column_scores = scores[:, column] if scores.ndim == 2 else scores
        RocCurveDisplay.from_predictions(positive, column_scores, name=str(name), ax=ax)
        drawn += 1
    if not drawn:
        return None
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set_title("ROC (test split)")
    return _save(fig, path, left=0.14)


def plot_residuals(y_true: Any, y_pred: Any, path: Path) -> Path:
    import numpy as np

    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    fig, (left, right) = _figure(10, 4, ncols=2)
    left.scatter(y_pred, y_true - y_pred, s=10, alpha=0.6)
    left.axhline(0, color="grey", linestyle="--", linewidth=1)
    left.set_xlabel("predicted")
    left.set_ylabel("residual (true - predicted)")
    right.scatter(y_true, y_pred, s=10, alpha=0.6)
    low, high = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    right.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)
    right.set_xlabel("true")
    right.set_ylabel("predicted")
    fig.suptitle("Residuals (test split)")
    return _save(fig, path, left=0.08, wspace=0.25)


def plot_search(results: pd.DataFrame, scoring: str, path: Path, top: int = 30) -> Path:
    """The best candidates' mean cross-validated score with ±1 std error bars."""
    shown = results.head(top)
    params = [c for c in shown.columns if c not in {"mean_score", "std_score", "fit_time", "rank"}]
    labels = [", ".join(f"{p}={row[p]}" for p in params) for _, row in shown.iterrows()]
    height = max(3.0, 0.3 * len(shown) + 1.5)
    fig, ax = _figure(9, height)
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
    return _save(fig, path, left=min(0.6, 0.04 + 0.0085 * longest), bottom=0.9 / height,
                 top=1 - 0.5 / height)
