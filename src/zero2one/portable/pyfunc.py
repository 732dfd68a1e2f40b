"""The ``mlflow.pyfunc.PythonModel`` that :data:`~zero2one.portable.mlmodel.CODE_FILE` hands
MLflow: it loads the zero2one directory beside the file (the manifest's digest checked against
the MLmodel's, then every file against the manifest, as ``zero2one.load`` does) and predicts
through the task's :meth:`~zero2one.task.MLflowModel.pyfunc_predict`. Imported only by MLflow's
loading of a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from mlflow.pyfunc import PythonModel

from zero2one.artifacts import manifest_digest
from zero2one.errors import IntegrityError
from zero2one.portable.mlmodel import FLAVOR, MLMODEL
from zero2one.refs import load
from zero2one.task import Task


class ZeroOneModel(PythonModel):  # type: ignore[misc]
    """A zero2one model directory as an MLflow python_function model."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.task: Task | None = None

    def load_context(self, context: Any) -> None:
        flavor = (yaml.safe_load((self.directory / MLMODEL).read_text()) or {}).get(
            "flavors", {}).get(FLAVOR, {})
        expected, actual = flavor.get("manifest_sha256"), manifest_digest(self.directory)
        if expected != actual:
            raise IntegrityError(
                f"{self.directory}: manifest.json has sha256 {actual[:12]}…, not the "
                f"{str(expected)[:12]}… its MLmodel was written for; refusing to load it")
        self.task = load(str(self.directory))  # every file checked against the manifest

    # no annotations: MLflow reads a predict's type hints as a schema of its own
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        if self.task is None:
            self.load_context(context)
        assert self.task is not None
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(
            model_input)
        return self.task.pyfunc_predict(frame, dict(params or {}))
