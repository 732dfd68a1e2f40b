"""Recipe model of the image-generation task (a pixel-space text-to-image diffusion model)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from zero2one.recipe import BaseRecipe, Strict

SCHEDULERS = ("ddim", "dpm++", "euler", "ddpm")
DIGIT_WORDS = {str(i): w for i, w in enumerate(
    ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])}


class CaptionedDataConfig(Strict):
    source: str = Field(
        description="sklearn:digits, or folder:PATH — class sub-folders (captions from "
        "`template`) or images with a caption file beside each (cat.png + cat.txt)."
    )
    captions: Literal["auto", "files", "template"] = Field(
        "auto", description="files: IMAGE.txt beside every image; template: from the class "
        "folder names; auto: files when the folder holds any .txt file."
    )
    template: str = Field(
        "{label}", description="Caption of a class image: {label} is the class word "
        "(e.g. 'a handwritten digit {label}')."
    )
    words: dict[str, str] = Field(
        default_factory=dict, description="Class name -> the word(s) put in the template "
        "(sklearn:digits: 0 -> zero, ...); default: the class name itself."
    )
    image_size: int | None = Field(
        None, ge=8, le=256, description="Resize every image to this square size; default: the "
        "images' own size (they must then all have it)."
    )
    channels: Literal[1, 3] | None = Field(
        None, description="1 (greyscale) or 3 (RGB); default: 3 if any image has colour."
    )
    holdout: float = Field(
        0.3, ge=0, lt=0.9, description="Share of the images the generator never sees: the "
        "evaluation's judge classifier learns from them (stratified by caption)."
    )

    @field_validator("template")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            value.format(label="x")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"template may only use {{label}} ({exc})") from None
        return value


class UNetConfig(Strict):
    text_encoder: str = Field(
        "builtin:all-minilm-l6-v2", description="The frozen text encoder whose token states the "
        "UNet cross-attends to: builtin:all-minilm-l6-v2 or a transformers directory "
        "(a model with a tokenizer)."
    )
    max_tokens: int = Field(
        24, ge=4, le=512, description="The prompt window in tokens; a longer prompt is refused "
        "with an error (never cut silently)."
    )
    block_out_channels: list[int] = Field(
        default_factory=lambda: [32, 64], min_length=1, max_length=5,
        description="Channels per UNet level; each level after the first halves the size and "
        "cross-attends to the prompt.")
    layers_per_block: int = Field(1, ge=1, le=4, description="ResNet layers per level.")
    attention_head_dim: int = Field(8, ge=1, description="Channels per attention head.")
    norm_num_groups: int = Field(8, ge=1, description="GroupNorm groups (divide the channels).")
    prediction_type: Literal["epsilon", "v_prediction"] = Field(
        "epsilon", description="What the UNet predicts: the noise, or the velocity.")
    noise_schedule: Literal["squaredcos_cap_v2", "linear", "scaled_linear"] = Field(
        "squaredcos_cap_v2", description="Betas of the DDPM training schedule.")
    train_timesteps: int = Field(1000, ge=10, le=4000, description="DDPM training timesteps.")

    @model_validator(mode="after")
    def _groups(self) -> UNetConfig:
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if bad:
            raise ValueError(f"block_out_channels {bad} are not multiples of norm_num_groups "
                             f"{self.norm_num_groups}")
        return self


class TrainConfig(Strict):
    steps: int = Field(2000, ge=1, le=10_000_000, description="Optimizer steps.")
    batch_size: int = Field(64, ge=1, le=65_536, description="Images per step.")
    lr: float = Field(1e-3, gt=0, le=1, description="Peak learning rate (AdamW).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    warmup_steps: int = Field(100, ge=0, description="Linear warm-up steps.")
    lr_schedule: Literal["cosine", "constant"] = Field(
        "cosine", description="After the warm-up: cosine decay to 0, or constant.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Gradient clipping; null: off.")
    caption_dropout: float = Field(
        0.1, ge=0, lt=1, description="Share of captions replaced by the empty prompt: what "
        "classifier-free guidance and negative prompts steer against.")
    ema_decay: float | None = Field(
        0.999, ge=0, lt=1, description="Decay of the EMA weights that are saved; null: save the "
        "trained weights.")
    checkpoint_every: int = Field(250, ge=1, description="Steps between checkpoints (--resume).")
    log_every: int = Field(10, ge=1, description="Steps per logged loss (their mean).")
    sample_every: int | None = Field(
        500, ge=1, description="Steps between sample grids (logged with the run); null: none.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA (with bfloat16 autocast) when present, else CPU.")
    threads: int | None = Field(None, ge=1, description="CPU threads for torch.")


class SampleConfig(Strict):
    scheduler: Literal["ddim", "dpm++", "euler", "ddpm"] = Field(
        "ddim", description="The sampler used by default (every one can be chosen per call).")
    steps: int = Field(20, ge=1, le=1000, description="Default denoising steps.")
    guidance_scale: float = Field(5.0, ge=1, le=50, description="Default guidance scale.")


class EvalConfig(Strict):
    judge: str | None = Field(
        "holdout", description="holdout: train zero2one's image classifier on the held-out "
        "images; or the reference of an image-classification model whose classes are the "
        "data's; null: diversity only.")
    images_per_prompt: int = Field(20, ge=2, le=1000, description="Images per class prompt.")
    guidance_scales: list[float] = Field(
        default_factory=lambda: [1.0, 3.0, 5.0, 7.5], min_length=1,
        description="Adherence is measured at each scale.")
    judge_epochs: int = Field(30, ge=1, le=1000, description="Epochs of the holdout judge.")

    @field_validator("guidance_scales")
    @classmethod
    def _scales(cls, value: list[float]) -> list[float]:
        if any(g < 1 for g in value):
            raise ValueError("guidance scales start at 1 (1: no guidance)")
        return value


class ImageGenRecipe(BaseRecipe):
    task: Literal["image-generation"] = Field(description="image-generation.")
    data: CaptionedDataConfig
    model: UNetConfig = Field(default_factory=UNetConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    sample: SampleConfig = Field(default_factory=SampleConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
