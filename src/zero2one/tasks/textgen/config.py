"""Recipe model of the text-generation task (fine-tuning a causal language model)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from zero2one.recipe import BaseRecipe, Strict


class TextDataConfig(Strict):
    source: str = Field(
        description="A .txt file (one example per blank-line-separated paragraph), a .jsonl file "
        "(records with `text`, or chat records with `messages`), or a folder of .txt files."
    )
    format: Literal["auto", "text", "chat", "preference"] = Field(
        "auto", description="auto: preference when the records hold `chosen`, chat when they "
        "hold `messages`, else text."
    )
    text_field: str = Field("text", description="JSONL field holding the text (text format).")
    val_source: str | None = Field(
        None, description="A separate validation file; default: hold out val_size of source."
    )
    val_size: float = Field(0.15, gt=0, lt=0.5, description="Share held out for validation.")
    max_length: int = Field(512, ge=8, le=32_768, description="Tokens per example (longer "
                            "examples are truncated); the block size when packing.")
    packing: bool = Field(
        False, description="Concatenate examples into full blocks of max_length (no padding)."
    )


class LoraConfig(Strict):
    r: int = Field(8, ge=1, le=1024, description="Rank of the update matrices.")
    alpha: float = Field(16, gt=0, description="Scaling: the update is multiplied by alpha / r.")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        min_length=1, description="Names of the linear layers that get adapters "
        "(e.g. q_proj, v_proj; c_attn for GPT-2; all-linear for every one).",
    )


class FinetuneConfig(Strict):
    base: str = Field(
        "builtin:smollm2-135m-instruct", description="The model to start from: builtin:NAME, a "
        "save_pretrained directory, a .gguf file or a Hugging Face id."
    )
    method: Literal["lora", "full", "dpo"] = Field(
        "lora", description="lora: train small adapters (peft); full: train every weight; "
        "dpo: preference optimisation of LoRA adapters on pairs (prompt, chosen, rejected)."
    )
    lora: LoraConfig = Field(default_factory=LoraConfig)
    save_merged: bool = Field(
        False, description="LoRA: also save the base model with the adapter merged in (full size)."
    )


class TrainConfig(Strict):
    epochs: float = Field(3, gt=0, le=1000, description="Passes over the training data.")
    max_steps: int | None = Field(
        None, ge=1, description="Stop after this many optimizer steps (overrides epochs)."
    )
    batch_size: int = Field(4, ge=1, le=4096, description="Examples per forward pass.")
    gradient_accumulation: int = Field(
        1, ge=1, le=4096, description="Forward passes per optimizer step (effective batch = "
        "batch_size × gradient_accumulation)."
    )
    lr: float = Field(2e-4, gt=0, le=1, description="Peak learning rate.")
    weight_decay: float = Field(0.0, ge=0, le=1, description="AdamW weight decay.")
    scheduler: Literal["linear", "cosine", "constant"] = Field(
        "linear", description="Learning-rate decay after the warm-up."
    )
    warmup: float = Field(
        0.1, ge=0, description="Warm-up: a share of all steps when below 1, else a step count."
    )
    max_grad_norm: float | None = Field(1.0, gt=0, description="Gradient clipping; null: off.")
    save_steps: int = Field(50, ge=1, description="Checkpoint every this many steps.")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept (older ones deleted).")
    logging_steps: int = Field(5, ge=1, description="Log the training loss every this many steps.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA (bf16 where supported) when present, else CPU."
    )
    threads: int | None = Field(None, ge=1, description="CPU threads for torch.")
    beta: float = Field(0.1, gt=0, le=10, description="dpo: how far the tuned model may move "
                        "from the base (smaller: further).")


class EvalConfig(Strict):
    samples: int = Field(
        3, ge=0, le=100, description="Validation prompts answered (greedy) by the base and the "
        "tuned model and saved with the run, to read side by side (chat data)."
    )
    sample_tokens: int = Field(64, ge=1, le=2048, description="Tokens per sample answer.")


class TextGenRecipe(BaseRecipe):
    task: Literal["text-generation"] = Field(description="text-generation.")
    data: TextDataConfig
    model: FinetuneConfig = Field(default_factory=FinetuneConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="after")
    def _check(self) -> TextGenRecipe:
        if self.model.save_merged and self.model.method == "full":
            raise ValueError("model.save_merged applies to methods lora and dpo (full "
                             "fine-tuning already saves the whole model)")
        return self
