"""Training the pixel-space text-to-image UNet, top to bottom: one step = draw a batch of images
and captions (a share of captions dropped to the empty prompt), noise them at random DDPM
timesteps, predict the noise (or velocity) from the caption's token states, take an AdamW step,
update the EMA weights.

A checkpoint (UNet, EMA weights, optimizer, LR schedule, step, history, RNG states; see
:mod:`zero2one.torchtrain`) is written every ``checkpoint_every`` steps, so ``--resume`` after
a kill continues from the last one and ends where an uninterrupted run would.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from zero2one.progress import Reporter
from zero2one.tasks.imagegen.config import SampleConfig, TrainConfig, UNetConfig
from zero2one.tasks.imagegen.images import tile
from zero2one.torchtrain import Checkpoint, autocast, log_loss, pick_device, threads

log = logging.getLogger(__name__)

GRID_PROMPTS = 10  # prompts shown in a sample grid (4 images each)


@dataclass
class Outcome:
    history: list[dict[str, float]] = field(default_factory=list)  # every log_every steps
    steps: int = 0
    resumed_from: int | None = None  # the step a resumed run continued after
    train_seconds: float = 0.0
    grids: dict[int, np.ndarray] = field(default_factory=dict)  # step -> sample grid (uint8)


def build_unet(cfg: UNetConfig, *, size: int, channels: int, cross_dim: int) -> Any:
    """A ``UNet2DConditionModel``: plain ResNet blocks at full size, cross-attention to the
    prompt at every smaller level."""
    from diffusers import UNet2DConditionModel

    levels = len(cfg.block_out_channels)
    if size % 2 ** (levels - 1):
        raise ValueError(f"a {levels}-level UNet needs an image size divisible by "
                         f"{2 ** (levels - 1)}; the images are {size}×{size}")
    down = ["DownBlock2D"] + ["CrossAttnDownBlock2D"] * (levels - 1)
    if levels == 1:
        down = ["CrossAttnDownBlock2D"]
    up = [name.replace("Down", "Up") for name in reversed(down)]
    return UNet2DConditionModel(
        sample_size=size, in_channels=channels, out_channels=channels,
        block_out_channels=tuple(cfg.block_out_channels), layers_per_block=cfg.layers_per_block,
        down_block_types=tuple(down), up_block_types=tuple(up),
        mid_block_type="UNetMidBlock2DCrossAttn", cross_attention_dim=cross_dim,
        attention_head_dim=cfg.attention_head_dim, norm_num_groups=cfg.norm_num_groups,
    )


def noise_scheduler(cfg: UNetConfig) -> Any:
    """The DDPM schedule the UNet learns; samplers are made from its config. No clipping of the
    predicted clean image: DDIM clips it without recomputing the noise, which breaks
    classifier-free guidance (digits: adherence 0.68 at guidance 3 and 0.17 at 5 with clipping,
    1.0 and 1.0 without, the same model and judge)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=cfg.train_timesteps, beta_schedule=cfg.noise_schedule,
                         prediction_type=cfg.prediction_type, clip_sample=False)


def _lr_lambda(cfg: TrainConfig) -> Any:
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "constant":
            return 1.0
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


@dataclass
class _Batches:
    """The training images and every caption's token states (encoded once: the text encoder
    is frozen), on the device; row 0 of the states is the empty prompt."""

    images: torch.Tensor
    caption_ids: torch.Tensor
    states: torch.Tensor
    masks: torch.Tensor
    alphas: torch.Tensor

    @classmethod
    def of(cls, pipe: Any, x: np.ndarray, captions: list[str],
           device: torch.device) -> _Batches:
        table = list(dict.fromkeys(["", *captions]))
        states, masks = pipe.encode(table)
        index = {c: i for i, c in enumerate(table)}
        return cls(torch.from_numpy(x).permute(0, 3, 1, 2).float().div(127.5).sub(1),
                   torch.tensor([index[c] for c in captions]), states.to(device),
                   masks.to(device), pipe.scheduler.alphas_cumprod.to(device))


def fit(
    pipe: Any,
    x: np.ndarray,
    captions: list[str],
    cfg: TrainConfig,
    sample: SampleConfig,
    *,
    seed: int,
    reporter: Reporter,
    grid_prompts: list[str],
    checkpoint_dir: Path | None = None,
    resume: bool = False,
) -> Outcome:
    """Train ``pipe.unet`` on images ``x`` (N, S, S, C uint8) and their captions; the UNet ends
    with the EMA weights (when ``ema_decay`` is set)."""
    device = pick_device(cfg.device)
    with threads(cfg.threads):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        unet = pipe.unet.to(device).train()
        data = _Batches.of(pipe, x, captions, device)
        params = [p for p in unet.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))
        ema = [p.detach().clone() for p in params] if cfg.ema_decay is not None else None
        outcome, checkpoint = Outcome(), Checkpoint(checkpoint_dir, unit="step")
        saved = checkpoint.resume(wanted=resume, generator=gen, device=device,
                                  reporter=reporter)
        if saved is not None:
            unet.load_state_dict(saved["unet"])
            optimizer.load_state_dict(saved["optimizer"])
            lr_schedule.load_state_dict(saved["lr_schedule"])
            for e, value in zip(ema or [], saved["ema"], strict=True):
                e.copy_(value)
            outcome.history, outcome.train_seconds = saved["history"], saved["seconds"]
            outcome.grids = {int(k): v.numpy() for k, v in saved["grids"].items()}
            outcome.resumed_from = saved["step"]
        start = outcome.resumed_from or 0
        window: list[float] = []
        began = time.perf_counter() - outcome.train_seconds
        with reporter.step(f"training {cfg.steps} steps", total=cfg.steps) as progress:
            progress.advance(start)
            for step in range(start + 1, cfg.steps + 1):
                loss = _step(unet, pipe.scheduler, data, cfg, gen, device, step)
                if cfg.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                lr_schedule.step()
                _follow_ema(ema, params, cfg.ema_decay, step)
                window.append(loss)
                progress.advance()
                if step % cfg.log_every == 0 or step == cfg.steps:
                    log_loss(outcome.history, window, step=step,
                             lr=optimizer.param_groups[0]["lr"], began=began, reporter=reporter)
                if cfg.sample_every and (step % cfg.sample_every == 0 or step == cfg.steps):
                    with swapped(params, ema):
                        outcome.grids[step] = sample_grid(pipe, grid_prompts, sample, seed)
                    reporter.image("samples", outcome.grids[step], step)
                    unet.train()
                    reporter.info(f"step {step}: loss {loss:.4f}, sample grid taken")
                if step % cfg.checkpoint_every == 0:
                    outcome.train_seconds = time.perf_counter() - began
                    checkpoint.save({
                        "step": step, "unet": unet.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "lr_schedule": lr_schedule.state_dict(), "ema": ema or [],
                        "history": outcome.history, "seconds": outcome.train_seconds,
                        "grids": {str(k): torch.from_numpy(v) for k, v in outcome.grids.items()},
                    }, generator=gen, device=device)
    outcome.train_seconds = time.perf_counter() - began
    outcome.steps = cfg.steps
    if ema is not None:
        with torch.no_grad():
            torch._foreach_copy_(params, ema)
    unet.eval()
    return outcome


def _follow_ema(ema: list[torch.Tensor] | None, params: list[torch.Tensor],
                decay: float | None, step: int) -> None:
    """The EMA weights a step closer to the parameters (a shorter memory early on)."""
    if ema is not None:
        decay = min(decay or 0.0, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema, [p.detach() for p in params], 1 - decay)


def _step(unet: Any, scheduler: Any, data: _Batches, cfg: TrainConfig, gen: torch.Generator,
          device: torch.device, step: int) -> float:
    """One denoising step's gradients: a batch of images and captions (a share dropped to the
    empty prompt), noised at random timesteps; the loss on the predicted noise or velocity."""
    batch = cfg.batch_size
    pick = torch.randint(len(data.images), (batch,), generator=gen)
    x0 = data.images[pick].to(device)
    ids = data.caption_ids[pick]
    dropped = torch.rand(batch, generator=gen) < cfg.caption_dropout
    ids = torch.where(dropped, torch.zeros_like(ids), ids).to(device)
    noise = torch.randn(x0.shape, generator=gen).to(device)
    t = torch.randint(scheduler.config.num_train_timesteps, (batch,), generator=gen).to(device)
    a = data.alphas[t].sqrt()[:, None, None, None]
    s = (1 - data.alphas[t]).sqrt()[:, None, None, None]
    noisy = a * x0 + s * noise
    target = noise if scheduler.config.prediction_type == "epsilon" else a * noise - s * x0
    unet.zero_grad(set_to_none=True)
    with autocast(device):
        out = unet(noisy, t, encoder_hidden_states=data.states[ids],
                   encoder_attention_mask=data.masks[ids]).sample
    loss = F.mse_loss(out.float(), target)
    if not torch.isfinite(loss):
        raise ValueError(f"the loss became {loss.item()} at step {step}; lower train.lr")
    loss.backward()
    return loss.item()


class swapped:
    """Within the block the parameters hold the EMA weights (sampling during training)."""

    def __init__(self, params: list[torch.Tensor], ema: list[torch.Tensor] | None) -> None:
        self.params, self.ema = params, ema

    def __enter__(self) -> None:
        if self.ema is not None:
            self.saved = [p.detach().clone() for p in self.params]
            with torch.no_grad():
                torch._foreach_copy_(self.params, self.ema)

    def __exit__(self, *exc: object) -> None:
        if self.ema is not None:
            with torch.no_grad():
                torch._foreach_copy_(self.params, self.saved)


def sample_grid(pipe: Any, prompts: list[str], sample: SampleConfig, seed: int,
                per_prompt: int = 4) -> np.ndarray:
    """A grid (rows: prompts, columns: seeds) sampled with the recipe's defaults."""
    pipe.unet.eval()
    prompts = prompts[:GRID_PROMPTS]
    generators = [torch.Generator().manual_seed(seed + i) for _ in prompts
                  for i in range(per_prompt)]
    images = pipe(prompts, guidance_scale=sample.guidance_scale,
                  num_inference_steps=sample.steps, scheduler=sample.scheduler,
                  generator=generators, num_images_per_prompt=per_prompt, output_type="np").images
    return tile(images, columns=per_prompt)
