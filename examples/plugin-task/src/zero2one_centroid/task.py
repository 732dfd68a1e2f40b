"""``nearest-centroid``: each class is the mean of its training rows; a row belongs to the
nearest mean. Weights are a JSON file (nothing to unpickle)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from zero2one.errors import DataError, SchemaError
from zero2one.progress import Reporter
from zero2one.recipe import BaseRecipe, Strict
from zero2one.task import PyfuncSchema, Task, pyfunc_columns

WEIGHTS = "centroids.json"


@dataclass
class Split:
    """What load_data() returns: the rows split for fit and evaluate, and — as every task's
    data carries them (zero2one.task.TaskData) — their source and fingerprint, which each run
    and model records."""

    features: list[str]
    x: Any
    y: Any
    x_test: Any
    y_test: Any
    source: str
    fingerprint: dict[str, Any]


class CentroidData(Strict):
    source: str = Field(description="sklearn:NAME, a .csv or a .parquet file.")
    target: str = Field("target", description="The column holding the class.")
    test_size: float = Field(0.3, gt=0, lt=1, description="Share held out for evaluation.")


class CentroidModel(Strict):
    metric: Literal["euclidean", "manhattan"] = Field("euclidean", description="Distance.")


class CentroidRecipe(BaseRecipe):
    task: Literal["nearest-centroid"] = Field(description="nearest-centroid.")
    data: CentroidData
    model: CentroidModel = Field(default_factory=CentroidModel)


class Rows(BaseModel):
    """The body of ``POST /predict``: numeric rows in the model's column order."""

    model_config = ConfigDict(extra="forbid")
    rows: list[list[float]] = Field(min_length=1, max_length=10_000)


class NearestCentroid(Task):
    """``predict`` takes a DataFrame with the feature columns and returns class names."""

    name = "nearest-centroid"
    config_model: ClassVar[type[CentroidRecipe]] = CentroidRecipe
    config: CentroidRecipe
    extra = "tabular"
    requires = ("numpy", "pandas")
    serve_requirements = ("numpy",)

    def load_data(self) -> Split:
        import numpy as np

        from zero2one.data import fingerprint, load_table

        table = load_table(self.config.data.source)
        frame = table.frame
        target = self.config.data.target
        if target not in frame.columns:
            raise DataError(f"{table.source}: no column {target!r}")
        features = [str(c) for c in frame.columns if c != target]
        x = frame[features].to_numpy(dtype=float)
        names = table.class_names
        y = np.asarray([names[int(v)] if names else str(v) for v in frame[target]])
        order = np.random.default_rng(self.config.seed).permutation(len(x))
        cut = int(len(x) * (1 - self.config.data.test_size))
        return Split(features, x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]],
                     table.source, fingerprint(frame))

    def fit(self, data: Split, *, reporter: Reporter) -> Self:
        import numpy as np

        self.features_ = list(data.features)
        self.classes_ = sorted(set(data.y.tolist()))
        self.centroids_ = np.stack([data.x[data.y == c].mean(axis=0)
                                    for c in self.classes_])
        return self

    def _nearest(self, x: Any) -> list[str]:
        import numpy as np

        diff = x[:, None, :] - self.centroids_[None, :, :]
        distance = (np.abs(diff).sum(-1) if self.config.model.metric == "manhattan"
                    else np.sqrt((diff ** 2).sum(-1)))
        return [self.classes_[i] for i in distance.argmin(1)]

    def evaluate(self, data: Split) -> dict[str, float]:
        predicted = self._nearest(data.x_test)
        return {"accuracy": float((data.y_test == predicted).mean())}

    def predict(self, frame: Any) -> list[str]:
        import numpy as np

        missing = [c for c in self.features_ if c not in frame.columns]
        if missing:
            raise SchemaError(f"missing column(s) {', '.join(missing)}")
        return self._nearest(np.asarray(frame[self.features_], dtype=float))

    def pyfunc_schema(self) -> PyfuncSchema:
        """As an MLflow model (every zero2one model is one): the feature columns in, the
        nearest class out; the example row is the first class's centroid."""
        import pandas as pd

        example = {name: [float(v)] for name, v in zip(self.features_, self.centroids_[0],
                                                        strict=True)}
        predicted = self.pyfunc_predict(pd.DataFrame(example), {})
        return PyfuncSchema(inputs=[(name, "double") for name in self.features_],
                            outputs=pyfunc_columns(predicted), example=example)

    def predict_file(self, path: Path, **options: Any) -> Any:
        from zero2one.data import read_frame
        from zero2one.task import check_options

        check_options(self, options, allowed=())
        frame = read_frame(Path(path))
        return frame.assign(prediction=self.predict(frame))

    def save(self, path: Path) -> dict[str, Any]:
        (path / WEIGHTS).write_text(json.dumps({
            "features": self.features_, "classes": self.classes_,
            "centroids": self.centroids_.tolist()}))
        return {"classes": self.classes_, "libraries": ["numpy"]}

    @classmethod
    def load(cls, path: Path, manifest: dict[str, Any], *, trust: tuple[str, ...] = ()) -> Self:
        import numpy as np

        self = cls(cls.recipe_from(manifest, path))
        weights = json.loads((path / WEIGHTS).read_text())
        self.features_, self.classes_ = weights["features"], weights["classes"]
        self.centroids_ = np.asarray(weights["centroids"], dtype=float)
        return self

    def serving_adapter(self, settings: Any, name: str) -> Any:
        from zero2one_centroid.serving import CentroidAdapter

        return CentroidAdapter(self)

    @classmethod
    def routes(cls) -> list[Any]:
        from zero2one.serving.routes import predict
        from zero2one_centroid.serving import router

        return [router, *predict.predict_routes(
            content={"application/json": {"schema": Rows.model_json_schema()}},
            summary="The nearest class of each row")]
