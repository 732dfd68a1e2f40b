"""The image-classification task: a CNN trained with PyTorch, saved as safetensors + manifest."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from zero2one import distributed
from zero2one.convert import Conversion
from zero2one.errors import ArtifactError, DataError, RecipeError, SchemaError, UserError, require
from zero2one.metrics import classification_metrics
from zero2one.monitoring import reference as references
from zero2one.monitoring.reference import (
    embedding_reference,
    frame_reference,
    log_probabilities,
)
from zero2one.onnxrt import OnnxModel
from zero2one.plots import plot_confusion_matrix
from zero2one.progress import Reporter
from zero2one.task import PyfuncSchema, Task, check_options
from zero2one.tasks.vision import flavor
from zero2one.tasks.vision.config import ImageRecipe
from zero2one.tasks.vision.data import load_images, open_image, split, to_array
from zero2one.tasks.vision.predict import predict_images
from zero2one.tasks.vision.report import plot_learning_curves, plot_misclassified

if TYPE_CHECKING:
    import pandas as pd

    from zero2one.serving.settings import ServeSettings

log = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"


@dataclass
class VisionData:
    splits: dict[str, tuple[Any, Any]]  # name -> (x float (N, C, S, S) normalised, y long)
    raw_test: np.ndarray  # (N, S, S, C) uint8, for the misclassified grid
    class_names: list[str]
    image_size: int
    channels: int
    mean: list[float]
    std: list[float]
    fingerprint: dict[str, Any]
    source: str
    skipped: int


def normalise(x: np.ndarray, mean: list[float], std: list[float]) -> Any:
    """uint8 (N, S, S, C) -> float32 tensor (N, C, S, S), standardised per channel."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float().div_(255)
    return (t - torch.tensor(mean)[None, :, None, None]) / torch.tensor(std)[None, :, None, None]


class ImageClassification(Task):
    """``predict`` takes images — a path, bytes or a PIL image, or a list of them — and returns
    the top-k classes of each (``[{"label", "index", "probability"}, ...]`` per image)."""

    name = "image-classification"
    pipeline_tag = "image-classification"
    config_model: ClassVar[type[ImageRecipe]] = ImageRecipe
    config: ImageRecipe
    extra = "vision"
    requires = ("torch", "safetensors", "PIL")
    serve_requirements = ("numpy", "pillow", "safetensors", "python-multipart")
    needs_torch = True
    # a same-seed retrain is identical on one machine; float kernels differ between CPUs
    reproduce_tolerance = 0.01
    data_parallel = True
    export_formats = ("onnx",)
    compress_methods = ("static", "qat", "dynamic")
    net_: Any  # a torch module, or an ONNX graph called like one (see .compress.OnnxNet)
    training_: dict[str, Any]  # {"history": per-epoch metrics, "best_epoch": n}, fit or loaded

    # ---- data -------------------------------------------------------------------------------

    def load_data(self) -> VisionData:
        import torch

        images = load_images(self.config.data)
        if images.skipped:
            log.warning("skipped %d unreadable or unsupported file(s)", len(images.skipped))
        parts = split(images, self.config.data, self.config.seed)
        x_train = parts["train"][0].astype(np.float64) / 255
        mean = x_train.mean(axis=(0, 1, 2)).tolist()
        std = [max(s, 1e-3) for s in x_train.std(axis=(0, 1, 2)).tolist()]
        splits = {name: (normalise(x, mean, std), torch.from_numpy(y))
                  for name, (x, y) in parts.items()}
        digest = hashlib.sha256(images.x.tobytes())
        digest.update(images.y.tobytes())
        return VisionData(
            splits=splits, raw_test=parts["test"][0], class_names=images.class_names,
            image_size=int(images.x.shape[1]), channels=int(images.x.shape[3]), mean=mean,
            std=std, source=images.source, skipped=len(images.skipped),
            fingerprint={"sha256": digest.hexdigest(), "rows": len(images.x),
                         "shape": list(images.x.shape), "classes": len(images.class_names)},
        )

    # ---- training ---------------------------------------------------------------------------

    @classmethod
    def check_data_parallel(cls, config: Any, world: int) -> None:
        from zero2one.tasks.vision.models import is_keras

        if is_keras(config.model.arch):
            raise RecipeError("Keras models train in one process; leave out --nproc")
        if config.train.batch_size < world:
            raise RecipeError(f"{world} processes cannot share batches of train.batch_size="
                              f"{config.train.batch_size}: use at most "
                              f"{config.train.batch_size} processes or a larger batch")

    def fit(self, data: VisionData, *, reporter: Reporter) -> Self:
        import torch

        from zero2one.tasks.vision import models, train

        torch.manual_seed(self.config.seed)  # the initial weights are part of the seeded run
        try:
            net = models.build(self.config.model.arch, in_channels=data.channels,
                               num_classes=len(data.class_names), image_size=data.image_size,
                               params=self.config.model.params)
        except ValueError as exc:
            raise RecipeError(str(exc)) from None
        try:
            with torch.no_grad():  # fail now, with a clear message, on a shape mismatch
                net.eval()(data.splits["train"][0][:2])
        except RuntimeError as exc:
            raise DataError(f"model.arch {self.config.model.arch!r} does not fit "
                            f"{data.channels}×{data.image_size}×{data.image_size} images: "
                            f"{str(exc).splitlines()[0]}") from None
        directory = self.checkpoint_dir()
        directory.mkdir(parents=True, exist_ok=True)
        self.mark_run(directory)
        outcome = train.fit(net, data.splits, self.config.train, seed=self.config.seed,
                            reporter=reporter, checkpoint_dir=directory, resume=self.resume)
        net.load_state_dict(outcome.best_state)
        self.net_ = net.cpu().eval()
        self.outcome_ = outcome
        self.class_names_ = data.class_names
        self.image_size_ = data.image_size
        self.channels_ = data.channels
        self.mean_, self.std_ = data.mean, data.std
        self.skipped_ = data.skipped
        self.training_ = {"history": outcome.history, "best_epoch": outcome.best_epoch,
                          "processes": distributed.world_size()}
        self.clear_checkpoints(directory)  # done: nothing left to resume
        # what monitoring compares served answers with: the classes on the test images, and
        # their log class probabilities (the classifier's own view of its inputs)
        proba = self._logits(normalise(data.raw_test, self.mean_, self.std_)).softmax(1)
        self.reference_: dict[str, Any] | None = {
            **frame_reference(None, numeric={}, predictions=proba.argmax(1).tolist()),
            "embedding": embedding_reference(log_probabilities(proba.numpy()),
                                             kind="log class probabilities",
                                             seed=self.config.seed)}
        return self

    # ---- evaluation and report --------------------------------------------------------------

    def _logits(self, x: Any) -> Any:
        import torch

        with torch.no_grad():
            return torch.cat([self.net_(x[i: i + 512]) for i in range(0, len(x), 512)])

    def _test_set(self, data: VisionData) -> tuple[Any, Any]:
        """The test images normalised with this model's statistics (a loaded model's may
        differ from the data's), and their labels."""
        if list(data.class_names) != list(self.class_names_):
            raise DataError(f"the data's classes ({', '.join(data.class_names)}) are not the "
                            f"model's ({', '.join(self.class_names_)})")
        return normalise(data.raw_test, self.mean_, self.std_), data.splits["test"][1]

    def evaluate(self, data: VisionData) -> dict[str, float]:
        x, y = self._test_set(data)
        proba = self._logits(x).softmax(1).numpy()
        metrics = classification_metrics(y.numpy(), proba.argmax(1), proba,
                                          list(range(len(self.class_names_))))
        history, best_epoch = self.training_["history"], self.training_["best_epoch"]
        if history:
            best = history[best_epoch - 1]
            metrics.update({"val_accuracy": best["val_accuracy"], "val_loss": best["val_loss"],
                            "best_epoch": float(best_epoch), "epochs": float(len(history))})
        return metrics

    def report(self, data: VisionData, out_dir: Path) -> list[Path]:
        x, y = self._test_set(data)
        predicted = self._logits(x).argmax(1).numpy()
        labels = list(range(len(self.class_names_)))
        paths = [
            plot_learning_curves(self.training_["history"], out_dir / "learning_curves.png"),
            plot_confusion_matrix(y.numpy(), predicted, labels, self.class_names_,
                                  out_dir / "confusion_matrix.png"),
        ]
        grid = plot_misclassified(data.raw_test, y.numpy(), predicted, self.class_names_,
                                  out_dir / "misclassified.png")
        return paths + ([grid] if grid else [])

    # ---- export and compression -------------------------------------------------------------

    @property
    def runtime(self) -> str:
        return getattr(self.net_, "runtime", "torch eager float32")

    def _inputs(self, data: VisionData, split: str) -> tuple[Any, Any]:
        """A split's images normalised with this model's statistics, and its labels."""
        import torch

        x, y = data.splits[split]
        if (data.mean, data.std) != (self.mean_, self.std_):
            shape = (1, -1, 1, 1)
            raw = x * torch.tensor(data.std).view(shape) + torch.tensor(data.mean).view(shape)
            x = (raw - torch.tensor(self.mean_).view(shape)) / torch.tensor(self.std_).view(shape)
        return x, y

    def _check_shape(self, data: VisionData) -> None:
        self._test_set(data)  # the same classes
        if (data.channels, data.image_size) != (self.channels_, self.image_size_):
            raise DataError(f"the data's images are {data.channels}×{data.image_size}×"
                            f"{data.image_size}; the model takes {self.channels_}×"
                            f"{self.image_size_}×{self.image_size_}")

    def _with_net(self, net: Any) -> Self:
        """A copy of this model that computes with ``net`` (an ONNX graph, a new network)."""
        import copy

        new = copy.copy(self)
        new.net_, new.ref, new.manifest = net, None, {}
        return new

    def export(self, fmt: str, data: VisionData, *, reporter: Reporter) -> Any:
        import tempfile

        from zero2one.tasks.vision.compress import OnnxNet, check_agreement, export_graph

        self._check_shape(data)
        x, _ = self._test_set(data)
        with reporter.step("exporting to ONNX"):
            directory = Path(tempfile.mkdtemp(prefix="zero2one-onnx-"))
            graph = OnnxModel(directory, export_graph(self._torch_net(), x[:8],
                                                      directory).name, owned=True)
        new = self._with_net(OnnxNet(graph, precision="float32", method="export"))
        details = check_agreement(self._logits(x), new._logits(x), what="the ONNX graph")
        return Conversion(new, "onnx", details)

    def compress(self, method: str, data: VisionData, *, options: Any,
                 reporter: Reporter) -> Any:
        import tempfile

        from zero2one.tasks.vision import compress

        self._check_shape(data)
        x_test, _ = self._test_set(data)
        shape = (self.channels_, self.image_size_, self.image_size_)
        calibration = None
        if method != "dynamic":
            calibration = compress.calibration_images(
                self._inputs(data, "train")[0], options.calibration, shape=shape,
                seed=self.config.seed)
        elif options.calibration is not None:
            raise DataError("--calibration applies to --method static and qat")
        if options.epochs is not None and method != "qat":
            raise DataError("--epochs applies to --method qat")
        details: dict[str, Any] = {}
        net, history = self._torch_net(), None
        if method == "qat":
            splits = {name: self._inputs(data, name) for name in ("train", "val")}
            epochs = options.epochs or compress.DEFAULT_QAT_EPOCHS
            net, history = compress.quantization_aware(
                net, splits, self.config.train, epochs=epochs, seed=self.config.seed,
                reporter=reporter)
            details["qat_epochs"] = epochs
        fp32 = self.export("onnx", data, reporter=reporter).model
        with reporter.step(f"quantizing ({method})"):
            directory = Path(tempfile.mkdtemp(prefix="zero2one-onnx-"))
            source = fp32.net_.graph.directory / fp32.net_.graph.main
            if history is not None:  # the fine-tuned network, exported
                source = compress.export_graph(net, x_test[:8], directory)
            path = compress.quantize(source, directory, method, calibration)
            graph = OnnxModel(directory, path.name, owned=True)
        new = self._with_net(compress.OnnxNet(graph, precision="int8", method=method))
        if history is not None:
            new.training_ = {**self.training_, "qat_history": history}
        # the INT8 graph against the float32 network it was quantized from (for qat: the
        # fine-tuned one, whose labels may rightly differ from the parent's)
        reference = self._with_net(net)._logits(x_test) if history else fp32._logits(x_test)
        chosen = options.min_agreement
        advice = ("; train the network longer, try --method qat"
                  + (", or accept it with --min-agreement" if chosen is None else "")
                  if method != "qat" else "; train longer or lower --min-agreement")
        details.update(compress.check_agreement(
            reference, new._logits(x_test), what=f"the INT8 graph ({method})", atol=None,
            min_agreement=compress.MIN_AGREEMENT if chosen is None else chosen,
            margin=compress.DECIDED, advice=advice))
        if calibration is not None:
            details["calibration_images"] = len(calibration)
        return Conversion(new, method, details, baselines=[fp32])

    def _torch_net(self) -> Any:
        from torch import nn

        from zero2one.tasks.vision.models import KerasNet

        if isinstance(self.net_, KerasNet):
            raise UserError("Keras models are not exported or compressed yet; train the "
                            "network as a PyTorch module (model.arch) to use ONNX and INT8")
        if not isinstance(self.net_, nn.Module):
            raise DataError(f"this model already runs in {self.runtime}; export or compress "
                            "the model it was made from")
        return self.net_

    def bench_call(self, data: VisionData, batch_size: int) -> Any:
        import torch

        x, _ = self._test_set(data)
        x = x.repeat(-(-batch_size // len(x)), 1, 1, 1)[:batch_size].contiguous()
        net = self.net_

        def call() -> Any:
            with torch.inference_mode():
                return net(x)
        return call

    # ---- prediction -------------------------------------------------------------------------

    def prepare(self, images: list[Any]) -> Any:
        """PIL images -> normalised tensor (N, C, S, S), resized and converted as in training."""

        arrays = np.stack([to_array(im, self.image_size_, self.channels_) for im in images])
        return normalise(arrays, self.mean_, self.std_)

    def probabilities(self, x: Any) -> np.ndarray:
        return self._logits(x).softmax(1).numpy()

    def top_k(self, proba: np.ndarray, k: int) -> list[list[dict[str, Any]]]:
        k = max(1, min(k, proba.shape[1]))
        order = np.argsort(-proba, axis=1)[:, :k]
        return [[{"label": self.class_names_[j], "index": int(j), "probability": float(p[j])}
                 for j in row] for row, p in zip(order, proba, strict=True)]

    def predict(self, images: Any, *, top_k: int = 3) -> list[list[dict[str, Any]]]:
        """Top-k classes for each image: paths, bytes or PIL images (one, or a list)."""

        if isinstance(images, str | Path | bytes) or hasattr(images, "getbands"):
            images = [images]  # one image
        if not isinstance(images, list | tuple):
            raise SchemaError("an image model predicts a path, bytes or a PIL image, or a list "
                              f"of them; got {type(images).__name__}")
        decoded = [open_image(item) for item in images]
        if not decoded:
            raise SchemaError("no images to predict")
        return self.top_k(self.probabilities(self.prepare(decoded)), top_k)

    def predict_file(self, path: Path, **options: Any) -> Any:
        """An image, or every image under a folder: one row per file with the top class, its
        probability and the top-k as JSON. Unreadable files get an ``error`` and the rest are
        still scored."""

        check_options(self, options, allowed=("top_k", "skip_bad"))
        return predict_images(self, path, top_k=options.get("top_k") or 3,
                              skip_bad=bool(options.get("skip_bad")),
                              reporter=options.get("reporter"))

    # ---- serving ----------------------------------------------------------------------------

    def pyfunc_schema(self) -> PyfuncSchema:
        return flavor.schema(self)

    def pyfunc_predict(self, frame: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
        return flavor.predict(self, frame, params)

    def serving_adapter(self, settings: ServeSettings, name: str) -> Any:
        from zero2one.tasks.vision.serving import ImageAdapter

        return ImageAdapter(self, max_rows=settings.max_batch,
                            max_pixels=settings.max_image_pixels,
                            max_image_bytes=settings.image_bytes)

    @classmethod
    def routes(cls) -> list[Any]:
        from zero2one.serving.routes import predict
        from zero2one.tasks.vision.serving import ImagePredictRequest

        content: dict[str, Any] = {
            "application/json": {"schema": ImagePredictRequest.model_json_schema()},
            "multipart/form-data": {"schema": {"type": "object", "properties": {
                "file": {"type": "string", "format": "binary"},
                "top_k": {"type": "integer", "minimum": 1}}, "required": ["file"]}},
        }
        return [*predict.predict_routes(
            content=content, summary="Top-k classes of one or more images")]

    # ---- persistence ------------------------------------------------------------------------

    def save(self, path: Path) -> dict[str, Any]:
        from zero2one.tasks.vision import models

        fields: dict[str, Any] = {}
        if hasattr(self.net_, "graph"):  # an ONNX graph
            files = self.net_.graph.save(path)
            fields["runtime"] = {"engine": "onnxruntime", "file": files[0],
                                 "precision": self.net_.precision, "method": self.net_.method}
        elif isinstance(self.net_, models.KerasNet):  # Keras' own format, loaded in safe mode
            self.net_.model.save(path / models.KERAS_FILE)
        else:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in self.net_.state_dict().items()},
                      path / WEIGHTS)
        if (reference := getattr(self, "reference_", None)) is not None:
            references.write(path, reference)
        saved = (getattr(self, "manifest", None) or {}).get("training") or {}
        outcome = getattr(self, "outcome_", None)
        return {
            **fields,
            "arch": self.config.model.arch,
            "arch_params": self.config.model.params,
            "class_names": self.class_names_,
            "classes": list(range(len(self.class_names_))),
            "input": {"image_size": self.image_size_, "channels": self.channels_,
                      "mean": self.mean_, "std": self.std_, "layout": "NCHW, RGB or L, 0-1"},
            "training": {**saved, **self.training_, **({
                "resumed_from": outcome.resumed_from, "stopped_early": outcome.stopped_early,
                "skipped_files": getattr(self, "skipped_", 0)} if outcome else {})},
            "libraries": ["torch", "safetensors", "numpy", "pillow",
                          *(["onnxruntime", "onnx"] if fields else []),
                          *(["keras"] if models.is_keras(self.config.model.arch) else [])],
        }

    @classmethod
    def deploy_requirements(cls, manifest: dict[str, Any]) -> list[str]:
        from zero2one.tasks.vision.models import is_keras

        keras = ["keras"] if is_keras(str(manifest.get("arch", ""))) else []
        return [*super().deploy_requirements(manifest), *keras]

    @classmethod
    def load(cls, path: Path, manifest: dict[str, Any], *, trust: tuple[str, ...] = ()) -> Self:
        from safetensors.torch import load_file

        from zero2one.tasks.vision import models

        try:
            spec = manifest["input"]
            self = cls(cls.recipe_from(manifest, path))
            self.class_names_ = list(manifest["class_names"])
            self.image_size_, self.channels_ = int(spec["image_size"]), int(spec["channels"])
            self.mean_, self.std_ = list(spec["mean"]), list(spec["std"])
            runtime = manifest.get("runtime")
            if runtime is not None:
                self.net_ = _onnx_net(path, runtime)
            elif models.is_keras(manifest["arch"]):
                self.net_ = models.load_keras(path / models.KERAS_FILE).eval()
            else:
                net = models.build(manifest["arch"], in_channels=self.channels_,
                                   num_classes=len(self.class_names_),
                                   image_size=self.image_size_,
                                   params=manifest.get("arch_params") or {})
                net.load_state_dict(load_file(path / WEIGHTS), strict=True)
                self.net_ = net.eval()
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ArtifactError(f"{path}: cannot rebuild the network ({exc})") from None
        training = manifest.get("training") or {}
        self.training_ = {"history": training.get("history") or [],
                          "best_epoch": int(training.get("best_epoch") or 0)}
        self.manifest = manifest
        self.reference_ = references.read(path, manifest)
        return self


def _onnx_net(path: Path, runtime: dict[str, Any]) -> Any:
    """The ONNX graph a manifest's ``runtime`` names (its files already verified)."""
    from zero2one.tasks.vision.compress import OnnxNet

    if runtime.get("engine") != "onnxruntime":
        raise ArtifactError(f"{path}: unknown runtime {runtime.get('engine')!r}")
    require("onnxruntime", "onnx")
    return OnnxNet(OnnxModel(path, str(runtime["file"])), precision=str(runtime["precision"]),
                   method=str(runtime["method"]))
