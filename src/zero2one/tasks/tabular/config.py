"""Recipe model of the tabular tasks (classification and regression)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from zero2one.recipe import BaseRecipe, Strict
from zero2one.tasks.tabular.estimators import check_params, resolve_estimator


class DataConfig(Strict):
    source: str = Field(
        description="sklearn:NAME (iris, wine, breast_cancer, diabetes, digits), a "
        ".csv/.parquet path, a folder of them or a glob ('data/*.parquet')."
    )
    engine: Literal["auto", "pandas", "dask"] = Field(
        "auto", description="pandas: read everything into memory; dask: keep the data in "
        "partitions on a Dask cluster (data larger than memory); auto: dask when the files "
        "exceed a quarter of the available memory."
    )
    sample_rows: int = Field(
        200_000, ge=100, description="dask engine: rows sampled for the schema, the search "
        "and estimators that cannot learn incrementally."
    )
    target: str | None = Field(
        None, description="Target column; built-in data sets default to 'target'."
    )
    features: list[str] | None = Field(
        None, description="Feature columns, in order; default: every column but target and drop."
    )
    drop: list[str] = Field(default_factory=list, description="Columns to ignore (ids, leaks).")
    keep: list[str] = Field(
        default_factory=list, description="Columns the profile would exclude as identifiers "
        "that should stay features."
    )
    categorical: list[str] = Field(
        default_factory=list, description="Columns to treat as categorical whatever their type."
    )
    numeric: list[str] = Field(
        default_factory=list, description="Columns that must be numeric; text in them is an error."
    )
    positive_class: str | int | bool | None = Field(
        None, description="Binary classification: the class that binary metrics, scorers "
        "(f1, precision, recall, average_precision, ...), decision thresholds and ROC/PR curves "
        "are about; default: the minority class of the training rows (said in the summary)."
    )
    test_size: float = Field(0.3, gt=0, lt=1, description="Share of rows held out for testing.")
    stratify: bool = Field(
        True, description="Keep class proportions in the split (classification only)."
    )


class PreprocessConfig(Strict):
    impute_numeric: Literal["mean", "median", "most_frequent"] | None = Field(
        "median", description="Fill missing numbers; null keeps them (for estimators that cope)."
    )
    scale: bool = Field(True, description="Standardise numeric columns (zero mean, unit variance).")
    # one-hot encoding: unknown categories at prediction time become all-zero rows, not errors
    one_hot: bool = Field(True, description="One-hot encode categorical columns.")


class ModelConfig(Strict):
    estimator: str = Field(
        description="A short name (svc, random_forest, logistic_regression, ...) or an import "
        "path such as sklearn.svm.SVC."
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Fixed estimator parameters."
    )
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    epochs: int = Field(
        1, ge=1, le=1000, description="dask engine: passes over the training rows for "
        "estimators that learn incrementally (partial_fit)."
    )
    class_weight: Literal["balanced"] | None = Field(
        None, description="Classification: weigh classes inversely to their frequency "
        "(estimators with a class_weight parameter); for estimators without one, the minority "
        "classes are randomly oversampled inside each training fold (imbalanced-learn)."
    )
    decision_threshold: str | None = Field(
        None, description="Binary classification: choose the decision threshold that "
        "maximises this scikit-learn scorer (f1, balanced_accuracy, recall, ...) on "
        "cross-validated training predictions, instead of the estimator's default."
    )


class Range(Strict):
    low: float = Field(description="Lower bound (inclusive).")
    high: float = Field(description="Upper bound (inclusive).")
    log: bool = Field(False, description="Sample on a log scale (for C, learning rates, ...).")
    type: Literal["float", "int"] = Field("float", description="Sample floats or integers.")

    @model_validator(mode="after")
    def _check(self) -> Range:
        if self.high <= self.low:
            raise ValueError(f"high ({self.high}) must be greater than low ({self.low})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


class SearchConfig(Strict):
    method: Literal["grid", "random", "bayes", "none"] = Field(
        "none", description="grid (GridSearchCV), random (RandomizedSearchCV), bayes (Optuna)."
    )
    space: dict[str, list[Any] | Range] = Field(
        default_factory=dict,
        description="Estimator parameter -> list of values, or a range {low, high, log, type} "
        "(random and bayes only).",
    )
    cv: int = Field(5, ge=2, le=100, description="Cross-validation folds.")
    scoring: str | None = Field(
        None, description="scikit-learn scorer; default accuracy or neg_root_mean_squared_error."
    )
    n_trials: int = Field(20, ge=1, le=10_000, description="Candidates for random and bayes.")
    n_jobs: int | None = Field(
        None, description="Parallel jobs for cross-validation (-1: all cores; null: one; on "
        "Dask: every worker)."
    )
    backend: Literal["auto", "local", "dask"] = Field(
        "auto", description="Where cross-validation folds run: local (this process's joblib), "
        "dask (joblib's Dask backend over the cluster), auto (dask when the data is on Dask or "
        "a scheduler is named)."
    )

    @field_validator("space")
    @classmethod
    def _non_empty_lists(cls, space: dict[str, Any]) -> dict[str, Any]:
        for name, values in space.items():
            if isinstance(values, list) and not values:
                raise ValueError(f"{name}: give at least one value")
        return space

    @model_validator(mode="after")
    def _check(self) -> SearchConfig:
        if self.method != "none" and not self.space:
            raise ValueError(f"method {self.method!r} needs a non-empty space")
        if self.method == "grid":
            ranges = [name for name, v in self.space.items() if isinstance(v, Range)]
            if ranges:
                raise ValueError(
                    f"grid search needs lists of values, but {', '.join(ranges)} "
                    "is a range; use method random or bayes for ranges"
                )
        return self


class TabularRecipe(BaseRecipe):
    task: Literal["tabular-classification", "tabular-regression"] = Field(
        description="tabular-classification or tabular-regression."
    )
    data: DataConfig
    model: ModelConfig
    search: SearchConfig = Field(default_factory=SearchConfig)

    @model_validator(mode="after")
    def _check_estimator(self) -> TabularRecipe:
        kind: Literal["classification", "regression"] = (
            "classification" if self.task == "tabular-classification" else "regression")
        cls = resolve_estimator(self.model.estimator, kind)
        check_params(cls, self.model.params, where="model.params")
        check_params(cls, self.search.space, where="search.space")
        if self.search.scoring is not None:
            from sklearn.metrics import get_scorer_names

            if self.search.scoring not in get_scorer_names():
                raise ValueError(
                    f"search.scoring: unknown scorer {self.search.scoring!r}; see "
                    "sklearn.metrics.get_scorer_names()"
                )
        return self
