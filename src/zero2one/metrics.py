"""Held-out metrics shared by the tasks (scikit-learn's implementations)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


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
