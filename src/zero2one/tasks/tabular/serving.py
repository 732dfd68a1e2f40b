"""Request rows -> a tabular model's predictions, checked against its input schema.

Validation is plain Python per request (cheap); the DataFrame and the pipeline call happen once
per micro-batch in :meth:`TabularAdapter.predict`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.requests import Request

from zero2one.errors import SchemaError
from zero2one.serving.adapter import BaseAdapter
from zero2one.serving.errors import read_body
from zero2one.serving.schemas import ModelInfo
from zero2one.tasks.tabular.columns import categories
from zero2one.tasks.tabular.fastpath import compile_pipeline, known_values, probe_rows, verified

if TYPE_CHECKING:
    from zero2one.tasks.tabular.task import TabularTask


Value = float | int | str | bool | None


class PredictRequest(BaseModel):
    """Exactly one of ``features`` (one row), ``instances`` (rows) or ``records`` (named rows)."""

    model_config = ConfigDict(extra="forbid")

    features: list[Value] | None = Field(
        None, description="One row, values in the model's column order.",
        examples=[[5.1, 3.5, 1.4, 0.2]])
    instances: list[list[Value]] | None = Field(
        None, description="Several rows, each in the model's column order.")
    records: list[dict[str, Value]] | None = Field(
        None, description="Several rows as column name -> value.")
    probabilities: bool = Field(False, description="Also return class probabilities.")

    @model_validator(mode="after")
    def _one_form(self) -> PredictRequest:
        given = [n for n in ("features", "instances", "records") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("send exactly one of features, instances or records"
                             + (f" (got {', '.join(given)})" if given else ""))
        return self


class PredictResponse(BaseModel):
    result: list[Any] = Field(description="One prediction per row (a class or a number).")
    labels: list[str] | None = Field(None, description="Class names of the predictions.")
    probabilities: list[dict[str, float]] | None = Field(
        None, description="Per row, class name -> probability (when asked and available).")
    model: ModelInfo
    request_id: str | None = None


class TabularAdapter(BaseAdapter):
    def __init__(self, model: TabularTask, *, max_rows: int) -> None:
        self.model = model
        self.max_rows = max_rows
        self.names = [c.name for c in model.columns_]
        self.monitored_columns = self.names
        self.numeric = [c.kind == "numeric" for c in model.columns_]
        self.index = {name: i for i, name in enumerate(self.names)}
        # columns of the training data the model does not use: accepted in records, ignored
        self.ignored = frozenset([*model.ignored_, model.target_])
        self.classes = model.classes_
        self.class_names = (model.label_names() if hasattr(model, "label_names") else None)
        self.has_proba = self.classes is not None and hasattr(model.pipeline_, "predict_proba")
        if self.has_proba:
            try:  # SVC(probability=False) has the attribute but refuses the call
                model.pipeline_.predict_proba  # noqa: B018
            except AttributeError:
                self.has_proba = False
        # an exported model: the ONNX graph takes the validated rows as they are
        self.graph = model.pipeline_ if hasattr(model.pipeline_, "run_rows") else None
        self.estimator = None if self.graph else model.pipeline_.steps[-1][1]
        self.fast = None if self.graph else self._compile()

    def _compile(self) -> Any:
        """The NumPy fast path for the preprocessing, if it reproduces scikit-learn's."""

        pipeline = self.model.pipeline_
        transform = compile_pipeline(pipeline, self.names, self.numeric)
        if transform is None:
            return None
        probe = probe_rows(pipeline, self.names, self.numeric)
        return transform if verified(pipeline, transform, probe, self.names) else None

    def schema(self) -> list[dict[str, str]]:
        return [c.to_dict() for c in self.model.columns_]

    def playground(self) -> dict[str, Any]:
        """A form with a field per column, filled with typical values (the imputer's), and the
        categories the model knows offered as choices."""

        known = {} if self.graph is not None else known_values(self.model.pipeline_)
        fields = [{"name": name, "label": readable(name), "type": "number" if numeric else "text",
                   **known.get(name, {})}
                  for name, numeric in zip(self.names, self.numeric, strict=True)]
        return {"kind": "form", "route": "/predict", "fields": fields,
                "probabilities": self.has_proba,
                "target": self.model.target_, "regression": self.classes is None}

    async def parse(self, request: Request) -> tuple[list[list[Any]], dict[str, Any]]:
        """The request's rows and options. The body is parsed here rather than by FastAPI:
        orjson refuses NaN and Infinity, and rows are checked without a second pass."""
        body = await read_body(request, PredictRequest)
        return self.rows(body), {"probabilities": body.probabilities}

    def rows(self, body: PredictRequest) -> list[list[Any]]:
        """The request's rows in column order, each value checked against its column."""
        if body.probabilities and not self.has_proba:
            raise SchemaError("this model gives no probabilities" + (
                " (its estimator has no predict_proba)" if self.classes is not None
                else " (it is a regression model)"))
        if body.features is not None:
            rows = [body.features]
        elif body.instances is not None:
            rows = body.instances
        else:
            rows = [self._from_record(i, r) for i, r in enumerate(body.records or [])]
        if not rows:
            raise SchemaError("empty batch: send at least one row")
        if len(rows) > self.max_rows:
            raise SchemaError(f"batch of {len(rows)} rows is over the maximum of {self.max_rows}")
        width = len(self.names)
        for i, row in enumerate(rows):
            if len(row) != width:
                where = "" if body.features is not None else f"row {i}: "
                raise SchemaError(f"{where}expected {width} features "
                                  f"({', '.join(self.names)}), got {len(row)}")
            for j, value in enumerate(row):
                if value is None:
                    continue
                if self.numeric[j]:
                    if isinstance(value, bool) or not isinstance(value, int | float):
                        raise SchemaError(f"{self._where(body, i)}{self.names[j]!r} must be a "
                                          f"number, got {value!r}")
                    if not math.isfinite(value):
                        raise SchemaError(f"{self._where(body, i)}{self.names[j]!r} must be "
                                          "finite")
                elif not isinstance(value, str):
                    row[j] = str(value)
        return rows

    @staticmethod
    def _where(body: PredictRequest, i: int) -> str:
        return "" if body.features is not None else f"row {i}: "

    def _from_record(self, i: int, record: dict[str, Any]) -> list[Any]:
        missing = [n for n in self.names if n not in record]
        if missing:
            raise SchemaError(f"row {i}: missing column(s) {', '.join(missing)}")
        extra = [k for k in record if k not in self.index and k not in self.ignored]
        if extra:
            raise SchemaError(f"row {i}: unexpected column(s) {', '.join(extra)}; the model takes "
                              f"{', '.join(self.names)}")
        return [record[n] for n in self.names]

    def predict(self, rows: list[list[Any]]) -> list[tuple[Any, list[float] | None]]:
        """One (prediction, probabilities or None) per row; runs in the batcher's thread."""
        import numpy as np

        if self.graph is not None:
            return self.graph.run_rows(rows)  # type: ignore[no-any-return]
        if self.fast is not None:
            import sklearn

            features = self.fast(np.asarray(rows, dtype=object))
            if not np.isfinite(features).all():  # only a model without an imputer gets here
                raise ValueError("a value is missing and this model has no imputer")
            # inputs are checked above, so scikit-learn's own per-call checks (a third of the
            # call at these batch sizes) are skipped
            estimator: Any = self.estimator
            with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
                predictions = estimator.predict(features)
                if self.has_proba:
                    proba = np.asarray(estimator.predict_proba(features)).tolist()
                    return list(zip(predictions.tolist(), proba, strict=True))
            return [(p, None) for p in predictions.tolist()]

        import pandas as pd

        frame = pd.DataFrame(rows, columns=self.names)
        for name, numeric in zip(self.names, self.numeric, strict=True):
            frame[name] = frame[name].astype("float64") if numeric else categories(frame[name])
        pipeline = self.model.pipeline_
        predictions = pipeline.predict(frame)
        if self.has_proba:
            proba = np.asarray(pipeline.predict_proba(frame)).tolist()
            return list(zip(predictions.tolist(), proba, strict=True))
        return [(p, None) for p in predictions.tolist()]

    def response(self, results: list[tuple[Any, list[float] | None]],
                 options: dict[str, Any]) -> dict[str, Any]:
        values = [r[0] for r in results]
        body: dict[str, Any] = {"result": values}
        if self.classes is not None:
            names = self.class_names or [str(c) for c in self.classes]
            position = {c: i for i, c in enumerate(self.classes)}
            body["labels"] = [names[position[v]] if v in position else str(v) for v in values]
            if options["probabilities"]:
                body["probabilities"] = [dict(zip(names, p or [], strict=True))
                                         for _, p in results]
        return body


def readable(column: str) -> str:
    """A column name as a form label: ``monthly_charges`` / ``monthlyCharges`` -> "Monthly
    charges"; names that already read as words ("sepal length (cm)") keep their case."""
    import re

    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", column)  # camelCase
    words = re.sub(r"[_\s]+", " ", words).strip()
    if not words:
        return column
    if words != column:
        words = words.lower()
    return words[0].upper() + words[1:]
