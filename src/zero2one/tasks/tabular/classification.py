"""Tabular classification: classes, stratified splits and folds, the positive class of binary
targets, a tuned decision threshold, class probabilities."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from zero2one import plots
from zero2one.data import Table
from zero2one.errors import DataError, RecipeError
from zero2one.metrics import classification_metrics
from zero2one.progress import Reporter
from zero2one.tasks.tabular.data import TabularData, as_frame, plain
from zero2one.tasks.tabular.pipelines import probabilities
from zero2one.tasks.tabular.task import TabularTask

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


class TabularClassification(TabularTask):
    name = "tabular-classification"
    pipeline_tag = "tabular-classification"
    kind = "classification"

    def fit(self, data: TabularData, *, reporter: Reporter) -> Self:
        self.positive_ = self._positive_class(data, reporter)
        metric = self.config.model.decision_threshold
        if metric is not None and len(data.classes or []) != 2:
            raise RecipeError(f"model.decision_threshold applies to two classes; the target has "
                              f"{len(data.classes or [])}")
        if metric is not None and data.partitions is not None:
            raise RecipeError("model.decision_threshold needs the training rows in memory; "
                              "use data.engine: pandas")
        super().fit(data, reporter=reporter)
        if metric is not None:
            self._tune_threshold(data, metric, reporter)
        return self

    def _tune_threshold(self, data: TabularData, metric: str, reporter: Reporter) -> None:
        """scikit-learn's TunedThresholdClassifierCV finds the threshold that maximises
        ``metric`` on cross-validated training scores and refits the estimator on all training
        rows; the saved pipeline keeps that fitted estimator (frozen) in a
        FixedThresholdClassifier with the threshold — the tuner itself holds scorer and
        splitter objects that a safe load should not trust."""
        from sklearn.base import clone
        from sklearn.frozen import FrozenEstimator
        from sklearn.model_selection import FixedThresholdClassifier, TunedThresholdClassifierCV
        from sklearn.pipeline import Pipeline

        best = self.pipeline_
        preprocess = clone(best.named_steps["preprocess"])
        tuner = TunedThresholdClassifierCV(clone(best.named_steps["model"]),
                                           scoring=binary_scorer(metric, self.positive_),
                                           cv=self._cv())
        with reporter.step(f"choosing the decision threshold for {metric}", total=1) as step:
            try:
                Pipeline([("preprocess", preprocess), ("model", tuner)]).fit(data.X_train,
                                                                             data.y_train)
            except ValueError as exc:
                raise RecipeError(f"model.decision_threshold: {str(exc).splitlines()[0]}") \
                    from None
            fixed = FixedThresholdClassifier(FrozenEstimator(tuner.estimator_),
                                             threshold=float(tuner.best_threshold_),
                                             pos_label=self.positive_)
            fixed.fit(preprocess.transform(data.X_train), data.y_train)  # frozen: no refit
            step.advance()
        self.pipeline_ = Pipeline([("preprocess", preprocess), ("model", fixed)])

    @property
    def scoring(self) -> str:
        return self.config.search.scoring or "accuracy"

    @property
    def scorer(self) -> Any:
        positive = getattr(self, "positive_", None)
        return self.scoring if positive is None else binary_scorer(self.scoring, positive)

    def _positive_class(self, data: TabularData, reporter: Reporter) -> Any:
        """The class binary metrics are about: ``data.positive_class``, else the training
        rows' minority class (the second class on a tie); None for more than two classes."""
        classes = list(data.classes or [])
        wanted = self.config.data.positive_class
        if len(classes) != 2:
            if wanted is not None:
                raise RecipeError(f"data.positive_class applies to two classes; the target "
                                  f"{data.target!r} has {len(classes)}")
            return None
        names = data.class_names or [str(c) for c in classes]
        if wanted is not None:
            for label, name in zip(classes, names, strict=True):
                if _same_class(wanted, label, name):
                    return label
            raise DataError(f"data.positive_class {wanted!r} is not a class of target "
                            f"{data.target!r}; its classes: {', '.join(map(str, names))}")
        if data.partitions is not None and data.partitions.stats.class_counts:
            counts = {plain(k): v for k, v in data.partitions.stats.class_counts.items()}
        else:
            counts = {plain(k): int(v) for k, v in data.y_train.value_counts().items()}
        positive = min(classes, key=lambda c: (counts.get(c, 0), -classes.index(c)))
        share = counts.get(positive, 0) / max(1, sum(counts.values()))
        reporter.info(f"[data] positive class: {names[classes.index(positive)]!r}, the "
                      f"minority ({share:.0%} of training rows); binary metrics, scorers and "
                      "thresholds are about it (data.positive_class chooses another)")
        return positive

    def _prepare_target(
        self, y: pd.Series, target: str, table: Table
    ) -> tuple[pd.Series, list[Any] | None, list[str] | None]:
        kind = self.target_kind(y, target)
        if kind == "int":
            y = y.astype("int64")
        elif kind == "str":
            y = y.astype(str)
        classes = self.check_classes(y.value_counts().to_dict(), target)
        assert classes is not None
        names = table.class_names if table.class_names and len(table.class_names) == len(
            classes) and classes == list(range(len(classes))) else None
        return y, classes, names

    def target_kind(self, y: pd.Series, target: str) -> str:
        import pandas as pd

        if pd.api.types.is_float_dtype(y):
            values = y.dropna()
            if not (values == values.round()).all():
                raise DataError(
                    f"target {target!r} has fractional values, so it is not a set of classes; "
                    "use task tabular-regression"
                )
            return "int"
        if pd.api.types.is_integer_dtype(y) or pd.api.types.is_bool_dtype(y):
            return "keep"
        return "str"

    def check_classes(self, counts: dict[Any, int], target: str) -> list[Any] | None:
        classes = sorted(plain(k) for k in counts)
        rows = sum(counts.values())
        if len(classes) < 2:
            raise DataError(
                f"target {target!r} has a single class ({classes[0]!r}); classification needs "
                "at least two"
            )
        if len(classes) > max(50, rows // 2):
            raise DataError(
                f"target {target!r} has {len(classes)} distinct values in {rows} rows; "
                "that looks continuous, use task tabular-regression"
            )
        return classes

    def _stratify(self, y: pd.Series) -> pd.Series | None:
        if not self.config.data.stratify:
            return None
        counts = y.value_counts()
        if counts.min() < 2:
            rare = counts[counts < 2].index.tolist()
            raise DataError(
                f"class(es) {', '.join(map(repr, rare))} have a single row, too few for a "
                "stratified split; add data or set data.stratify: false"
            )
        return y

    def _cv(self) -> Any:
        from sklearn.model_selection import StratifiedKFold

        return StratifiedKFold(n_splits=self.config.search.cv, shuffle=True,
                               random_state=self.config.seed)

    def _check_folds(self, data: TabularData) -> None:
        super()._check_folds(data)
        if self.config.search.method == "none":
            return
        counts = data.y_train.value_counts()
        if counts.min() < self.config.search.cv:
            label = counts.idxmin()
            raise DataError(
                f"class {label!r} has {int(counts.min())} training rows, fewer than "
                f"search.cv={self.config.search.cv} folds; lower search.cv or add data"
            )

    def scores(self, X: pd.DataFrame) -> np.ndarray | None:
        """Class probabilities (n, n_classes) when the estimator has them, else None."""
        return probabilities(self.pipeline_, X)

    def label_names(self) -> list[str]:
        return self.class_names_ or [str(c) for c in self.classes_ or []]

    def predict(self, frame: Any, *, allow_extra: bool = False) -> pd.DataFrame:
        X = self.features(frame, allow_extra=allow_extra)
        out = as_frame(frame).copy()
        predicted = self.pipeline_.predict(X)
        out["prediction"] = predicted
        if self.class_names_:
            out["prediction_name"] = [self.class_names_[int(p)] for p in predicted]
        proba = self.scores(X)
        if proba is not None:
            for name, column in zip(self.label_names(), proba.T, strict=True):
                out[f"proba_{name}"] = column
        return out

    def evaluate(self, data: TabularData) -> dict[str, float]:
        y, predicted, scores = self.held_out(data)
        metrics = classification_metrics(y, predicted, scores, self.classes_ or [],
                                          names=self.label_names(), baseline=self.baseline_,
                                          positive=self.positive_)
        threshold = getattr(self.pipeline_.named_steps["model"], "threshold", None)
        if isinstance(threshold, int | float):  # a FixedThresholdClassifier
            metrics["decision_threshold"] = float(threshold)
        return metrics

    def report(self, data: TabularData, out_dir: Path) -> list[Path]:
        y, predicted, scores = self.held_out(data)
        paths = [plots.plot_confusion_matrix(y, predicted, self.classes_ or [],
                                             self.label_names(), out_dir / "confusion_matrix.png")]
        if scores is not None:
            roc = plots.plot_roc(y, scores, self.classes_ or [], self.label_names(),
                                  out_dir / "roc.png", positive=self.positive_)
            if roc is not None:
                paths.append(roc)
        return paths + self.search_report(out_dir)


# YAML 1.1 (PyYAML, --set) reads these words as booleans: `positive_class: yes` means "yes"
_YAML_BOOLS = {True: ("yes", "y", "true", "on"), False: ("no", "n", "false", "off")}


def _same_class(wanted: Any, label: Any, name: str) -> bool:
    if isinstance(wanted, bool) and isinstance(label, str):
        return label.lower() in _YAML_BOOLS[wanted]
    return wanted == label or str(wanted) in (str(label), name)


def binary_scorer(name: str, positive: Any) -> Any:
    """scikit-learn's scorer ``name`` about class ``positive``: binary scorers (f1, precision,
    recall, jaccard, average_precision, neg_brier_score, ...) take ``pos_label=1`` by default,
    which fails on any other labels; others come back as the name."""
    import inspect

    from sklearn.metrics import get_scorer, make_scorer

    try:
        scorer = get_scorer(name)
    except ValueError:
        return name  # the search says which names exist
    func = getattr(scorer, "_score_func", None)
    kwargs = dict(getattr(scorer, "_kwargs", {}))
    if (func is None or "pos_label" not in inspect.signature(func).parameters
            or kwargs.get("average", "binary") != "binary"):
        return name
    kwargs["pos_label"] = positive
    if "zero_division" in inspect.signature(func).parameters:  # no warning for a fold with
        kwargs.setdefault("zero_division", 0)  # no predicted positives: the score is 0
    return make_scorer(func, greater_is_better=scorer._sign > 0,
                       response_method=scorer._response_method, **kwargs)
