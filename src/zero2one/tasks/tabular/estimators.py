"""Estimators by short name or import path, with their parameters checked before any fit."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Literal

Kind = Literal["classification", "regression"]

SHORT_NAMES: dict[Kind, dict[str, str]] = {
    "classification": {
        "svc": "sklearn.svm.SVC",
        "linear_svc": "sklearn.svm.LinearSVC",
        "logistic_regression": "sklearn.linear_model.LogisticRegression",
        "random_forest": "sklearn.ensemble.RandomForestClassifier",
        "extra_trees": "sklearn.ensemble.ExtraTreesClassifier",
        "gradient_boosting": "sklearn.ensemble.GradientBoostingClassifier",
        "hist_gradient_boosting": "sklearn.ensemble.HistGradientBoostingClassifier",
        "decision_tree": "sklearn.tree.DecisionTreeClassifier",
        "knn": "sklearn.neighbors.KNeighborsClassifier",
        "naive_bayes": "sklearn.naive_bayes.GaussianNB",
        "mlp": "sklearn.neural_network.MLPClassifier",
        "dummy": "sklearn.dummy.DummyClassifier",
    },
    "regression": {
        "svr": "sklearn.svm.SVR",
        "linear_regression": "sklearn.linear_model.LinearRegression",
        "ridge": "sklearn.linear_model.Ridge",
        "lasso": "sklearn.linear_model.Lasso",
        "elastic_net": "sklearn.linear_model.ElasticNet",
        "random_forest": "sklearn.ensemble.RandomForestRegressor",
        "extra_trees": "sklearn.ensemble.ExtraTreesRegressor",
        "gradient_boosting": "sklearn.ensemble.GradientBoostingRegressor",
        "hist_gradient_boosting": "sklearn.ensemble.HistGradientBoostingRegressor",
        "decision_tree": "sklearn.tree.DecisionTreeRegressor",
        "knn": "sklearn.neighbors.KNeighborsRegressor",
        "mlp": "sklearn.neural_network.MLPRegressor",
        "dummy": "sklearn.dummy.DummyRegressor",
    },
}


def resolve_estimator(spec: str, kind: Kind) -> type:
    """The estimator class for a short name or ``module.Class`` path; ValueError if neither."""
    path = SHORT_NAMES[kind].get(spec, spec)
    module_name, _, class_name = path.rpartition(".")
    if not module_name:
        names = ", ".join(sorted(SHORT_NAMES[kind]))
        raise ValueError(
            f"model.estimator: unknown estimator {spec!r}; use a short name ({names}) "
            "or an import path such as sklearn.svm.SVC"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"model.estimator: cannot import {module_name!r} ({exc})") from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise ValueError(f"model.estimator: {module_name!r} has no class {class_name!r}")
    if not (hasattr(cls, "fit") and hasattr(cls, "get_params")):
        raise ValueError(f"model.estimator: {path} is not a scikit-learn estimator (no fit)")
    if kind == "classification" and not hasattr(cls, "predict"):
        raise ValueError(f"model.estimator: {path} cannot predict")
    return cls


def check_params(cls: type, params: Mapping[str, Any], *, where: str) -> None:
    """Every name in ``params`` must be a parameter of ``cls``."""
    known = cls().get_params(deep=False)
    unknown = [name for name in params if name not in known]
    if unknown:
        raise ValueError(
            f"{where}: {cls.__name__} has no parameter {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sorted(known))}"
        )
