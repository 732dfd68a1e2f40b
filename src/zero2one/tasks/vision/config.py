"""Recipe model of the image-classification task."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from zero2one.recipe import BaseRecipe, Strict


class ImageDataConfig(Strict):
    source: str = Field(
        description="sklearn:digits, folder:PATH (one sub-folder per class, PNG/JPEG), or "
        "npz:PATH (arrays x: (N, H, W[, C]) and y; optional class_names)."
    )
    image_size: int | None = Field(
        None, ge=4, le=1024, description="Resize every image to this square size; default: the "
        "most common size in the data."
    )
    channels: Literal[1, 3] | None = Field(
        None, description="1 (greyscale) or 3 (RGB); default: 3 if any image has colour."
    )
    val_size: float = Field(0.15, gt=0, lt=0.5, description="Share held out for validation.")
    test_size: float = Field(0.15, gt=0, lt=0.5, description="Share held out for testing.")
    on_bad_file: Literal["skip", "fail"] = Field(
        "skip", description="A corrupt or unsupported file: skip it (and count it) or fail."
    )


class ModelConfig(Strict):
    arch: str = Field(
        "small-cnn", description="seed-cnn (the guide's Keras CNN), small-cnn, an import path "
        "to a torch.nn.Module taking in_channels, num_classes and image_size, or "
        "keras:path/to/model.py:function — a function returning a Keras 3 model (channels-last "
        "input, trained on the torch backend; pip install \"zero2one[keras]\")."
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Extra module arguments.")


class AugmentConfig(Strict):
    crop_padding: int = Field(0, ge=0, le=16, description="Random crop after this much padding.")
    hflip: bool = Field(False, description="Random horizontal flips.")
    vflip: bool = Field(False, description="Random vertical flips.")
    rotation: float = Field(0.0, ge=0, le=180, description="Random rotation, ± degrees.")
    color_jitter: float = Field(
        0.0, ge=0, le=1, description="Random brightness and contrast change, ± this fraction."
    )
    erasing: float = Field(0.0, ge=0, le=1, description="Probability of random erasing.")


class EarlyStopping(Strict):
    patience: int = Field(5, ge=1, description="Epochs without improvement before stopping.")
    metric: Literal["val_loss", "val_accuracy"] = Field("val_loss", description="What to watch.")
    min_delta: float = Field(0.0, ge=0, description="Smallest change that counts.")


class TrainConfig(Strict):
    epochs: int = Field(10, ge=1, le=10_000, description="Most epochs to train.")
    batch_size: int = Field(64, ge=1, le=65_536, description="Images per step.")
    optimizer: Literal["adam", "adamw", "sgd"] = Field("adam", description="Optimizer.")
    lr: float = Field(1e-3, gt=0, le=10, description="Learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="Weight decay.")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum.")
    scheduler: Literal["none", "plateau", "cosine"] = Field(
        "none", description="plateau: ReduceLROnPlateau on the early-stopping metric; cosine."
    )
    plateau_factor: float = Field(0.5, gt=0, lt=1, description="LR factor on a plateau.")
    plateau_patience: int = Field(2, ge=0, description="Epochs on a plateau before the cut.")
    early_stopping: EarlyStopping | None = Field(
        default_factory=EarlyStopping, description="null to always train every epoch."
    )
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA (with mixed precision) when present, else CPU."
    )
    threads: int | None = Field(None, ge=1, description="CPU threads for torch.")


class ImageRecipe(BaseRecipe):
    task: Literal["image-classification"] = Field(description="image-classification.")
    data: ImageDataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @model_validator(mode="after")
    def _check_arch(self) -> ImageRecipe:
        from zero2one.tasks.vision.models import check_arch

        check_arch(self.model.arch)
        return self
