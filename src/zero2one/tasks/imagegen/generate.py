"""Generation requests on any text-to-image pipeline: options checked once (the CLI, the server
and Python share them), compatible requests run as one batch.

zero2one's own pipeline takes per-image guidance scales and seeds, so requests that agree on
steps, sampler and size share one denoising loop; a diffusers pipeline (Stable Diffusion, ...)
shares a loop when the guidance scale agrees too.
"""

from __future__ import annotations

import inspect
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from zero2one.errors import SchemaError

log = logging.getLogger(__name__)

GUIDANCE_MAX = 50.0
STEPS_MAX = 1000
SEED_MAX = 2**63 - 1024


class GenerateOptions(BaseModel):
    """One generation request; unset values take the model's defaults."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(description="What to draw.")
    negative_prompt: str | None = Field(None, description="What to steer away from.")
    guidance_scale: float | None = Field(None, ge=1, le=GUIDANCE_MAX,
                                         description="1: no guidance; higher: closer to the "
                                         "prompt, less varied.")
    steps: int | None = Field(None, ge=1, le=STEPS_MAX, description="Denoising steps.")
    scheduler: Literal["ddim", "dpm++", "euler", "ddpm"] | None = Field(
        None, description="The sampler (default: the model's).")
    seed: int | None = Field(None, ge=0, le=SEED_MAX, description="Image i uses seed + i.")
    n: int = Field(1, ge=1, le=64, description="Number of images.")
    width: int | None = Field(None, ge=8, le=4096, description="Pixels (default: the model's).")
    height: int | None = Field(None, ge=8, le=4096, description="Pixels (default: the model's).")

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the prompt is empty")
        return value


@dataclass(frozen=True)
class Defaults:
    guidance_scale: float
    steps: int
    scheduler: str | None  # None: the pipeline's own


# what a pretrained diffusers pipeline samples with unless told otherwise (the guide's 7.5)
PRETRAINED_DEFAULTS = Defaults(guidance_scale=7.5, steps=30, scheduler=None)


def check_options(pipe: Any, options: GenerateOptions) -> None:
    """What a pipeline cannot draw, refused before any work (one-line SchemaError)."""
    from zero2one.tasks.imagegen.pipeline import PixelTextToImagePipeline

    if isinstance(pipe, PixelTextToImagePipeline):
        size = pipe.image_size
        if (options.width or size) != size or (options.height or size) != size:
            raise SchemaError(f"this model draws {size}×{size} images; got "
                              f"{options.width or size}×{options.height or size}")
        for text in (options.prompt, options.negative_prompt):
            if text:
                pipe.check_prompt(text)
        return
    # diffusers' Stable Diffusion pipelines want multiples of 8 whatever their VAE's factor
    factor = max(8, int(getattr(pipe, "vae_scale_factor", 8) or 8))
    for name in ("width", "height"):
        value = getattr(options, name)
        if value is not None and value % factor:
            raise SchemaError(f"{name} {value} is not a multiple of {factor}, which this "
                              "pipeline needs")
    tokenizer = getattr(pipe, "tokenizer", None)
    limit = getattr(tokenizer, "model_max_length", None)
    if tokenizer is not None and isinstance(limit, int) and limit < 100_000:
        for text in (options.prompt, options.negative_prompt):
            if text and (count := len(tokenizer(text)["input_ids"])) > limit:
                raise SchemaError(f"the prompt is {count} tokens; this pipeline's text encoder "
                                  f"reads at most {limit}")


def seeds(options: GenerateOptions) -> list[int]:
    """The seed of each image: the request's seed + i, or a random base (reported back)."""
    base = options.seed if options.seed is not None else secrets.randbelow(2**31)
    return [base + i for i in range(options.n)]


def run(pipe: Any, requests: list[GenerateOptions], defaults: Defaults, *,
        callback: Callable[[], None] | None = None) -> list[tuple[list[Any], list[int]]]:
    """Images and seeds for each request (in order), compatible requests batched together."""
    import torch

    from zero2one.tasks.imagegen.pipeline import PixelTextToImagePipeline

    ours = isinstance(pipe, PixelTextToImagePipeline)
    plans = []
    groups: dict[tuple[Any, ...], list[int]] = {}
    for number, options in enumerate(requests):
        check_options(pipe, options)
        guidance = (options.guidance_scale if options.guidance_scale is not None
                    else defaults.guidance_scale)
        steps = options.steps or defaults.steps
        scheduler = options.scheduler or defaults.scheduler
        key = (steps, scheduler, options.width, options.height) + (() if ours else (guidance,))
        groups.setdefault(key, []).append(number)
        plans.append((options, guidance, seeds(options)))
    results: list[tuple[list[Any], list[int]]] = [([], [])] * len(requests)
    for (steps, scheduler, width, height, *_), members in groups.items():
        prompts, negatives, scales, generators = [], [], [], []
        for number in members:
            options, guidance, image_seeds = plans[number]
            for seed in image_seeds:
                prompts.append(options.prompt)
                negatives.append(options.negative_prompt or "")
                scales.append(guidance)
                generators.append(torch.Generator().manual_seed(seed))
        if ours:
            images = pipe(prompts, negative_prompt=negatives, guidance_scale=scales,
                          num_inference_steps=steps, scheduler=scheduler, generator=generators,
                          callback=callback).images
        else:
            images = _diffusers_call(pipe, prompts, negatives, scales[0], steps, scheduler,
                                     generators, width, height, callback)
        start = 0
        for number in members:
            options, _, image_seeds = plans[number]
            results[number] = (list(images[start: start + options.n]), image_seeds)
            start += options.n
    return results


def _diffusers_call(pipe: Any, prompts: list[str], negatives: list[str], guidance: float,
                    steps: int, scheduler: str | None, generators: list[Any],
                    width: int | None, height: int | None,
                    callback: Callable[[], None] | None) -> list[Any]:
    """One call of a diffusers pipeline, with the sampler swapped in for the call only."""
    from zero2one.tasks.imagegen.pipeline import make_scheduler

    kwargs: dict[str, Any] = {"prompt": prompts, "guidance_scale": guidance,
                              "num_inference_steps": steps, "generator": generators}
    if any(negatives):
        kwargs["negative_prompt"] = negatives
    if width:
        kwargs["width"] = width
    if height:
        kwargs["height"] = height
    if callback is not None and "callback_on_step_end" in inspect.signature(pipe).parameters:
        def on_step(_pipe: Any, index: int, _t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            callback()
            return tensors

        kwargs["callback_on_step_end"] = on_step
    original = pipe.scheduler
    if scheduler:
        pipe.scheduler = make_scheduler(scheduler, original.config)
    try:
        return list(pipe(**kwargs).images)
    except ValueError as exc:  # diffusers' own input checks
        raise SchemaError(str(exc).strip().splitlines()[0]) from None
    finally:
        pipe.scheduler = original
