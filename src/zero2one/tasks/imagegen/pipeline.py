"""The pixel-space text-to-image pipeline zero2one trains, as a diffusers pipeline.

A ``UNet2DConditionModel`` denoises images directly (no VAE: the images are small) while
cross-attending to the token states of a frozen text encoder (all-MiniLM-L6-v2 by default).
Saved with ``save_pretrained`` it is an ordinary diffusers directory (``model_index.json``,
``unet/``, ``scheduler/``, ``text_encoder/``, ``tokenizer/``) that loads with
``PixelTextToImagePipeline.from_pretrained(directory)``.

Classifier-free guidance as in Stable Diffusion: each step runs the UNet on the prompt and on the
negative prompt (the empty prompt by default) and moves ``guidance_scale`` times further from the
second towards the first. Unlike diffusers' own pipelines, guidance scales and seeds may differ
per image of one batch, so concurrent requests share one denoising loop.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from diffusers import DiffusionPipeline
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput

from zero2one.errors import SchemaError
from zero2one.tasks.imagegen.images import to_pil

SCHEDULER_CLASSES = {
    "ddim": ("DDIMScheduler", {}),
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "euler": ("EulerDiscreteScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
}


def make_scheduler(name: str, config: Any) -> Any:
    """A fresh scheduler of kind ``name`` (ddim, dpm++, euler, ddpm) on the noise schedule of
    ``config`` (schedulers keep per-call state: one per call keeps concurrent calls apart)."""
    import diffusers

    try:
        class_name, extra = SCHEDULER_CLASSES[name]
    except KeyError:
        raise SchemaError(f"unknown scheduler {name!r}: use "
                          f"{', '.join(SCHEDULER_CLASSES)}") from None
    return getattr(diffusers, class_name).from_config(config, **extra)


class PixelTextToImagePipeline(DiffusionPipeline):  # type: ignore[misc]
    model_cpu_offload_seq = "text_encoder->unet"
    # components and config, set by register_modules / register_to_config
    unet: Any
    scheduler: Any
    text_encoder: Any
    tokenizer: Any
    config: Any
    register_to_config: Any
    register_modules: Any
    set_progress_bar_config: Any

    def __init__(self, unet: Any, scheduler: Any, text_encoder: Any, tokenizer: Any,
                 max_tokens: int = 24, guidance_scale: float = 5.0, steps: int = 20) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, text_encoder=text_encoder,
                              tokenizer=tokenizer)
        # the defaults of __call__, saved in model_index.json with the pipeline
        self.register_to_config(max_tokens=max_tokens, guidance_scale=guidance_scale,
                                steps=steps)
        self._cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    # ---- prompts ----------------------------------------------------------------------------

    def check_prompt(self, prompt: str) -> None:
        """Refuse a prompt longer than the window (it is never cut silently)."""
        count = len(self.tokenizer(prompt)["input_ids"])
        limit = self.config.max_tokens
        if count > limit:
            raise SchemaError(f"the prompt is {count} tokens; this model reads at most {limit} "
                              f"(prompt: {prompt[:60]!r}{'...' if len(prompt) > 60 else ''})")

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token states (N, max_tokens, D) and attention mask (N, max_tokens) of ``prompts``;
        each prompt is encoded once and cached (training encodes its captions once)."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        if missing:
            for prompt in missing:
                self.check_prompt(prompt)
            batch = self.tokenizer(missing, padding="max_length",
                                   max_length=self.config.max_tokens, truncation=True,
                                   return_tensors="pt")
            device = self.text_encoder.device
            states = self.text_encoder(input_ids=batch["input_ids"].to(device),
                                       attention_mask=batch["attention_mask"].to(device))[0]
            for i, prompt in enumerate(missing):
                self._cache[prompt] = (states[i].float().cpu(), batch["attention_mask"][i])
                if len(self._cache) > 4096:
                    self._cache.popitem(last=False)
        states = torch.stack([self._cache[p][0] for p in prompts])
        mask = torch.stack([self._cache[p][1] for p in prompts])
        return states, mask

    # ---- sampling ---------------------------------------------------------------------------

    @property
    def image_size(self) -> int:
        return int(self.unet.config.sample_size)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None = None,
        guidance_scale: float | list[float] | None = None,
        num_inference_steps: int | None = None,
        scheduler: str | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        num_images_per_prompt: int = 1,
        height: int | None = None,
        width: int | None = None,
        output_type: str = "pil",
        callback: Callable[[], None] | None = None,
    ) -> ImagePipelineOutput:
        """Images for ``prompt`` (one per prompt and ``num_images_per_prompt``); per-image
        lists of negative prompts, guidance scales and generators are allowed. ``scheduler``
        picks the sampler by name (default: the saved one); guidance and steps default to the
        saved ones; ``callback()`` is called after each denoising step."""
        if guidance_scale is None:
            guidance_scale = float(self.config.guidance_scale)
        if num_inference_steps is None:
            num_inference_steps = int(self.config.steps)
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        prompts = [p for p in prompts for _ in range(num_images_per_prompt)]
        n = len(prompts)
        negatives = _per_image(negative_prompt if negative_prompt is not None else "", n,
                               num_images_per_prompt, "negative_prompt")
        scales = _per_image(guidance_scale, n, num_images_per_prompt, "guidance_scale")
        size = self.image_size
        if (height or size) != size or (width or size) != size:
            raise SchemaError(f"this model draws {size}×{size} images; got "
                              f"{width or size}×{height or size}")
        device, dtype = self.unet.device, self.unet.dtype
        sampler = (make_scheduler(scheduler, self.scheduler.config) if scheduler
                   else self.scheduler.__class__.from_config(self.scheduler.config))
        sampler.set_timesteps(num_inference_steps, device=device)
        shape = (self.unet.config.in_channels, size, size)
        generators = (generator if isinstance(generator, list)
                      else [generator] * n if generator is not None else [None] * n)
        if len(generators) != n:
            raise SchemaError(f"{len(generators)} generators for {n} images")
        noise = torch.stack([torch.randn(shape, generator=g) for g in generators])
        x = (noise * sampler.init_noise_sigma).to(device, dtype)
        cond, cond_mask = self.encode(prompts)
        guided = any(s != 1 for s in scales)
        if guided:
            uncond, uncond_mask = self.encode(negatives)
            states = torch.cat([cond, uncond]).to(device, dtype)
            mask = torch.cat([cond_mask, uncond_mask]).to(device)
            scale = torch.tensor(scales, device=device, dtype=dtype)[:, None, None, None]
        else:
            states, mask = cond.to(device, dtype), cond_mask.to(device)
        step_kwargs = {}
        if "generator" in inspect.signature(sampler.step).parameters:
            step_kwargs["generator"] = generators[0]
        for t in sampler.timesteps:
            model_input = sampler.scale_model_input(x, t)
            if guided:
                model_input = torch.cat([model_input, model_input])
            out = self.unet(model_input, t, encoder_hidden_states=states,
                            encoder_attention_mask=mask).sample
            if guided:
                out_cond, out_uncond = out.chunk(2)
                out = out_uncond + scale * (out_cond - out_uncond)
            x = sampler.step(out, t, x, **step_kwargs).prev_sample
            if callback is not None:
                callback()
        pixels = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
        arrays = pixels.permute(0, 2, 3, 1).numpy()
        if output_type == "np":
            return ImagePipelineOutput(images=arrays)
        return ImagePipelineOutput(images=[to_pil(a) for a in arrays])


def _per_image(value: Any, n: int, per_prompt: int, name: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        return [value] * n
    if len(value) == n:
        return list(value)
    if len(value) * per_prompt == n:
        return [v for v in value for _ in range(per_prompt)]
    raise SchemaError(f"{name}: {len(value)} values for {n} images")
