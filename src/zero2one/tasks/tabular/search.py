"""Hyperparameter search over a scikit-learn Pipeline: grid, random or Bayesian (Optuna).

Every method returns the refitted best pipeline and one results table with a row per candidate:
the candidate's parameters, ``mean_score``, ``std_score``, ``fit_time`` and ``rank``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zero2one.progress import Reporter, Step
from zero2one.tasks.tabular.config import Range, SearchConfig

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

log = logging.getLogger(__name__)

PREFIX = "model__"  # the estimator's step name in the pipeline


@dataclass
class SearchResult:
    best_estimator: Pipeline
    best_params: dict[str, Any]
    best_score: float | None  # mean cross-validated score of the best candidate
    results: pd.DataFrame | None  # one row per candidate, best first


def run_search(
    pipeline: Pipeline,
    X: pd.DataFrame,
    y: Any,
    *,
    config: SearchConfig,
    cv: Any,
    scoring: str,
    seed: int,
    reporter: Reporter,
    backend: str | None = None,
) -> SearchResult:
    """Fit ``pipeline`` or search its estimator's parameters; ``backend="dask"`` runs the
    cross-validation folds through joblib's Dask backend on the current cluster (every
    worker unless ``n_jobs`` says fewer)."""
    if backend == "dask" and config.method != "none":
        import joblib

        if config.n_jobs in (None, 1):
            config = config.model_copy(update={"n_jobs": -1})
        with joblib.parallel_backend("dask"):
            return run_search(pipeline, X, y, config=config, cv=cv, scoring=scoring, seed=seed,
                              reporter=reporter)
    if config.method == "none":
        with reporter.step("fitting", total=1) as step:
            pipeline.fit(X, y)
            step.advance()
        return SearchResult(pipeline, {}, None, None)
    if config.method == "bayes":
        return _bayes(pipeline, X, y, config=config, cv=cv, scoring=scoring, seed=seed,
                      reporter=reporter)
    return _sklearn_search(pipeline, X, y, config=config, cv=cv, scoring=scoring, seed=seed,
                           reporter=reporter)


def candidate_count(config: SearchConfig) -> int:
    if config.method == "grid":
        from sklearn.model_selection import ParameterGrid

        return len(ParameterGrid(_grid(config)))
    if config.method == "random" and all(isinstance(v, list) for v in config.space.values()):
        from sklearn.model_selection import ParameterGrid

        return min(config.n_trials, len(ParameterGrid(_grid(config))))
    return config.n_trials


def _grid(config: SearchConfig) -> dict[str, list[Any]]:
    return {f"{PREFIX}{k}": v for k, v in config.space.items() if isinstance(v, list)}


def _distributions(config: SearchConfig) -> dict[str, Any]:
    from scipy import stats

    dists: dict[str, Any] = {}
    for name, spec in config.space.items():
        if isinstance(spec, list):
            dists[f"{PREFIX}{name}"] = spec
        elif spec.type == "int":
            low, high = int(spec.low), int(spec.high)
            dists[f"{PREFIX}{name}"] = (
                stats.randint(low, high + 1) if not spec.log else _LogInt(low, high)
            )
        elif spec.log:
            dists[f"{PREFIX}{name}"] = stats.loguniform(spec.low, spec.high)
        else:
            dists[f"{PREFIX}{name}"] = stats.uniform(spec.low, spec.high - spec.low)
    return dists


class _LogInt:
    """Integers sampled log-uniformly in [low, high] (scipy has no such distribution)."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high

    def rvs(self, random_state: Any = None) -> int:
        from scipy import stats

        value = stats.loguniform(self.low, self.high + 1).rvs(random_state=random_state)
        return int(min(self.high, max(self.low, int(value))))


class _CountingScorer:
    """Wraps a scorer to advance a progress bar once per cross-validation fold."""

    def __init__(self, scorer: Any, step: Step) -> None:
        self.scorer, self.step = scorer, step

    def __call__(self, estimator: Any, X: Any, y: Any) -> float:
        score = self.scorer(estimator, X, y)
        self.step.advance()
        return score


def _sklearn_search(
    pipeline: Pipeline, X: Any, y: Any, *, config: SearchConfig, cv: Any, scoring: str,
    seed: int, reporter: Reporter,
) -> SearchResult:
    from sklearn.metrics import get_scorer
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV

    n_candidates = candidate_count(config)
    n_splits = cv.get_n_splits()
    parallel = config.n_jobs not in (None, 1)
    # a counting scorer ticks per fold when folds run in this process; with parallel jobs the
    # folds run in workers, so the bar only counts candidates at the end
    total = None if parallel else n_candidates * n_splits
    with reporter.step(f"{config.method} search: {n_candidates} candidates × {n_splits} folds",
                       total=total) as step:
        scorer = get_scorer(scoring) if parallel else _CountingScorer(get_scorer(scoring), step)
        if config.method == "grid":
            search: Any = GridSearchCV(
                pipeline, _grid(config), cv=cv, scoring=scorer, n_jobs=config.n_jobs,
                refit=True, error_score="raise",
            )
        else:
            search = RandomizedSearchCV(
                pipeline, _distributions(config), n_iter=config.n_trials, cv=cv, scoring=scorer,
                n_jobs=config.n_jobs, refit=True, random_state=seed, error_score="raise",
            )
        search.fit(X, y)
    results = _results_from_cv(search.cv_results_)
    return SearchResult(
        best_estimator=search.best_estimator_,
        best_params=_strip(search.best_params_),
        best_score=float(search.best_score_),
        results=results,
    )


def _results_from_cv(cv_results: dict[str, Any]) -> pd.DataFrame:
    import pandas as pd

    table = pd.DataFrame(
        {_strip_name(k): cv_results[k] for k in cv_results if k.startswith(f"param_{PREFIX}")}
    )
    table = table.rename(columns=lambda c: c.removeprefix("param_"))
    table["mean_score"] = cv_results["mean_test_score"]
    table["std_score"] = cv_results["std_test_score"]
    table["fit_time"] = cv_results["mean_fit_time"]
    table["rank"] = cv_results["rank_test_score"]
    return _finish(table)


def _bayes(
    pipeline: Pipeline, X: Any, y: Any, *, config: SearchConfig, cv: Any, scoring: str,
    seed: int, reporter: Reporter,
) -> SearchResult:
    import time

    import numpy as np
    import optuna
    import pandas as pd
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def suggest(trial: optuna.Trial) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for name, spec in config.space.items():
            if isinstance(spec, Range):
                if spec.type == "int":
                    params[name] = trial.suggest_int(name, int(spec.low), int(spec.high),
                                                     log=spec.log)
                else:
                    params[name] = trial.suggest_float(name, spec.low, spec.high, log=spec.log)
            else:
                # optuna stores categorical choices by index, so any YAML value works
                index = trial.suggest_categorical(f"{name}__index", list(range(len(spec))))
                params[name] = spec[index]
        return params

    rows: list[dict[str, Any]] = []
    with reporter.step(f"bayes search: {config.n_trials} trials × {cv.get_n_splits()} folds",
                       total=config.n_trials) as step:

        def objective(trial: optuna.Trial) -> float:
            params = suggest(trial)
            candidate = clone(pipeline).set_params(**{f"{PREFIX}{k}": v for k, v in params.items()})
            start = time.perf_counter()
            scores = cross_val_score(candidate, X, y, cv=cv, scoring=scoring, n_jobs=config.n_jobs,
                                     error_score="raise")
            rows.append({**params, "mean_score": float(np.mean(scores)),
                         "std_score": float(np.std(scores)),
                         "fit_time": (time.perf_counter() - start) / len(scores)})
            step.advance()
            return float(np.mean(scores))

        study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed)
        )
        study.optimize(objective, n_trials=config.n_trials)
    table = pd.DataFrame(rows)
    table["rank"] = table["mean_score"].rank(ascending=False, method="min").astype(int)
    best = dict(rows[study.best_trial.number])
    best_params = {k: best[k] for k in config.space}
    best_estimator = clone(pipeline).set_params(
        **{f"{PREFIX}{k}": v for k, v in best_params.items()}
    ).fit(X, y)
    return SearchResult(best_estimator, best_params, float(study.best_value), _finish(table))


def _finish(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values(["rank", "fit_time"], kind="stable").reset_index(drop=True)


def _strip_name(name: str) -> str:
    return name.replace(PREFIX, "", 1)


def _strip(params: dict[str, Any]) -> dict[str, Any]:
    return {_strip_name(k): v for k, v in params.items()}
