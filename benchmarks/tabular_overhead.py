"""zero2one train vs the same scikit-learn Pipeline + GridSearchCV called directly.

For iris, wine and breast_cancer with the same SVC grid (kernel x C, 5 stratified folds, seed 42),
in one process with imports warmed up, median of REPEATS runs each:

- sklearn:   load -> split -> Pipeline(impute, scale, SVC) -> GridSearchCV.fit -> test accuracy
- z21 core:  zero2one's data checks + split + search + evaluate (what replaces the above)
- z21 tracked: a whole tracked train (zero2one.train): core + plots + model directory (skops,
  manifest, hashes) + the MLflow run, artifacts and registry; the plots, the model directory and
  the MLflow calls are reported separately, as the issue asks for tracking I/O

    python benchmarks/tabular_overhead.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

SPACE = {"kernel": ["linear", "rbf", "poly"], "C": [0.01, 0.1, 1, 10, 100]}
DATASETS = ["iris", "wine", "breast_cancer"]
SEED = 42


def sklearn_direct(name: str) -> tuple[float, dict[str, Any]]:
    from sklearn import datasets
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    X, y = getattr(datasets, f"load_{name}")(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, random_state=SEED, stratify=y)
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    pipeline = Pipeline([
        ("preprocess", ColumnTransformer([("numeric", numeric, list(X.columns))])),
        ("model", SVC()),
    ])
    search = GridSearchCV(pipeline, {f"model__{k}": v for k, v in SPACE.items()},
                          cv=StratifiedKFold(5, shuffle=True, random_state=SEED),
                          scoring="accuracy")
    search.fit(X_train, y_train)
    accuracy = search.score(X_test, y_test)
    return accuracy, {k.removeprefix("model__"): v for k, v in search.best_params_.items()}


def recipe(name: str, tracked: bool) -> dict[str, Any]:
    return {
        "task": "tabular-classification", "name": f"bench-{name}", "seed": SEED,
        "data": {"source": f"sklearn:{name}", "test_size": 0.3},
        "model": {"estimator": "svc"},
        "search": {"method": "grid", "space": SPACE, "cv": 5, "scoring": "accuracy"},
        "track": {"enabled": tracked, "experiment": "benchmark"},
    }


def zero2one_core(name: str) -> tuple[float, dict[str, Any]]:
    from zero2one.catalog import get_task, validate
    from zero2one.progress import NullReporter

    config = validate(recipe(name, tracked=False))
    task = get_task(config.task)(config)
    data = task.load_data()
    task.fit(data, reporter=NullReporter())
    return task.evaluate(data)["accuracy"], task.search_.best_params


def timed(fn: Any, *args: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn(*args)
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import zero2one

    home = Path(tempfile.mkdtemp(prefix="z21-bench-"))
    os.environ["ZERO2ONE_HOME"] = str(home / ".zero2one")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    # warm-up: imports, the SQLite store's creation, first-call caches
    sklearn_direct("iris")
    zero2one_core("iris")
    zero2one.train(recipe("iris", tracked=True))

    rows = []
    for name in DATASETS:
        t_sk, t_core, t_total, t_plots, t_save, t_io = [], [], [], [], [], []
        for _ in range(args.repeats):
            seconds, (acc_sk, params_sk) = timed(sklearn_direct, name)
            t_sk.append(seconds)
            seconds, (acc_core, params_core) = timed(zero2one_core, name)
            t_core.append(seconds)
            seconds, tracked = timed(zero2one.train, recipe(name, tracked=True))
            t_total.append(seconds)
            t_plots.append(tracked.seconds["report"])
            t_save.append(tracked.seconds["save"])
            t_io.append(tracked.seconds["tracking"])
        assert acc_core == acc_sk == tracked.metrics["accuracy"], (name, acc_sk, acc_core)
        assert params_core == params_sk == tracked.best_params, (params_core, params_sk)
        med = statistics.median
        rows.append((name, med(t_sk), med(t_core), med(t_total), med(t_plots), med(t_save),
                     med(t_io), acc_sk, tracked.metrics["accuracy"], params_sk))

    print(f"\nmedian of {args.repeats} runs each; times in seconds; {os.cpu_count()} cores\n")
    header = ("data", "sklearn", "z21 core", "core/sk", "z21 train", "plots", "model dir",
              "mlflow", "(train-plots-dir-mlflow)/sk", "train/sk", "acc sklearn", "acc z21",
              "best params")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for name, sk, core, total, plots, save, io, acc_sk, acc_z, params in rows:
        print(" | ".join([
            name, f"{sk:.3f}", f"{core:.3f}", f"{core / sk:.3f}", f"{total:.3f}", f"{plots:.3f}",
            f"{save:.3f}", f"{io:.3f}", f"{(total - plots - save - io) / sk:.3f}",
            f"{total / sk:.3f}", f"{acc_sk:.4f}", f"{acc_z:.4f}",
            ", ".join(f"{k}={v}" for k, v in params.items()),
        ]))


if __name__ == "__main__":
    main()
