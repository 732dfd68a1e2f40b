"""Recipe model of the vision-language task."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from zero2one.recipe import BaseRecipe, Strict


class VLDataConfig(Strict):
    source: str = Field(description="sklearn:digits (\"Which digit is this?\"), folder:PATH "
                        "(a captioned image folder, `zero2one datasets make shapes --captions`: "
                        "colour, shape and description questions) or jsonl:PATH (records "
                        "with image, question, answer and an optional type; image paths "
                        "relative to the file).")
    val_size: float = Field(0.15, gt=0, lt=0.5, description="Share of the images held out "
                            "for validation.")
    test_size: float = Field(0.15, gt=0, lt=0.5, description="Share of the images held out "
                             "for the final evaluation.")


class VLModelConfig(Strict):
    vision: str = Field(description="The vision encoder: a zero2one image-classification "
                        "model (models:/NAME@ALIAS, runs:/ID/model or its directory); its "
                        "last feature map becomes the visual tokens.")
    lm: str = Field("builtin:smollm2-135m-instruct", description="The language model (kept "
                    "frozen): builtin:NAME, a save_pretrained directory or a .gguf file.")
    visual_tokens: int = Field(4, description="Visual tokens per image: the feature map "
                               "pooled to a square grid (1, 4, 9 or 16).")
    lora: VLLoraConfig | None = Field(
        None, description="Also tune the language model with LoRA adapters (peft), trained "
        "with the projector; null: the language model stays as it is.")
    # empty rather than the template's default (SmolLM2's is ~20 tokens): shorter prompts
    # train and answer faster
    system: str = Field("", max_length=2000, description="The system message of every prompt.")

    @field_validator("visual_tokens")
    @classmethod
    def _square(cls, value: int) -> int:
        if value not in (1, 4, 9, 16):
            raise ValueError("visual_tokens must be 1, 4, 9 or 16 (a square grid)")
        return value


class VLLoraConfig(Strict):
    r: int = Field(8, ge=1, le=256, description="Rank of the update matrices.")
    alpha: float = Field(16, gt=0, description="Scaling: the update is multiplied by alpha / r.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "v_proj"], min_length=1,
        description="The language model's linear layers that get adapters.")


class VLTrainConfig(Strict):
    steps: int = Field(150, ge=1, le=1_000_000, description="Optimizer steps.")
    batch_size: int = Field(16, ge=1, le=4096, description="Questions per step.")
    lr: float = Field(1e-3, gt=0, le=1, description="Peak learning rate of the projector.")
    warmup_steps: int = Field(10, ge=0, description="Linear warm-up, then cosine decay.")
    checkpoint_every: int = Field(25, ge=1, description="Steps between checkpoints "
                                  "(--resume continues from the last).")
    log_every: int = Field(10, ge=1, description="Steps between logged losses.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to train.")
    threads: int | None = Field(None, ge=1, description="torch threads while training "
                                "(default: as set).")


class VLEvalConfig(Strict):
    max_new_tokens: int = Field(16, ge=1, le=256, description="Tokens per held-out answer.")
    batch_size: int = Field(64, ge=1, le=4096, description="Questions answered at once.")


class VLRecipe(BaseRecipe):
    task: Literal["vision-language"] = "vision-language"
    data: VLDataConfig
    model: VLModelConfig
    train: VLTrainConfig = Field(default_factory=VLTrainConfig)
    eval: VLEvalConfig = Field(default_factory=VLEvalConfig)
