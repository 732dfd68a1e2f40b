"""Tabular data larger than memory, on a Dask cluster (``data.engine: dask``).

The data stays in partitions on the workers; this process holds a bounded sample and one
partition's worth of transformed rows at a time:

* the input schema and the profile come from a uniform sample (``data.sample_rows``);
* preprocessing is fitted out of core: imputation values, means and variances (of the imputed
  values, as scikit-learn's scaler sees them) and one-hot categories are computed over every
  training row, then set on the same scikit-learn transformers a pandas run fits;
* estimators with ``partial_fit`` learn from every training partition, ``model.epochs`` passes
  in shuffled partition order; the others, and every search, fit on the sample (the run's
  ``training`` record says which, and on how many rows);
* the held-out split is scored partition by partition for the metrics.

The saved model is the same scikit-learn pipeline as a pandas run's: it serves, exports and
loads the same way.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from zero2one import scale
from zero2one.errors import DataError, RecipeError
from zero2one.progress import Reporter
from zero2one.scale import source_bytes
from zero2one.tasks.tabular.columns import Column, coerce
from zero2one.tasks.tabular.data import TabularData, plain
from zero2one.tasks.tabular.pipelines import auc_scores

if TYPE_CHECKING:
    import dask.dataframe as dd
    import numpy as np
    import pandas as pd

    from zero2one.tasks.tabular.task import TabularTask

log = logging.getLogger(__name__)

AUTO_SHARE = 0.25  # engine auto: Dask when the files exceed this share of available memory
MISSING = "(missing)"  # the categorical imputer's fill value (see TabularTask.build_pipeline)


def choose_engine(source: str, engine: str) -> tuple[str, str | None]:
    """The engine for ``source`` and, when ``auto`` chose Dask, the sentence saying why."""
    if engine != "auto":
        return engine, None
    if source.startswith("sklearn:"):
        return "pandas", None
    import importlib.util

    size = source_bytes(source)
    available = _available_memory()
    if not available or size <= AUTO_SHARE * available:
        return "pandas", None
    gib = f"{size / 2**30:.1f} GiB on disk, more than a quarter of the {available / 2**30:.1f} GiB"
    if importlib.util.find_spec("distributed") is None:
        log.warning("%s is %s of memory available; install zero2one[scale] to keep it in "
                    "partitions on a Dask cluster (data.engine: dask)", source, gib)
        return "pandas", None
    return "dask", (f"{source} is {gib} of memory available: reading it with Dask "
                    "(data.engine: pandas keeps it in memory)")


def _available_memory() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


@dataclass
class Stats:
    """Out-of-core statistics of the training split's feature columns."""

    rows: int
    fill: dict[str, float]  # numeric column -> imputation value
    mean: dict[str, float]  # of the imputed values
    var: dict[str, float]
    categories: dict[str, list[str]]  # categorical column -> sorted values (MISSING included)
    class_counts: dict[Any, int] | None
    target_mean: float


@dataclass
class Partitions:
    """What a Dask-engine TabularData carries besides its samples."""

    train: dd.DataFrame  # coerced features + target, every training row
    test: dd.DataFrame  # the held-out rows
    train_rows: int
    test_rows: int
    stats: Stats
    training: dict[str, Any] = field(default_factory=dict)  # how the model learned (manifest)


def load(task: TabularTask, reporter_note: str | None) -> TabularData:
    """Read ``data.source`` with Dask and return a TabularData whose ``X_train``/``y_train``
    (for the search and estimators without partial_fit) and ``X_test``/``y_test`` (export
    checks, benchmarks) are samples and whose ``partitions`` hold everything."""
    import dask

    cfg, seed = task.config.data, task.config.seed
    scale.client()
    frames = scale.read_frames(cfg.source)
    columns = [str(c) for c in frames.columns]
    target = cfg.target
    if target is None:
        raise DataError(f"{cfg.source}: set data.target to the column to predict")
    features = task.feature_names(cfg.source, columns, target)
    frames = frames[frames[target].notnull()]
    rows = int(frames.shape[0].compute())
    if rows == 0:
        raise DataError(f"{cfg.source}: the data has no rows with a target")
    raw = _sample(frames, cfg.sample_rows, rows, seed).compute()
    profile, features, schema, ignored = task.profile_schema(cfg.source, raw, columns, features,
                                                             target)
    y_kind = task.target_kind(raw[target], target)
    prepare = _Prepare(schema, target, tuple(ignored), y_kind)
    full = frames.map_partitions(prepare, meta=prepare(raw.iloc[:0]))
    train, test = full.random_split([1 - cfg.test_size, cfg.test_size], random_state=seed)

    numeric = [c.name for c in schema if c.kind == "numeric"]
    categorical = [c.name for c in schema if c.kind == "categorical"]
    strategy = task.config.model.preprocess.impute_numeric
    work: dict[str, Any] = {
        "train_rows": train.shape[0], "test_rows": test.shape[0],
        "count": train[numeric].count() if numeric else None,
        "sum": train[numeric].sum() if numeric else None,
        "sumsq": (train[numeric] ** 2).sum() if numeric else None,
        "median": (train[numeric].quantile(0.5) if numeric and strategy == "median" else None),
        "mode": ({c: train[c].value_counts(split_out=1) for c in numeric}
                 if numeric and strategy == "most_frequent" else None),
        "categories": {c: train[c].fillna(MISSING).drop_duplicates(split_out=1)
                       for c in categorical},
        "classes": (train[target].value_counts(split_out=1)
                    if task.kind == "classification" else None),
        "target_mean": train[target].mean() if task.kind == "regression" else 0.0,
        "digests": full.map_partitions(_digest, meta=("digest", "object")),
        # the samples in the same pass (their sizes from the split's expected shares)
        "sample_train": _sample(train, cfg.sample_rows, rows * (1 - cfg.test_size), seed),
        "sample_test": _sample(test, cfg.sample_rows, rows * cfg.test_size, seed),
    }
    (done,) = dask.compute(work)
    train_rows, test_rows = int(done["train_rows"]), int(done["test_rows"])
    if test_rows == 0 or train_rows < 2:
        raise DataError(f"too few rows ({rows}) to hold out data.test_size={cfg.test_size}")
    stats = _stats(done, numeric, strategy, train_rows)
    counts = stats.class_counts
    classes = task.check_classes(counts, target) if counts is not None else None
    sample_train, sample_test = done["sample_train"], done["sample_test"]
    digest = hashlib.sha256("".join(done["digests"]).encode()).hexdigest()
    prints = {"sha256": digest, "rows": rows, "columns": len(features) + 1,
              "schema": {c.name: c.dtype for c in schema}, "hash": "per-partition"}
    if counts is not None:
        prints["class_counts"] = {str(k): v for k, v in counts.items()}
    data = TabularData(sample_train[features], sample_test[features], sample_train[target],
                       sample_test[target], schema, target, classes, None, prints,
                       cfg.source, profile.to_dict(), ignored)
    data.partitions = Partitions(train, test, train_rows, test_rows, stats)
    note = (f"{rows} rows in {frames.npartitions} partitions on the Dask cluster: "
            f"{train_rows} for training, {test_rows} held out; search and schema on a sample of "
            f"{len(sample_train)}")
    data.profile = {**(data.profile or {}), "notes": [
        *([reporter_note] if reporter_note else []), note]}
    return data


def _sample(frame: dd.DataFrame, n: int, rows: float, seed: int) -> dd.DataFrame:
    if rows <= n:
        return frame
    return frame.sample(frac=n / rows, random_state=seed)


@dataclass(frozen=True)
class _Prepare:
    """Coerce a raw partition to the schema and convert its target (runs on the workers)."""

    schema: list[Column]
    target: str
    ignored: tuple[str, ...]
    y_kind: str  # "float", "int", "str" or "keep"

    def __call__(self, part: pd.DataFrame) -> pd.DataFrame:
        import pandas as pd

        out = coerce(part, self.schema, ignore=(self.target, *self.ignored), allow_extra=True)
        y = part[self.target]
        if self.y_kind == "float":
            values = pd.to_numeric(y, errors="coerce")
            if values.isna().any():
                row = values.isna().idxmax()
                raise DataError(f"target {self.target!r} must be numeric for regression, but "
                                f"has {y[row]!r}")
            y = values.astype("float64")
        elif self.y_kind == "int":
            if (y != y.round()).any():
                raise DataError(f"target {self.target!r} has fractional values in some rows")
            y = y.astype("int64")
        elif self.y_kind == "str":
            y = y.astype(str)
        out[self.target] = y.to_numpy()
        return out


def _digest(part: pd.DataFrame) -> str:
    import pandas as pd

    digest = hashlib.sha256(repr([(str(c), str(t)) for c, t in part.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(part, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _stats(done: dict[str, Any], numeric: list[str], strategy: str | None,
           train_rows: int) -> Stats:
    fill: dict[str, float] = {}
    mean: dict[str, float] = {}
    var: dict[str, float] = {}
    for name in numeric:
        count = float(done["count"][name])
        if count == 0:
            raise DataError(f"column {name!r} has no values in the training rows")
        total, squares = float(done["sum"][name]), float(done["sumsq"][name])
        if strategy == "median":
            value = float(done["median"][name])
        elif strategy == "most_frequent":
            counts = done["mode"][name]
            value = float(min(counts[counts == counts.max()].index))  # scikit-learn: smallest
        elif strategy == "mean":
            value = total / count
        else:
            value = 0.0  # no imputation: missing values stay and the scaler ignores them
        missing = train_rows - count if strategy else 0.0
        n = count + missing
        fill[name] = value
        mean[name] = (total + value * missing) / n
        var[name] = max(0.0, (squares + value * value * missing) / n - mean[name] ** 2)
    categories = {name: sorted(str(v) for v in values)
                  for name, values in done["categories"].items()}
    classes = done["classes"]
    counts = None if classes is None else {plain(k): int(v) for k, v in classes.items()}
    return Stats(train_rows, fill, mean, var, categories, counts, float(done["target_mean"]))


def out_of_core_preprocess(task: TabularTask, data: TabularData) -> Any:
    """The recipe's preprocessing with statistics over every training row: structured by a fit
    on the sample, then given the global imputation values, means, variances and categories."""
    import numpy as np

    parts = data.partitions
    pipeline = task.build_pipeline(data.columns)
    pre = pipeline.named_steps["preprocess"]
    for name, step, cols in pre.transformers:
        if name == "categorical" and "one_hot" in step.named_steps:
            step.named_steps["one_hot"].set_params(
                categories=[parts.stats.categories[c] for c in cols])
    pre.fit(data.X_train, data.y_train)
    for name, step, cols in pre.transformers_:
        if name != "numeric" or step == "passthrough":
            continue
        steps = step.named_steps
        if "impute" in steps:
            steps["impute"].statistics_ = np.array([parts.stats.fill[c] for c in cols])
        if "scale" in steps:
            scaler = steps["scale"]
            scaler.mean_ = np.array([parts.stats.mean[c] for c in cols])
            scaler.var_ = np.array([parts.stats.var[c] for c in cols])
            scale = np.sqrt(scaler.var_)
            scale[scale < 10 * np.finfo(scale.dtype).eps] = 1.0  # as scikit-learn does
            scaler.scale_ = scale
            scaler.n_samples_seen_ = parts.stats.rows
    return pre


def learns_incrementally(estimator: Any) -> bool:
    return hasattr(estimator, "partial_fit")


def fit_incremental(task: TabularTask, data: TabularData, model: Any, *,
                    reporter: Reporter) -> Any:
    """The preprocessing fitted out of core and ``model`` (the searched estimator, unfitted)
    learnt from every training partition: partitions are transformed on the workers, one is
    fetched while this process learns from the previous one."""
    import dask
    import numpy as np
    from sklearn.pipeline import Pipeline

    parts = data.partitions
    epochs = task.config.model.epochs
    pre = out_of_core_preprocess(task, data)
    classes = np.asarray(data.classes) if data.classes is not None else None
    if task.config.model.class_weight == "balanced" and classes is not None:
        if "class_weight" not in model.get_params():
            raise RecipeError(f"model.class_weight: {type(model).__name__} has no class_weight; "
                              "with data.engine dask an incremental learner needs one")
        counts = parts.stats.class_counts or {}
        total = sum(counts.values())
        model.set_params(class_weight={c: total / (len(counts) * n) for c, n in counts.items()})
    client = scale.client()
    blocks = parts.train.to_delayed()
    transform = dask.delayed(_Transform(pre, data.target), pure=True)
    rng = np.random.default_rng(task.config.seed)
    seen = 0
    with reporter.step(f"learning from {parts.train_rows} rows in {len(blocks)} partitions "
                       f"({epochs} pass{'es' if epochs > 1 else ''})",
                       total=epochs * len(blocks)) as step:
        for _ in range(epochs):
            order = rng.permutation(len(blocks))
            pending = client.compute(transform(blocks[order[0]]))
            for position in range(len(order)):
                X, y = pending.result()
                if position + 1 < len(order):  # fetch the next while this one is learnt
                    pending = client.compute(transform(blocks[order[position + 1]]))
                if len(y):
                    if classes is not None:
                        model.partial_fit(X, y, classes=classes)
                    else:
                        model.partial_fit(X, y)
                    seen += len(y)
                step.advance()
    if seen == 0:
        raise DataError("no training rows reached the model")
    parts.training = {"engine": "dask", "mode": "incremental", "rows": parts.train_rows,
                      "epochs": epochs, "partitions": len(blocks),
                      "preprocess": "out of core (every training row)"}
    return Pipeline([("preprocess", pre), ("model", model)])


@dataclass(frozen=True)
class _Transform:
    pre: Any
    target: str

    def __call__(self, part: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        y = part[self.target].to_numpy()
        return self.pre.transform(part.drop(columns=[self.target])), y


@dataclass(frozen=True)
class _Score:
    """A held-out partition's targets, predictions and scores (runs on the workers)."""

    pipeline: Any
    target: str
    n_classes: int

    def __call__(self, part: pd.DataFrame) -> pd.DataFrame:
        import pandas as pd

        X = part.drop(columns=[self.target])
        out = pd.DataFrame({"y": part[self.target].to_numpy()})
        if len(X) == 0:
            out["prediction"] = out["y"]
            return out
        out["prediction"] = self.pipeline.predict(X)
        if self.n_classes:
            scores = auc_scores(self.pipeline, X, self.n_classes)
            if scores is not None:
                scores = scores.reshape(len(X), -1)
                for i in range(scores.shape[1]):
                    out[f"score_{i}"] = scores[:, i]
        return out


def held_out(task: TabularTask, data: TabularData) -> tuple[Any, Any, Any]:
    """Targets, predictions and scores of every held-out row, scored on the workers."""
    import numpy as np
    import pandas as pd
    from distributed import as_completed

    n_classes = len(data.classes or [])
    score = _Score(task.pipeline_, data.target, n_classes)
    if hasattr(task.pipeline_, "graph"):  # an ONNX Runtime session stays in this process
        scored = score(data.X_test.assign(**{data.target: data.y_test.to_numpy()}))
    else:
        client = scale.client()
        meta = score(data.X_test.head(2).assign(**{data.target: data.y_test.head(2).to_numpy()}))
        # each partition's scores come to this process as they are done (a concatenation on a
        # worker would hold every held-out row there at once)
        parts = data.partitions.test.map_partitions(score, meta=meta.iloc[:0]).to_delayed()
        futures = client.compute(parts)
        index = {future.key: i for i, future in enumerate(futures)}
        results: list[Any] = [None] * len(futures)
        for future in as_completed(futures):
            results[index[future.key]] = future.result()
            future.release()
        scored = pd.concat(results, ignore_index=True)
    columns = [c for c in scored.columns if c.startswith("score_")]
    scores = scored[columns].to_numpy() if columns else None
    if scores is not None and scores.shape[1] == 1:
        scores = scores[:, 0]
    return scored["y"], np.asarray(scored["prediction"]), scores
