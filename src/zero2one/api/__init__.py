"""The Python API; the CLI is a thin layer over these functions.

    >>> import zero2one
    >>> result = zero2one.train("recipes/iris-svc.yaml", overrides=["search.cv=3"])
    >>> model = zero2one.load("models:/iris-svc@champion")
    >>> scored = model.predict(frame)

By concern: :mod:`~zero2one.api.training` (a recipe to a tracked, registered model),
:mod:`~zero2one.api.saving` (the model directory and the run's lineage),
:mod:`~zero2one.api.result` (what training returns), :mod:`~zero2one.api.files` (scoring files
and tables larger than memory); :func:`load` is :func:`zero2one.refs.load`.
"""

from zero2one.api.files import check_output_path, predict_file, predict_partitions, write_frame
from zero2one.api.result import TrainResult, registered_uri
from zero2one.api.saving import save_model_dir
from zero2one.api.training import task_data, train
from zero2one.refs import load

__all__ = [
    "TrainResult", "check_output_path", "load", "predict_file", "predict_partitions",
    "registered_uri", "save_model_dir", "task_data", "train", "write_frame",
]
