"""Image classifiers in ONNX Runtime: export, INT8 post-training and quantization-aware.

* ``export``: ``torch.onnx.export(dynamo=True)`` with a dynamic batch axis; the graph's logits
  must match the network's on the held-out images (:data:`ATOL`) and agree on every label.
* ``static``: ONNX Runtime's ``quantize_static`` on the exported graph — QDQ, int8 weights per
  output channel (7-bit range: :data:`WEIGHT_LEVELS`), int8 activations with ranges calibrated
  on training images (BatchNorm is folded into the convolutions first, by ONNX Runtime's
  pre-processing).
* ``dynamic``: ``quantize_dynamic`` — int8 weights, activation ranges measured per call.
* ``qat``: the guide's ``prepare_qat``/``convert`` flow on a maintained path. ``torch.ao``'s
  eager quantization is deprecated, so the network (BatchNorm folded, as ONNX Runtime will)
  is fine-tuned for a few epochs with ``torch.fake_quantize_*`` on every convolution and linear
  layer — per-channel symmetric int8 weights (7-bit range), per-tensor int8 activations with
  moving ranges: the rounding the INT8 graph will do — and then quantized statically like
  ``static``.
"""

from __future__ import annotations

import copy
import itertools
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zero2one.errors import ConversionError, DataError
from zero2one.logs import quieted
from zero2one.onnxrt import OnnxModel, strip_metadata

if TYPE_CHECKING:
    from zero2one.progress import Reporter

ATOL = 1e-4  # largest difference of a class probability between a graph and its network
MIN_CALIBRATION = 32  # images: fewer give activation ranges that are mostly noise
DEFAULT_CALIBRATION = 512
DEFAULT_QAT_EPOCHS = 3
MIN_AGREEMENT = 0.98  # an INT8 graph must give the float32 graph's label on this share...
DECIDED = 0.1  # ...of the images where the float32 graph's top class leads by this much
# int8 weights in [-64, 64] (ONNX Runtime's reduce_range): on a CPU without VNNI its u8 x s8
# kernels add products in pairs into int16 (VPMADDUBSW), which saturates with full-range
# weights: on an AVX2 CPU the digits CNN's static graph gave its network's label on 96.1 % of
# the decided images with 8-bit weights, 100 % with 7-bit ones (which never saturate), and a
# graph made on one CPU is served on others.
WEIGHT_LEVELS = 64


class OnnxNet:
    """An ONNX graph called like the network: a float tensor (N, C, S, S) in, logits out."""

    def __init__(self, graph: OnnxModel, *, precision: str, method: str) -> None:
        self.graph, self.precision, self.method = graph, precision, method

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        feeds = {self.graph.inputs[0]: x.detach().cpu().numpy().astype(np.float32, copy=False)}
        return torch.from_numpy(self.graph.run(feeds)[0])

    def eval(self) -> OnnxNet:
        return self

    @property
    def runtime(self) -> str:
        return f"onnxruntime {self.precision}" + (
            f" ({self.method})" if self.method != "export" else "")


def export_graph(net: nn.Module, example: torch.Tensor, directory: Path) -> Path:
    """``net`` as ``directory/model.onnx`` (+ ``model.onnx.data``), batch axis dynamic."""
    path = directory / "model.onnx"
    net = net.cpu().eval()
    try:
        with warnings.catch_warnings(), quieted("torch.onnx", "onnxscript", "torch._dynamo",
                                                "torch.export"):
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (example.cpu(),), path, dynamo=True, input_names=["images"],
                              output_names=["logits"], optimize=True, verbose=False,
                              dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    except Exception as exc:  # the exporter raises many types for unsupported modules
        raise ConversionError(f"torch.onnx.export cannot export this network: "
                              f"{str(exc).strip().splitlines()[0][:300]}") from None
    strip_metadata(path)
    return path


def check_agreement(expected: torch.Tensor, actual: torch.Tensor, *, what: str,
                    atol: float | None = ATOL, min_agreement: float = 1.0,
                    margin: float = 2 * ATOL, advice: str = "") -> dict[str, float]:
    """Compare logits (N, K): class probabilities within ``atol`` (None: not checked), and the
    same label on ``min_agreement`` of the images the original is decided about (its top class
    at least ``margin`` ahead: a near tie may go either way without anything being wrong);
    raise :class:`ConversionError` otherwise."""
    p, q = expected.softmax(1), actual.softmax(1)
    difference = float((p - q).abs().max())
    same = p.argmax(1) == q.argmax(1)
    top2 = p.topk(min(2, p.shape[1]), dim=1).values
    decided = (top2[:, 0] - top2[:, -1]) >= margin if p.shape[1] > 1 else torch.ones_like(same)
    agreement = float(same[decided].float().mean()) if bool(decided.any()) else 1.0
    if (atol is not None and difference > atol) or agreement < min_agreement:
        raise ConversionError(
            f"{what} disagrees with the original on the held-out images: class probabilities "
            f"differ by up to {difference:.2g}" + (f" (tolerance {atol:g})" if atol else "")
            + f", labels agree on {agreement:.2%} of the {int(decided.sum())} images the "
            f"original is decided about (at least {min_agreement:.2%} needed); nothing was "
            f"written{advice}")
    return {"max_probability_difference": difference,
            "label_agreement": float(same.float().mean()),
            "label_agreement_decided": agreement, "checked_images": float(len(expected))}


class _CalibrationReader:
    """ONNX Runtime's CalibrationDataReader over a tensor of images, in batches."""

    def __init__(self, name: str, images: torch.Tensor, batch: int = 64) -> None:
        self.batches = iter([{name: images[i: i + batch].numpy()}
                             for i in range(0, len(images), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)


def calibration_images(images: torch.Tensor, wanted: int | None, *, shape: tuple[int, ...],
                       seed: int) -> torch.Tensor:
    """``wanted`` training images (default :data:`DEFAULT_CALIBRATION`), checked."""
    if tuple(images.shape[1:]) != shape:
        raise DataError(f"calibration images are {'×'.join(map(str, images.shape[1:]))} "
                        f"(C×H×W); the model takes {'×'.join(map(str, shape))}")
    if wanted is not None and wanted < MIN_CALIBRATION:
        raise DataError(f"--calibration {wanted}: at least {MIN_CALIBRATION} images are needed "
                        "to calibrate activation ranges")
    if len(images) < MIN_CALIBRATION:
        raise DataError(f"the data has {len(images)} training images; calibration needs at "
                        f"least {MIN_CALIBRATION}")
    count = min(wanted or DEFAULT_CALIBRATION, len(images))
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    return images[order[:count]]


def quantize(source: Path, directory: Path, method: str,
             calibration: torch.Tensor | None) -> Path:
    """The INT8 graph of ``source``: ``static`` (QDQ, calibrated) or ``dynamic``."""
    import onnx
    from onnxruntime.quantization import (
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_dynamic,
        quantize_static,
    )

    single, prepared = directory / "single.onnx", directory / "prepared.onnx"
    target = directory / "model.int8.onnx"
    onnx.save(onnx.load(str(source)), str(single))  # external data inlined: one file in
    with quieted(""):  # the quantizer logs through the root logger
        quant_pre_process(str(single), str(prepared), skip_symbolic_shape=True)
        if method == "dynamic":
            quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QInt8,
                             per_channel=True, reduce_range=True)
        else:
            assert calibration is not None
            quantize_static(str(prepared), str(target),
                            _CalibrationReader("images", calibration), quant_format=QuantFormat.QDQ,
                            per_channel=True, reduce_range=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    single.unlink()
    prepared.unlink()
    return target


# ---- quantization-aware fine-tuning ---------------------------------------------------------

class _FakeQuant(nn.Module):
    """A convolution or linear layer that computes with its weights rounded to per-channel
    symmetric int8 and its input rounded to int8 over a moving range, gradients passed
    straight through (what the INT8 graph will compute)."""

    low: torch.Tensor
    high: torch.Tensor

    def __init__(self, layer: nn.Conv2d | nn.Linear, momentum: float = 0.05) -> None:
        super().__init__()
        self.layer, self.momentum = layer, momentum
        self.register_buffer("low", torch.tensor(float("inf")))
        self.register_buffer("high", torch.tensor(float("-inf")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                low, high = x.min().clamp(max=0), x.max().clamp(min=0)
                first = not torch.isfinite(self.low)
                self.low.copy_(low if first else self.low + self.momentum * (low - self.low))
                self.high.copy_(high if first else self.high + self.momentum * (high - self.high))
        if torch.isfinite(self.low):
            scale = float(((self.high - self.low) / 255).clamp(min=1e-8))
            zero = round(-128 - float(self.low) / scale)
            x = torch.fake_quantize_per_tensor_affine(x, scale, max(-128, min(127, zero)),
                                                      -128, 127)
        weight = self.layer.weight
        dims = tuple(range(1, weight.dim()))
        scale_w = (weight.detach().abs().amax(dim=dims) / WEIGHT_LEVELS).clamp(min=1e-8)
        weight = torch.fake_quantize_per_channel_affine(
            weight, scale_w, torch.zeros_like(scale_w, dtype=torch.int32), 0, -WEIGHT_LEVELS,
            WEIGHT_LEVELS)
        if isinstance(self.layer, nn.Conv2d):
            return self.layer._conv_forward(x, weight, self.layer.bias)
        return F.linear(x, weight, self.layer.bias)


def fold_batchnorm(net: nn.Module) -> nn.Module:
    """A copy of ``net`` (eval mode) with each Conv2d -> BatchNorm2d pair of a Sequential
    folded into the convolution, as ONNX Runtime folds them before quantizing."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    net = copy.deepcopy(net).cpu().eval()
    for module in net.modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.named_children())
        for (name, first), (next_name, second) in itertools.pairwise(children):
            if isinstance(first, nn.Conv2d) and isinstance(second, nn.BatchNorm2d):
                setattr(module, name, fuse_conv_bn_eval(first, second))
                setattr(module, next_name, nn.Identity())
    return net


def _swap(net: nn.Module, wrap: bool) -> int:
    """Wrap every Conv2d/Linear in :class:`_FakeQuant` (or unwrap them); returns the count."""
    count = 0
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if wrap and isinstance(child, nn.Conv2d | nn.Linear):
                setattr(module, name, _FakeQuant(child))
                count += 1
            elif not wrap and isinstance(child, _FakeQuant):
                setattr(module, name, child.layer)
                count += 1
    return count


def quantization_aware(net: nn.Module, splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
                       train_config: Any, *, epochs: int, seed: int,
                       reporter: Reporter) -> tuple[nn.Module, list[dict[str, float]]]:
    """Fine-tune a BatchNorm-folded copy of ``net`` with fake quantization; returns the plain
    network (the epoch with the best validation score) and the epochs' history."""
    from zero2one.tasks.vision import train

    folded = fold_batchnorm(net)
    if _swap(folded, wrap=True) == 0:
        raise ConversionError("quantization-aware training found no Conv2d or Linear layer")
    config = train_config.model_copy(update={
        "epochs": epochs, "lr": train_config.lr / 10, "scheduler": "cosine",
        "early_stopping": None})
    with tempfile.TemporaryDirectory() as tmp:
        outcome = train.fit(folded, splits, config, seed=seed, reporter=reporter,
                            checkpoint_dir=Path(tmp))
    folded.load_state_dict(outcome.best_state)
    _swap(folded, wrap=False)
    return folded.cpu().eval(), outcome.history
