"""The fitted scikit-learn pipeline's pieces outside the task: resampling, scores, and loading
a saved pipeline — skops with a fixed list of trusted types (nothing is unpickled) or an ONNX
graph."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from zero2one.errors import ArtifactError, require
from zero2one.onnxrt import OnnxModel
from zero2one.tasks.tabular.columns import Column
from zero2one.tasks.tabular.onnx import OnnxPipeline  # skl2onnx: the onnx extra
from zero2one.tasks.tabular.skops_io import skops_io

if TYPE_CHECKING:
    import numpy as np

WEIGHTS = "model.skops"
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


def is_graph(pipeline: Any) -> bool:
    return hasattr(pipeline, "graph")


def has_proba(pipeline: Any) -> bool:
    try:  # SVC(probability=False) has the attribute but refuses the call
        pipeline.predict_proba  # noqa: B018
    except AttributeError:
        return False
    return True


def load_graph(path: Path, runtime: dict[str, Any], columns: list[Column], kind: str) -> Any:
    if runtime.get("engine") != "onnxruntime":
        raise ArtifactError(f"{path}: unknown runtime {runtime.get('engine')!r}")
    require("onnxruntime", "onnx")
    return OnnxPipeline(OnnxModel(path, str(runtime["file"])), columns,
                        probabilities=bool(runtime.get("probabilities")),
                        classification=kind == "classification")


def load_pipeline(path: Path, manifest: dict[str, Any], trust: tuple[str, ...]) -> Any:
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


def resampling(preprocess: Any, estimator: Any, *, seed: int) -> Any:
    """preprocess -> random oversampling of the minority classes -> estimator, as an
    imbalanced-learn pipeline: the sampler runs on each training fold only, never on the rows a
    fold is scored on, nor at prediction time."""
    require("imblearn", "tabular")
    from imblearn.over_sampling import RandomOverSampler
    from imblearn.pipeline import Pipeline as SamplingPipeline

    return SamplingPipeline([("preprocess", preprocess),
                             ("resample", RandomOverSampler(random_state=seed)),
                             ("model", estimator)])


def without_sampler(pipeline: Any) -> Any:
    """The fitted pipeline without its sampler (it acts only while fitting), as a plain
    scikit-learn Pipeline: saved, loaded and served like any other."""
    if "resample" not in getattr(pipeline, "named_steps", {}):
        return pipeline
    from sklearn.pipeline import Pipeline

    return Pipeline([(name, step) for name, step in pipeline.steps if name != "resample"])
