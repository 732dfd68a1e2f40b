"""Networks: the guide's Keras CNN rebuilt in PyTorch, a stronger small CNN, or any Module."""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import nn

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
    if arch not in BUILTIN:
        _import(arch)


def build(arch: str, *, in_channels: int, num_classes: int, image_size: int,
          params: dict[str, Any]) -> nn.Module:
    cls: Any = {"seed-cnn": SeedCNN, "small-cnn": SmallCNN}.get(arch) or _import(arch)
    if arch == "seed-cnn" and image_size < 4:
        raise ValueError("seed-cnn needs images of at least 4×4")
    try:
        return cls(in_channels=in_channels, num_classes=num_classes, image_size=image_size,
                   **params)
    except TypeError as exc:
        raise ValueError(f"model.params: {arch} does not take these arguments ({exc})") from None
