"""zero2one: from data to a served, monitored model, in one tool.

    >>> import zero2one
    >>> result = zero2one.train("recipes/iris-svc.yaml")
    >>> zero2one.load(result.model_uri).predict(frame)
    >>> zero2one.compress("models:/digits-cnn/1", "static").registered_uri

Heavy libraries load on first use, so importing zero2one is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zero2one.version import __version__

__all__ = [
    "ArtifactError",
    "CompressOptions",
    "ConversionError",
    "DataError",
    "IntegrityError",
    "ModelRefError",
    "RecipeError",
    "SchemaError",
    "TrainResult",
    "UserError",
    "Zero2OneError",
    "__version__",
    "add_data",
    "compress",
    "diff_runs",
    "export",
    "load",
    "load_recipe",
    "predict_file",
    "predict_partitions",
    "register_task",
    "reproduce",
    "train",
]

from zero2one.catalog import load_recipe, register_task
from zero2one.errors import (
    ArtifactError,
    ConversionError,
    DataError,
    IntegrityError,
    ModelRefError,
    RecipeError,
    SchemaError,
    UserError,
    Zero2OneError,
)

if TYPE_CHECKING:
    from zero2one.api import TrainResult, load, predict_file, predict_partitions, train
    from zero2one.convert import CompressOptions, compress, export
    from zero2one.lineage import diff as diff_runs
    from zero2one.lineage import reproduce
    from zero2one.versions import add as add_data


def __getattr__(name: str) -> Any:
    if name in {"TrainResult", "load", "predict_file", "predict_partitions", "train"}:
        from zero2one import api

        return getattr(api, name)
    if name in {"CompressOptions", "compress", "export"}:
        from zero2one import convert

        return getattr(convert, name)
    if name in {"reproduce", "diff_runs"}:
        from zero2one import lineage

        return getattr(lineage, {"diff_runs": "diff"}.get(name, name))
    if name == "add_data":
        from zero2one.versions import add

        return add
    raise AttributeError(f"module 'zero2one' has no attribute {name!r}")
