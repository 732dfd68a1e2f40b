"""Held-out metrics shared by the tasks (scikit-learn's implementations)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


def classification_metrics(
    y_true: Any, y_pred: Any, scores: np.ndarray | None, classes: list[Any], *,
    names: list[str] | None = None, baseline: Any = None,
) -> dict[str, float]:
    """accuracy, macro precision/recall/F1, per-class precision/recall/F1
    (``recall.<class>``), ROC-AUC where scores make it defined, PR-AUC (average precision) for
    binary problems, and — given the majority class of the training data as ``baseline`` — the
    same headline metrics for always predicting it (``baseline_accuracy``, ...)."""
    import numpy as np
    from sklearn import metrics

    result = _headline(y_true, y_pred)
    labels = list(classes)
    if labels:
        p, r, f, _ = metrics.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, zero_division=0)
        for i, label in enumerate(labels):
            name = metric_name(names[i] if names and i < len(names) else str(label))
            result[f"precision.{name}"] = p[i]
            result[f"recall.{name}"] = r[i]
            result[f"f1.{name}"] = f[i]
    auc = _roc_auc(y_true, scores, classes)
    if auc is not None:
        result["roc_auc"] = auc
    positive = _positive_scores(y_true, scores, classes)
    if positive is not None:
        y = np.asarray(y_true) == classes[1]
        result["pr_auc"] = metrics.average_precision_score(y, positive)
        if baseline is not None:  # a constant score: average precision = positive rate
            result["baseline_pr_auc"] = float(y.mean())
    if baseline is not None:
        constant = np.full(len(np.asarray(y_true)), baseline, dtype=np.asarray(y_true).dtype)
        result.update({f"baseline_{k}": v for k, v in _headline(y_true, constant).items()})
    return {k: float(v) for k, v in result.items()}


def _headline(y_true: Any, y_pred: Any) -> dict[str, float]:
    from sklearn import metrics

    return {
        "accuracy": metrics.accuracy_score(y_true, y_pred),
        "precision_macro": metrics.precision_score(y_true, y_pred, average="macro",
                                                   zero_division=0),
        "recall_macro": metrics.recall_score(y_true, y_pred, average="macro", zero_division=0),
        "f1_macro": metrics.f1_score(y_true, y_pred, average="macro", zero_division=0),
    }


def metric_name(text: str) -> str:
    """A class name as a metric-name part (MLflow allows letters, digits, _ - . / and space)."""
    import re

    return re.sub(r"[^\w\-./ ]+", "_", text).strip() or "_"


def _positive_scores(y_true: Any, scores: np.ndarray | None,
                     classes: list[Any]) -> np.ndarray | None:
    """The positive class's scores of a binary problem with both classes present."""
    if scores is None or len(classes) != 2 or len(set(list(y_true))) < 2:
        return None
    return scores[:, 1] if scores.ndim == 2 else scores


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


def regression_metrics(y_true: Any, y_pred: Any, *, baseline: float | None = None
                       ) -> dict[str, float]:
    """rmse, mae, r2; given the training mean as ``baseline``, the same for always predicting
    it (``baseline_rmse``, ...)."""
    import numpy as np
    from sklearn import metrics

    result = {
        "rmse": float(math.sqrt(metrics.mean_squared_error(y_true, y_pred))),
        "mae": float(metrics.mean_absolute_error(y_true, y_pred)),
        "r2": float(metrics.r2_score(y_true, y_pred)),
    }
    if baseline is not None:
        constant = np.full(len(np.asarray(y_true)), float(baseline))
        result.update({f"baseline_{k}": v for k, v in
                       regression_metrics(y_true, constant).items()})
    return result
