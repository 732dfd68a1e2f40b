"""Networks: the guide's Keras CNN rebuilt in PyTorch, a stronger small CNN, any Module, or a
Keras 3 model from a Python file (``keras:model.py:build``, trained on the torch backend)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zero2one.errors import ArtifactError, UserError, require

BUILTIN = ("seed-cnn", "small-cnn")


class SeedCNN(nn.Module):
    """Conv2D(32, 3×3, ReLU) -> MaxPool(2×2) -> Flatten -> Dense(num_classes); softmax lives in
    the loss (the guide's ``sparse_categorical_crossentropy`` on logits)."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int) -> None:
        super().__init__()
        side = (image_size - 2) // 2
        self.features = nn.Sequential(nn.Conv2d(in_channels, 32, 3), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Linear(32 * side * side, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, S, S) -> (B, num_classes)
        return self.classifier(torch.flatten(self.features(x), 1))


def _block(cin: int, cout: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout(dropout),
    )


class SmallCNN(nn.Module):
    """Two conv blocks (conv-BN-ReLU ×2, max-pool, dropout), global average pooling, dropout,
    linear: ~70k parameters, stronger than the seed CNN on anything but trivial data."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int,
                 width: int = 32, dropout: float = 0.2) -> None:
        super().__init__()
        blocks = [_block(in_channels, width, dropout)]
        if image_size >= 8:
            blocks.append(_block(width, width * 2, dropout))
        out = width * (2 if image_size >= 8 else 1)
        self.features = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(out, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _import(path: str) -> type:
    module_name, _, name = path.rpartition(".")
    if not module_name:
        raise ValueError(f"model.arch: unknown architecture {path!r}; use "
                         f"{', '.join(BUILTIN)} or an import path such as mypkg.nets.Net")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"model.arch: cannot import {module_name!r} ({exc})") from None
    cls = getattr(module, name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"model.arch: {path} is not a torch.nn.Module class")
    return cls


def check_arch(arch: str) -> None:
    if arch.startswith(KERAS):
        _keras_source(arch)
    elif arch not in BUILTIN:
        _import(arch)


# ---- Keras 3 models (the torch backend: a Keras model is a torch.nn.Module) -----------------

KERAS = "keras:"  # model.arch: keras:path/to/model.py:build
KERAS_FILE = "model.keras"


def is_keras(arch: str) -> bool:
    return arch.startswith(KERAS)


def _keras_source(arch: str) -> tuple[Path, str]:
    path, _, function = arch.removeprefix(KERAS).rpartition(":")
    if not path or not function.isidentifier():
        raise ValueError(f"model.arch {arch!r}: write keras:path/to/model.py:function")
    if not Path(path).is_file():
        raise ValueError(f"model.arch {arch!r}: no file {path}")
    return Path(path), function


def keras() -> Any:
    """Keras on the torch backend (imported only here: it takes seconds)."""
    import os

    backend = os.environ.setdefault("KERAS_BACKEND", "torch")
    if backend != "torch":
        raise UserError(f"KERAS_BACKEND={backend}: zero2one trains and serves Keras models "
                        "on the torch backend; unset it or set it to torch")
    require("keras", "keras")
    import keras as keras_module

    return keras_module


class KerasNet(nn.Module):
    """A Keras model (channels-last images in) as zero2one's networks are: NCHW images in,
    logits out — a softmax output layer gives log-probabilities, which are logits to the loss
    and to every softmax downstream."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        last = model.layers[-1] if model.layers else None
        self.model = model
        self.probabilities = getattr(last, "activation", None) is keras().activations.softmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x.permute(0, 2, 3, 1))
        return torch.log(out.clamp_min(1e-12)) if self.probabilities else out

    # Keras names layers by a process-wide counter (``conv2d_1`` in one process is ``conv2d``
    # in the next, or after another model was built), and its torch parameters carry those
    # names: checkpoints key the weights by their position in ``model.weights`` instead, so that
    # a run resumes into the same model built again
    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        return {f"keras.{i}": torch.as_tensor(v.value).detach()
                for i, v in enumerate(self.model.weights)}

    def load_state_dict(self, state: Any, strict: bool = True,  # type: ignore[override]
                        assign: bool = False) -> Any:
        weights = self.model.weights
        if sorted(state) != sorted(f"keras.{i}" for i in range(len(weights))):
            raise ValueError(f"the checkpoint holds {len(state)} weights, this Keras model has "
                             f"{len(weights)}: the model's source changed since")
        for i, variable in enumerate(weights):
            value = state[f"keras.{i}"]
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(f"weight {i} ({variable.path}) is {tuple(variable.shape)} here "
                                 f"and {tuple(value.shape)} in the checkpoint: the model's "
                                 "source changed since")
            variable.assign(value)
        return nn.modules.module._IncompatibleKeys([], [])


def build_keras(arch: str, *, in_channels: int, num_classes: int, image_size: int) -> KerasNet:
    """Run the recipe's Python file, call its function for the model, check it fits the data
    and can be loaded safely later."""
    import runpy
    import warnings

    path, function = _keras_source(arch)
    k = keras()
    k.utils.set_random_seed(torch.initial_seed() % 2**32)  # the recipe's seed (set before)
    try:
        with warnings.catch_warnings():  # Keras 3 prefers Input() to input_shape=; both work
            warnings.filterwarnings("ignore", message="Do not pass an `input_shape`")
            made = runpy.run_path(str(path))[function]()
    except KeyError:
        raise ValueError(f"model.arch {arch!r}: {path} defines no {function}()") from None
    if not isinstance(made, k.Model):
        raise ValueError(f"model.arch {arch!r}: {function}() returned a "
                         f"{type(made).__name__}, not a Keras model")
    lambdas = [layer.name for layer in made._flatten_layers() if isinstance(layer,
                                                                            k.layers.Lambda)]
    if lambdas:
        raise ValueError(f"model.arch {arch!r}: Lambda layer(s) {', '.join(lambdas)} run "
                         "arbitrary code, which a saved model may not (Keras safe_mode refuses "
                         "them); write them as layers")
    want = (image_size, image_size, in_channels)
    shape = tuple(made.input_shape[1:]) if made.built else None
    if shape is not None and shape != want:
        raise ValueError(f"model.arch {arch!r}: the model takes {shape} inputs, the data is "
                         f"{want} (height, width, channels)")
    units = made.output_shape[-1] if made.built else None
    if units is not None and units != num_classes:
        raise ValueError(f"model.arch {arch!r}: the model has {units} outputs, the data "
                         f"{num_classes} classes")
    return KerasNet(made)


def load_keras(path: Path) -> KerasNet:
    """A saved Keras model, loaded with safe_mode (no code from the file runs)."""

    k = keras()
    try:
        return KerasNet(k.saving.load_model(path, safe_mode=True, compile=False))
    except ValueError as exc:
        if "Lambda" in str(exc) or "safe_mode" in str(exc):
            raise ArtifactError(f"{path}: the Keras model holds code (a Lambda layer), which "
                                "safe_mode refuses to load") from None
        raise


def build(arch: str, *, in_channels: int, num_classes: int, image_size: int,
          params: dict[str, Any]) -> nn.Module:
    if is_keras(arch):
        return build_keras(arch, in_channels=in_channels, num_classes=num_classes,
                           image_size=image_size)
    cls: Any = {"seed-cnn": SeedCNN, "small-cnn": SmallCNN}.get(arch) or _import(arch)
    if arch == "seed-cnn" and image_size < 4:
        raise ValueError("seed-cnn needs images of at least 4×4")
    try:
        return cls(in_channels=in_channels, num_classes=num_classes, image_size=image_size,
                   **params)
    except TypeError as exc:
        raise ValueError(f"model.params: {arch} does not take these arguments ({exc})") from None
