"""What the tabular tasks share: a scikit-learn Pipeline (preprocessing + estimator), searched and
evaluated, on pandas or Dask; saved with skops and loaded with a fixed list of trusted types,
nothing is unpickled (:mod:`~zero2one.tasks.tabular.pipelines`). The two tasks are in
:mod:`~zero2one.tasks.tabular.classification` and :mod:`~zero2one.tasks.tabular.regression`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from zero2one import scale
from zero2one.convert import Conversion
from zero2one.data import Table, fingerprint, load_table
from zero2one.errors import ArtifactError, ConversionError, DataError, SchemaError
from zero2one.monitoring import reference as references
from zero2one.monitoring.reference import frame_reference
from zero2one.onnxrt import OnnxModel
from zero2one.progress import Reporter
from zero2one.scale.frames import read_pandas
from zero2one.task import PyfuncSchema, Searched, Task, check_options
from zero2one.tasks.tabular import flavor, onnx, report, scaled
from zero2one.tasks.tabular.columns import Column, coerce, infer_columns
from zero2one.tasks.tabular.config import TabularRecipe
from zero2one.tasks.tabular.data import TabularData, as_frame, plain
from zero2one.tasks.tabular.estimators import Kind, resolve_estimator
from zero2one.tasks.tabular.pipelines import (
    WEIGHTS,
    auc_scores,
    has_proba,
    is_graph,
    load_graph,
    load_pipeline,
    resampling,
    without_sampler,
)
from zero2one.tasks.tabular.profile import profile_frame
from zero2one.tasks.tabular.search import SearchResult, run_search
from zero2one.tasks.tabular.skops_io import skops_io

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

    from zero2one.serving.settings import ServeSettings

log = logging.getLogger(__name__)

SEARCH_TABLE = "search_results.csv"


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
                return resampling(preprocess, estimator_cls(**params), seed=self.config.seed)
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
        self.pipeline_ = without_sampler(self.search_.best_estimator)
        if data.partitions is not None:
            self._fit_partitions(data, reporter)
        self.reference_ = self._reference(data)
        return self

    def _reference(self, data: TabularData) -> dict[str, Any] | None:
        """What monitoring compares served rows with: the training rows' features, and the
        model's predictions on the held-out rows."""
        held_out = data.X_test if len(data.X_test) else data.X_train
        return frame_reference(
            data.X_train, numeric={c.name: c.kind == "numeric" for c in self.columns_},
            predictions=self.pipeline_.predict(self.features(held_out, allow_extra=True)),
            classifier=self.kind == "classification")

    def _search_backend(self, data: TabularData, reporter: Reporter) -> str | None:
        """``dask`` (joblib's Dask backend, folds spread over the cluster) when the data is on
        Dask, a scheduler was named, or the recipe asks; None: this process's joblib."""

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

        check_options(self, options, allowed=("allow_extra",))
        return self.predict(read_pandas(str(path)), allow_extra=bool(options.get("allow_extra")))

    def predict_rows(self, frame: pd.DataFrame, **options: Any) -> pd.DataFrame:
        return self.predict(frame, allow_extra=bool(options.get("allow_extra")))

    def check_row_options(self, options: dict[str, Any]) -> None:
        check_options(self, options, allowed=("allow_extra",))

    def pyfunc_schema(self) -> PyfuncSchema:
        return flavor.schema(self)

    def pyfunc_predict(self, frame: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
        return flavor.predict(self, frame, params)

    # ---- serving ----------------------------------------------------------------------------

    def serving_adapter(self, settings: ServeSettings, name: str) -> Any:
        from zero2one.tasks.tabular.serving import TabularAdapter

        return TabularAdapter(self, max_rows=settings.max_batch)

    @classmethod
    def routes(cls) -> list[Any]:
        from zero2one.serving.routes import predict
        from zero2one.tasks.tabular.serving import PredictRequest, PredictResponse

        return [*predict.predict_routes(
            content={"application/json": {"schema": PredictRequest.model_json_schema()}},
            summary="Predict one row, a batch, or named records", response_model=PredictResponse)]

    # ---- export -----------------------------------------------------------------------------

    @property
    def runtime(self) -> str:
        return "onnxruntime float32" if is_graph(self.pipeline_) else "scikit-learn"

    def export(self, fmt: str, data: TabularData, *, reporter: Reporter) -> Any:
        import copy
        import tempfile

        if is_graph(self.pipeline_):
            raise ConversionError("this model is already an ONNX graph; export the model it "
                                  "was made from")
        with reporter.step("converting to ONNX (skl2onnx)"):
            directory = Path(tempfile.mkdtemp(prefix="zero2one-onnx-"))
            path = onnx.convert(self.pipeline_, self.columns_, directory)
            graph = onnx.OnnxPipeline(
                OnnxModel(directory, path.name, owned=True), self.columns_,
                probabilities=self.kind == "classification" and has_proba(self.pipeline_),
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
        if is_graph(self.pipeline_):
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
        if (reference := getattr(self, "reference_", None)) is not None:
            references.write(path, reference)
        return {
            **fields,
            "input_schema": {"columns": [c.to_dict() for c in self.columns_],
                             "target": self.target_,
                             # accepted and ignored at prediction time (dropped, identifiers)
                             "ignored": self.ignored_},
            "baseline": plain(self.baseline_),
            "classes": plain(self.classes_),
            "class_names": self.class_names_,
            **({"positive_class": plain(self.positive_)}
               if getattr(self, "positive_", None) is not None else {}),
            "estimator": estimator,
            "best_params": plain(self.search_.best_params),
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
        pipeline = (load_graph(path, runtime, self.columns_, cls.kind) if runtime is not None
                    else load_pipeline(path, manifest, trust))
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
        self.reference_ = references.read(path, manifest)
        return self

    def search_report(self, out_dir: Path) -> list[Path]:
        """The search's table and plot, beside the task's own plots."""

        results = self.search_.results
        if results is None:
            return []
        table = out_dir / SEARCH_TABLE
        results.to_csv(table, index=False)
        return [table, report.plot_search(results, self.scoring, out_dir / "search_results.png")]
