"""Held-out metrics shared by the tasks (scikit-learn's implementations)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


def classification_metrics(
    y_true: Any, y_pred: Any, scores: np.ndarray | None, classes: list[Any], *,
    names: list[str] | None = None, baseline: Any = None, positive: Any = None,
) -> dict[str, float]:
    """accuracy, macro precision/recall/F1, per-class precision/recall/F1
    (``recall.<class>``), ROC-AUC where scores make it defined, PR-AUC (average precision) for
    binary problems, and — given the majority class of the training data as ``baseline`` — the
    same headline metrics for always predicting it (``baseline_accuracy``, ...).

    Binary problems: ``positive`` is the class that ``precision``/``recall``/``f1`` and PR-AUC
    are about (default ``classes[1]``); ``scores`` are per-class columns, or one column that
    ranks ``classes[1]`` (a decision function)."""
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
    if len(labels) == 2:
        positive = labels[1] if positive is None else positive
        y = np.asarray(y_true) == positive
        result["precision"], result["recall"], result["f1"], _ = \
            metrics.precision_recall_fscore_support(y, np.asarray(y_pred) == positive,
                                                    average="binary", zero_division=0)
        ranked = positive_scores(scores, labels, positive)
        if ranked is not None and 0 < y.sum() < len(y):
            result["pr_auc"] = metrics.average_precision_score(y, ranked)
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


def positive_scores(scores: np.ndarray | None, classes: list[Any],
                    positive: Any) -> np.ndarray | None:
    """A binary problem's scores for ``positive``: its column of per-class scores, or a single
    column (which ranks ``classes[1]``, as scikit-learn's decision functions do) negated when
    ``positive`` is ``classes[0]``."""
    if scores is None or len(classes) != 2:
        return None
    if scores.ndim == 2:
        return scores[:, list(classes).index(positive)]
    return scores if positive == classes[1] else -scores


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
