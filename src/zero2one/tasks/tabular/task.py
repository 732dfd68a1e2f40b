"""The tabular tasks: a scikit-learn Pipeline (preprocessing + estimator), searched and evaluated.

Saved with skops and loaded with a fixed list of trusted types; nothing is unpickled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from zero2one.data import Table, fingerprint, load_table
from zero2one.errors import ArtifactError, DataError, RecipeError, SchemaError
from zero2one.progress import Reporter
from zero2one.task import Searched, Task
from zero2one.tasks.tabular import scaled
from zero2one.tasks.tabular.columns import Column, coerce, infer_columns
from zero2one.tasks.tabular.config import TabularRecipe
from zero2one.tasks.tabular.estimators import Kind, resolve_estimator
from zero2one.tasks.tabular.profile import profile_frame
from zero2one.tasks.tabular.search import SearchResult, run_search
from zero2one.tasks.tabular.skops_io import skops_io

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from sklearn.pipeline import Pipeline

    from zero2one.serving.settings import ServeSettings

log = logging.getLogger(__name__)

WEIGHTS = "model.skops"
SEARCH_TABLE = "search_results.csv"
# Types skops does not trust by default but that the built-in estimators (SHORT_NAMES) contain:
# scikit-learn's own tree, neighbour-index and optimizer state, restored from arrays and numbers
# without running user code. Anything else must be trusted by name (``--trust``).
EXTRA_TRUSTED = (
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.metrics._dist_metrics.ManhattanDistance64",
    "sklearn.metrics._dist_metrics.ChebyshevDistance64",
    "sklearn.metrics._dist_metrics.MinkowskiDistance64",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
)


@dataclass
class TabularData:
    X_train: pd.DataFrame
    X_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series
    columns: list[Column]
    target: str
    classes: list[Any] | None
    class_names: list[str] | None
    fingerprint: dict[str, Any]
    source: str
    profile: dict[str, Any] | None = None  # see tasks/tabular/profile.py
    ignored: list[str] | None = None  # source columns that are not features (dropped, ids)
    # data.engine dask: every row, in partitions (X_/y_ fields then hold samples); see scaled.py
    partitions: Any = None
    # the held-out rows' targets, predictions and scores, kept for evaluate and report
    held_out: tuple[Any, Any, Any, Any] | None = None


class TabularTask(Task):
    """Shared logic of tabular classification and regression.

    ``predict`` takes rows — a DataFrame, one record as a dict, or a list of dicts — and returns
    them as a DataFrame with a ``prediction`` column (classification adds ``prediction_name``
    and one ``proba_<class>`` column per class when the estimator gives probabilities).
    """

    config_model: ClassVar[type[TabularRecipe]] = TabularRecipe
    kind: ClassVar[Kind]
    config: TabularRecipe
    extra = "tabular"
    requires = ("sklearn", "skops")
    serve_requirements = ("numpy", "pandas", "scipy", "scikit-learn", "skops")
    export_formats = ("onnx",)
    row_inputs = True
    positive_: Any = None  # binary classification: the class binary metrics are about

    # ---- data -------------------------------------------------------------------------------

    def load_data(self) -> TabularData:
        cfg = self.config.data
        engine, why = scaled.choose_engine(cfg.source, cfg.engine)
        if engine == "dask":
            return scaled.load(self, why)
        table = load_table(cfg.source)
        frame = table.frame
        if frame.empty or frame.shape[0] == 0:
            raise DataError(f"{table.source}: the data has no rows")
        target = cfg.target or table.default_target
        if target is None:
            raise DataError(f"{table.source}: set data.target to the column to predict")
        columns = [str(c) for c in frame.columns]
        features = self.feature_names(table.source, columns, target)
        y = frame[target]
        keep = y.notna()
        if not keep.all():
            log.warning("dropping %d rows whose target %r is missing", int((~keep).sum()), target)
            frame, y = frame[keep], y[keep]
        if frame.empty:
            raise DataError(f"{table.source}: every row's target {target!r} is missing")
        profile, features, schema, ignored = self.profile_schema(table.source, frame, columns,
                                                                 features, target)
        X = coerce(frame, schema, ignore=tuple(ignored), allow_extra=True)
        y, classes, class_names = self._prepare_target(y, target, table)
        X_train, X_test, y_train, y_test = self._split(X, y)
        prints = fingerprint(frame[[*features, target]])
        if profile.class_counts is not None:
            prints["class_counts"] = profile.class_counts
        return TabularData(X_train, X_test, y_train, y_test, schema, target, classes,
                           class_names, prints, table.source, profile.to_dict(), ignored)

    def profile_schema(self, source: str, frame: pd.DataFrame, columns: list[str],
                       features: list[str], target: str) -> tuple[Any, list[str], list[Column],
                                                                   list[str]]:
        """Profile ``frame`` (all rows, or a sample of partitioned data): the profile, the
        features left once identifiers are excluded, their schema and the ignored columns."""
        cfg = self.config.data
        profile = profile_frame(frame[[*features, target]], target=target, kind=self.kind,
                                keep=tuple(cfg.keep), features=tuple(cfg.features or ()))
        features = [c for c in features if c not in profile.excluded]
        if not features:
            raise DataError(f"{source}: every feature column looks like an identifier "
                            f"({', '.join(profile.excluded)}); list the real ones in data.keep")
        schema = infer_columns(frame, features, categorical=cfg.categorical, numeric=cfg.numeric)
        ignored = [c for c in columns if c not in features and c != target]
        return profile, features, schema, ignored

    def feature_names(self, source: str, columns: list[str], target: str) -> list[str]:
        """The recipe's feature columns (default: all but target and drop), each checked."""
        cfg = self.config.data
        if target not in columns:
            raise DataError(
                f"{source}: target column {target!r} not found; columns: {', '.join(columns)}"
            )
        features = cfg.features or [c for c in columns if c != target and c not in cfg.drop]
        named = [*features, *cfg.drop, *cfg.categorical, *cfg.numeric]
        absent = sorted({c for c in named if c not in columns})
        if absent:
            raise DataError(f"{source}: column(s) not found: {', '.join(absent)}; "
                            f"columns: {', '.join(columns)}")
        if target in features:
            raise DataError(f"data.features: the target {target!r} cannot also be a feature")
        if not features:
            raise DataError(f"{source}: no feature columns left besides the target")
        return features

    def target_kind(self, y: pd.Series, target: str) -> str:
        """How every partition's target is converted (``float``, ``int``, ``str`` or
        ``keep``), decided on a sample as :meth:`_prepare_target` decides on all rows."""
        return "float"

    def check_classes(self, counts: dict[Any, int], target: str) -> list[Any] | None:
        """The sorted classes of a target with these value counts (None: not classes)."""
        return None

    def _prepare_target(
        self, y: pd.Series, target: str, table: Table
    ) -> tuple[pd.Series, list[Any] | None, list[str] | None]:
        return y, None, None

    def _split(self, X: pd.DataFrame, y: pd.Series) -> tuple[Any, Any, Any, Any]:
        from sklearn.model_selection import train_test_split

        cfg = self.config.data
        n_test = int(-(-cfg.test_size * len(y) // 1))  # ceil, as scikit-learn counts it
        if n_test < 1 or len(y) - n_test < 2:
            raise DataError(f"too few rows ({len(y)}) to hold out data.test_size={cfg.test_size}")
        return train_test_split(X, y, test_size=cfg.test_size, random_state=self.config.seed,
                                stratify=self._stratify(y))

    def _stratify(self, y: pd.Series) -> pd.Series | None:
        return None

    def _cv(self) -> Any:
        from sklearn.model_selection import KFold

        return KFold(n_splits=self.config.search.cv, shuffle=True, random_state=self.config.seed)

    # ---- model ------------------------------------------------------------------------------

    def build_pipeline(self, columns: list[Column]) -> Pipeline:
        """Preprocessing for ``columns`` followed by the recipe's estimator (step ``model``)."""
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        pre = self.config.model.preprocess
        numeric = [c.name for c in columns if c.kind == "numeric"]
        categorical = [c.name for c in columns if c.kind == "categorical"]
        transformers: list[tuple[str, Any, list[str]]] = []
        if numeric:
            steps: list[tuple[str, Any]] = []
            if pre.impute_numeric:
                steps.append(("impute", SimpleImputer(strategy=pre.impute_numeric)))
            if pre.scale:
                steps.append(("scale", StandardScaler()))
            transformers.append(("numeric", Pipeline(steps) if steps else "passthrough", numeric))
        if categorical:
            steps = [("impute", SimpleImputer(strategy="constant", fill_value="(missing)"))]
            if pre.one_hot:
                steps.append(("one_hot", OneHotEncoder(handle_unknown="ignore",
                                                       sparse_output=False)))
            transformers.append(("categorical", Pipeline(steps), categorical))
        estimator_cls = resolve_estimator(self.config.model.estimator, self.kind)
        params = dict(self.config.model.params)
        accepted = estimator_cls().get_params()
        if "random_state" in accepted:  # the recipe's seed, so that a retrain is the same
            params.setdefault("random_state", self.config.seed)
        preprocess = ColumnTransformer(transformers, remainder="drop",
                                       verbose_feature_names_out=False)
        if self.config.model.class_weight:
            if "class_weight" not in accepted:
                return _resampling(preprocess, estimator_cls(**params), seed=self.config.seed)
            params.setdefault("class_weight", self.config.model.class_weight)
        return Pipeline([("preprocess", preprocess), ("model", estimator_cls(**params))])

    def fit(self, data: TabularData, *, reporter: Reporter) -> Self:
        self._check_folds(data)
        self.columns_ = data.columns
        self.target_ = data.target
        self.classes_ = data.classes
        self.class_names_ = data.class_names
        self.ignored_ = list(data.ignored or [])
        self.baseline_ = (data.y_train.mode().iloc[0] if self.kind == "classification"
                          else float(data.y_train.mean()))
        pipeline = self.build_pipeline(data.columns)
        if (data.partitions is not None and self.config.search.method == "none"
                and scaled.learns_incrementally(pipeline.named_steps["model"])):
            self.search_: SearchResult = SearchResult(pipeline, {}, None, None)
        else:
            self.search_ = run_search(
                pipeline, data.X_train, data.y_train, config=self.config.search, cv=self._cv(),
                scoring=self.scorer, seed=self.config.seed, reporter=reporter,
                backend=self._search_backend(data, reporter))
        self.pipeline_ = _without_sampler(self.search_.best_estimator)
        if data.partitions is not None:
            self._fit_partitions(data, reporter)
        return self

    def _search_backend(self, data: TabularData, reporter: Reporter) -> str | None:
        """``dask`` (joblib's Dask backend, folds spread over the cluster) when the data is on
        Dask, a scheduler was named, or the recipe asks; None: this process's joblib."""
        from zero2one import scale

        search = self.config.search
        if search.method == "none" or search.backend == "local":
            return None
        if search.backend == "auto" and data.partitions is None \
                and scale.configured_address() is None:
            return None
        scale.client(reporter)
        return "dask"

    def _fit_partitions(self, data: TabularData, reporter: Reporter) -> None:
        """Data on Dask: estimators with partial_fit learn from every training row (after the
        search chose their parameters on the sample); the others keep the sample's fit."""
        from sklearn.base import clone

        parts = data.partitions
        stats = parts.stats
        if stats.class_counts:
            self.baseline_ = max(stats.class_counts.items(), key=lambda kv: kv[1])[0]
        elif self.kind == "regression":
            self.baseline_ = stats.target_mean
        model = self.pipeline_.named_steps["model"]
        if scaled.learns_incrementally(model):
            self.pipeline_ = scaled.fit_incremental(self, data, clone(model), reporter=reporter)
        else:
            parts.training = {"engine": "dask", "mode": "sample", "rows": len(data.y_train),
                              "reason": f"{type(model).__name__} has no partial_fit"}
            reporter.info(f"[data] {type(model).__name__} cannot learn incrementally: it learnt "
                          f"from a sample of {len(data.y_train)} of the {parts.train_rows} "
                          "training rows (estimators with partial_fit, such as sgd, learn from "
                          "all)")
        self.training_ = parts.training

    def _check_folds(self, data: TabularData) -> None:
        if self.config.search.method == "none":
            return
        if len(data.y_train) < self.config.search.cv:
            raise DataError(f"{len(data.y_train)} training rows cannot make "
                            f"search.cv={self.config.search.cv} folds; lower search.cv")

    @property
    def scoring(self) -> str:
        raise NotImplementedError

    def searched(self) -> Searched | None:
        search = getattr(self, "search_", None)
        if search is None or (search.results is None and not search.best_params):
            return None
        return Searched(search.best_params, search.best_score, search.results)

    @property
    def scorer(self) -> Any:
        """The search's scorer: the name :attr:`scoring`, or a scorer object built from it."""
        return self.scoring

    def held_out(self, data: TabularData) -> tuple[Any, Any, Any]:
        """Targets, predictions and (classification) scores of the held-out rows, computed
        once per fitted pipeline for evaluate and report; partitioned data is scored on the
        cluster."""
        if data.held_out is not None and data.held_out[0] is self.pipeline_:
            return data.held_out[1:]
        if data.partitions is not None:
            result = scaled.held_out(self, data)
        else:
            scores = (auc_scores(self.pipeline_, data.X_test, len(self.classes_ or []))
                      if self.kind == "classification" else None)
            result = (data.y_test, self.pipeline_.predict(data.X_test), scores)
        data.held_out = (self.pipeline_, *result)
        return result

    # ---- prediction -------------------------------------------------------------------------

    def features(self, frame: Any, *, allow_extra: bool = False) -> pd.DataFrame:
        """``frame``'s feature columns checked and cast against the model's input schema."""
        frame = as_frame(frame)
        if frame.shape[0] == 0:
            raise SchemaError("the input has no rows")
        return coerce(frame, self.columns_, error=SchemaError,
                      ignore=(self.target_, *self.ignored_), allow_extra=allow_extra)

    def predict(self, frame: Any, *, allow_extra: bool = False) -> pd.DataFrame:
        """The input rows plus a ``prediction`` column (and per-class probabilities)."""
        X = self.features(frame, allow_extra=allow_extra)
        out = as_frame(frame).copy()
        out["prediction"] = self.pipeline_.predict(X)
        return out

    def predict_file(self, path: Path, **options: Any) -> pd.DataFrame:
        """A CSV or Parquet file's rows, scored (``allow_extra``: ignore unknown columns)."""
        from zero2one.scale.frames import read_pandas
        from zero2one.task import check_options

        check_options(self, options, allowed=("allow_extra",))
        return self.predict(read_pandas(str(path)), allow_extra=bool(options.get("allow_extra")))

    def predict_rows(self, frame: pd.DataFrame, **options: Any) -> pd.DataFrame:
        return self.predict(frame, allow_extra=bool(options.get("allow_extra")))

    def check_row_options(self, options: dict[str, Any]) -> None:
        from zero2one.task import check_options

        check_options(self, options, allowed=("allow_extra",))

    # ---- serving ----------------------------------------------------------------------------

    def serving_adapter(self, settings: ServeSettings, name: str) -> Any:
        from zero2one.tasks.tabular.serving import TabularAdapter

        return TabularAdapter(self, max_rows=settings.max_batch)

    @classmethod
    def routes(cls) -> list[Any]:
        from zero2one.serving.routes import models, predict
        from zero2one.tasks.tabular.serving import PredictRequest, PredictResponse

        return [models.router, *predict.predict_routes(
            content={"application/json": {"schema": PredictRequest.model_json_schema()}},
            summary="Predict one row, a batch, or named records", response_model=PredictResponse)]

    # ---- export -----------------------------------------------------------------------------

    @property
    def runtime(self) -> str:
        return "onnxruntime float32" if _is_graph(self.pipeline_) else "scikit-learn"

    def export(self, fmt: str, data: TabularData, *, reporter: Reporter) -> Any:
        import copy
        import tempfile

        from zero2one.convert import Conversion
        from zero2one.errors import ConversionError
        from zero2one.onnxrt import OnnxModel
        from zero2one.tasks.tabular import onnx

        if _is_graph(self.pipeline_):
            raise ConversionError("this model is already an ONNX graph; export the model it "
                                  "was made from")
        with reporter.step("converting to ONNX (skl2onnx)"):
            directory = Path(tempfile.mkdtemp(prefix="zero2one-onnx-"))
            path = onnx.convert(self.pipeline_, self.columns_, directory)
            graph = onnx.OnnxPipeline(
                OnnxModel(directory, path.name, owned=True), self.columns_,
                probabilities=self.kind == "classification" and _has_proba(self.pipeline_),
                classification=self.kind == "classification")
        X = self.features(data.X_test)
        details = onnx.check_agreement(self.pipeline_, graph, X, data.y_test,
                                       classification=self.kind == "classification")
        new = copy.copy(self)
        new.pipeline_, new.ref, new.manifest = graph, None, {}
        return Conversion(new, "onnx", details)

    def bench_call(self, data: TabularData, batch_size: int) -> Any:
        X = self.features(data.X_test)
        X = X.iloc[[i % len(X) for i in range(batch_size)]].reset_index(drop=True)
        pipeline = self.pipeline_
        return lambda: pipeline.predict(X)

    # ---- persistence ------------------------------------------------------------------------

    def save(self, path: Path) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if _is_graph(self.pipeline_):
            files = self.pipeline_.graph.save(path)
            fields["runtime"] = {"engine": "onnxruntime", "file": files[0],
                                 "precision": "float32", "method": "export",
                                 "probabilities": self.pipeline_.has_proba}
            estimator = (self.manifest or {}).get("estimator") or "onnx"
        else:
            sio = skops_io()
            sio.dump(self.pipeline_, path / WEIGHTS)
            estimator = (type(self.pipeline_.named_steps["model"]).__module__ + "."
                         + type(self.pipeline_.named_steps["model"]).__name__)
        if self.search_.results is not None:
            self.search_.results.to_csv(path / SEARCH_TABLE, index=False)
        return {
            **fields,
            "input_schema": {"columns": [c.to_dict() for c in self.columns_],
                             "target": self.target_,
                             # accepted and ignored at prediction time (dropped, identifiers)
                             "ignored": self.ignored_},
            "baseline": _plain(self.baseline_),
            "classes": _plain(self.classes_),
            "class_names": self.class_names_,
            **({"positive_class": _plain(self.positive_)}
               if getattr(self, "positive_", None) is not None else {}),
            "estimator": estimator,
            "best_params": _plain(self.search_.best_params),
            "cv_score": self.search_.best_score,
            **({"training": self.training_} if getattr(self, "training_", None) else {}),
            "libraries": ["scikit-learn", "skops", "numpy", "pandas", "scipy",
                          *(["onnxruntime", "onnx", "skl2onnx"] if fields else [])],
        }

    @classmethod
    def load(cls, path: Path, manifest: dict[str, Any], *, trust: tuple[str, ...] = ()) -> Self:
        self = cls(cls.recipe_from(manifest, path))
        try:
            schema = manifest["input_schema"]
            self.columns_ = [Column.from_dict(c) for c in schema["columns"]]
            self.target_ = schema["target"]
            self.ignored_ = list(schema.get("ignored") or [])
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{path}: the manifest is incomplete ({exc})") from None
        runtime = manifest.get("runtime")
        pipeline = (_load_graph(path, runtime, self.columns_, cls.kind) if runtime is not None
                    else _load_pipeline(path, manifest, trust))
        self.classes_ = manifest.get("classes")
        self.class_names_ = manifest.get("class_names")
        classes = self.classes_ or []
        # models saved before positive_class was recorded: binary metrics were about classes[1]
        self.positive_ = manifest.get("positive_class",
                                      classes[1] if len(classes) == 2 else None)
        self.baseline_ = manifest.get("baseline")
        self.training_ = manifest.get("training")
        self.search_ = SearchResult(pipeline, manifest.get("best_params") or {},
                                    manifest.get("cv_score"), None)
        self.pipeline_ = pipeline
        self.manifest = manifest
        return self


def probabilities(pipeline: Any, X: Any) -> np.ndarray | None:
    """Class probabilities (n, n_classes) when the estimator has them, else None."""
    if hasattr(pipeline, "predict_proba"):
        try:
            return pipeline.predict_proba(X)
        except AttributeError:  # e.g. SVC(probability=False) exposes the name but fails
            return None
    return None


def auc_scores(pipeline: Any, X: Any, n_classes: int) -> np.ndarray | None:
    """Probabilities, else decision-function values of shape (n,) or (n, n_classes)."""
    proba = probabilities(pipeline, X)
    if proba is not None or not hasattr(pipeline, "decision_function"):
        return proba
    values = pipeline.decision_function(X)
    if values.ndim == 1 and n_classes == 2:
        return values
    if values.ndim == 2 and values.shape[1] == n_classes:
        return values
    return None  # e.g. SVC(decision_function_shape="ovo"): no per-class score


def _is_graph(pipeline: Any) -> bool:
    return hasattr(pipeline, "graph")


def _has_proba(pipeline: Any) -> bool:
    try:  # SVC(probability=False) has the attribute but refuses the call
        pipeline.predict_proba  # noqa: B018
    except AttributeError:
        return False
    return True


def _load_graph(path: Path, runtime: dict[str, Any], columns: list[Column], kind: str) -> Any:
    from zero2one.errors import require
    from zero2one.onnxrt import OnnxModel
    from zero2one.tasks.tabular.onnx import OnnxPipeline

    if runtime.get("engine") != "onnxruntime":
        raise ArtifactError(f"{path}: unknown runtime {runtime.get('engine')!r}")
    require("onnxruntime", "onnx")
    return OnnxPipeline(OnnxModel(path, str(runtime["file"])), columns,
                        probabilities=bool(runtime.get("probabilities")),
                        classification=kind == "classification")


def _load_pipeline(path: Path, manifest: dict[str, Any], trust: tuple[str, ...]) -> Any:
    sio = skops_io()
    weights = path / WEIGHTS
    if WEIGHTS not in manifest["files"]:
        raise ArtifactError(f"{path}: the manifest lists no {WEIGHTS}")
    try:
        found = sio.get_untrusted_types(file=weights)
    except Exception as exc:  # skops raises several types on a malformed archive
        raise ArtifactError(f"{weights}: not a readable skops file ({exc})") from None
    untrusted = [t for t in found if t not in EXTRA_TRUSTED and t not in trust]
    if untrusted:
        raise ArtifactError(
            f"{weights} contains types that are not trusted: {', '.join(untrusted)}; "
            "if you trust where this model came from, pass --trust TYPE for each"
        )
    try:
        return sio.load(weights, trusted=found)
    except Exception as exc:
        raise ArtifactError(f"{weights}: cannot load ({exc})") from None


class TabularClassification(TabularTask):
    name = "tabular-classification"
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
            counts = {_plain(k): v for k, v in data.partitions.stats.class_counts.items()}
        else:
            counts = {_plain(k): int(v) for k, v in data.y_train.value_counts().items()}
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
        classes = sorted(_plain(k) for k in counts)
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
        from zero2one.metrics import classification_metrics

        y, predicted, scores = self.held_out(data)
        metrics = classification_metrics(y, predicted, scores, self.classes_ or [],
                                          names=self.label_names(), baseline=self.baseline_,
                                          positive=self.positive_)
        threshold = getattr(self.pipeline_.named_steps["model"], "threshold", None)
        if isinstance(threshold, int | float):  # a FixedThresholdClassifier
            metrics["decision_threshold"] = float(threshold)
        return metrics

    def report(self, data: TabularData, out_dir: Path) -> list[Path]:
        from zero2one import plots

        y, predicted, scores = self.held_out(data)
        paths = [plots.plot_confusion_matrix(y, predicted, self.classes_ or [],
                                             self.label_names(), out_dir / "confusion_matrix.png")]
        if scores is not None:
            roc = plots.plot_roc(y, scores, self.classes_ or [], self.label_names(),
                                  out_dir / "roc.png", positive=self.positive_)
            if roc is not None:
                paths.append(roc)
        return paths + _search_report(self, out_dir)


class TabularRegression(TabularTask):
    name = "tabular-regression"
    kind = "regression"

    @property
    def scoring(self) -> str:
        return self.config.search.scoring or "neg_root_mean_squared_error"

    def _prepare_target(
        self, y: pd.Series, target: str, table: Table
    ) -> tuple[pd.Series, None, None]:
        import pandas as pd

        values = pd.to_numeric(y, errors="coerce")
        bad = values.isna()
        if bad.any():
            row = bad.idxmax()
            raise DataError(
                f"target {target!r} must be numeric for regression, but has {y[row]!r} in row "
                f"{row}; for classes use task tabular-classification"
            )
        if values.nunique() < 2:
            raise DataError(f"target {target!r} is constant; there is nothing to learn")
        return values.astype("float64"), None, None

    def evaluate(self, data: TabularData) -> dict[str, float]:
        from zero2one.metrics import regression_metrics

        y, predicted, _ = self.held_out(data)
        return regression_metrics(y, predicted, baseline=self.baseline_)

    def report(self, data: TabularData, out_dir: Path) -> list[Path]:
        from zero2one import plots

        y, predicted, _ = self.held_out(data)
        paths = [plots.plot_residuals(y, predicted, out_dir / "residuals.png")]
        return paths + _search_report(self, out_dir)


def _search_report(task: TabularTask, out_dir: Path) -> list[Path]:
    from zero2one.tasks.tabular import report

    results = task.search_.results
    if results is None:
        return []
    table = out_dir / SEARCH_TABLE
    results.to_csv(table, index=False)
    return [table, report.plot_search(results, task.scoring, out_dir / "search_results.png")]


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


def _resampling(preprocess: Any, estimator: Any, *, seed: int) -> Any:
    """preprocess -> random oversampling of the minority classes -> estimator, as an
    imbalanced-learn pipeline: the sampler runs on each training fold only, never on the rows a
    fold is scored on, nor at prediction time."""
    from zero2one.errors import require

    require("imblearn", "tabular")
    from imblearn.over_sampling import RandomOverSampler
    from imblearn.pipeline import Pipeline as SamplingPipeline

    return SamplingPipeline([("preprocess", preprocess),
                             ("resample", RandomOverSampler(random_state=seed)),
                             ("model", estimator)])


def _without_sampler(pipeline: Any) -> Any:
    """The fitted pipeline without its sampler (it acts only while fitting), as a plain
    scikit-learn Pipeline: saved, loaded and served like any other."""
    if "resample" not in getattr(pipeline, "named_steps", {}):
        return pipeline
    from sklearn.pipeline import Pipeline

    return Pipeline([(name, step) for name, step in pipeline.steps if name != "resample"])


def as_frame(rows: Any) -> pd.DataFrame:
    """A DataFrame from what users pass naturally: a frame, one record (dict) or records."""
    import pandas as pd

    if isinstance(rows, pd.DataFrame):
        return rows
    if isinstance(rows, dict):
        rows = [rows]
    if isinstance(rows, list | tuple) and rows and all(isinstance(r, dict) for r in rows):
        return pd.DataFrame(list(rows))
    raise SchemaError("a tabular model predicts a DataFrame, a dict (one row) or a list of "
                      f"dicts (rows); got {type(rows).__name__}")


def _plain(value: Any) -> Any:
    """numpy scalars and containers -> JSON-ready Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value
