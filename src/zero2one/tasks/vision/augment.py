"""Augmentations as batched tensor ops (no torchvision here), driven by one torch.Generator so
a resumed run draws the same random numbers as an uninterrupted one."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from zero2one.tasks.vision.config import AugmentConfig


def enabled(cfg: AugmentConfig) -> bool:
    return bool(cfg.crop_padding or cfg.hflip or cfg.vflip or cfg.rotation or cfg.color_jitter
                or cfg.erasing)


def augment(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """x: (B, C, H, W) normalised images; returns a new tensor of the same shape."""
    b, _, h, w = x.shape
    if cfg.crop_padding:
        p = cfg.crop_padding
        padded = F.pad(x, (p, p, p, p), mode="reflect" if p < min(h, w) else "constant")
        dy = torch.randint(0, 2 * p + 1, (b,), generator=gen)
        dx = torch.randint(0, 2 * p + 1, (b,), generator=gen)
        rows = (dy[:, None] + torch.arange(h)[None, :])  # (B, H)
        cols = (dx[:, None] + torch.arange(w)[None, :])  # (B, W)
        x = padded[torch.arange(b)[:, None, None, None], torch.arange(x.shape[1])[None, :, None,
                   None], rows[:, None, :, None], cols[:, None, None, :]]
    if cfg.hflip:
        flip = torch.rand(b, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if cfg.vflip:
        flip = torch.rand(b, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(2), x)
    if cfg.rotation:
        angle = (torch.rand(b, generator=gen) * 2 - 1) * math.radians(cfg.rotation)
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack([torch.stack([cos, -sin, torch.zeros(b)], 1),
                             torch.stack([sin, cos, torch.zeros(b)], 1)], 1)  # (B, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    if cfg.color_jitter:
        j = cfg.color_jitter
        brightness = (torch.rand(b, generator=gen) * 2 - 1) * j
        contrast = 1 + (torch.rand(b, generator=gen) * 2 - 1) * j
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * contrast[:, None, None, None] + mean + brightness[:, None, None, None]
    if cfg.erasing:
        x = x.clone()
        erase = torch.rand(b, generator=gen) < cfg.erasing
        eh = (torch.rand(b, generator=gen) * 0.3 + 0.1) * h
        ew = (torch.rand(b, generator=gen) * 0.3 + 0.1) * w
        y0 = (torch.rand(b, generator=gen) * (h - eh)).long()
        x0 = (torch.rand(b, generator=gen) * (w - ew)).long()
        for i in torch.nonzero(erase).flatten().tolist():
            x[i, :, y0[i]: y0[i] + int(eh[i]), x0[i]: x0[i] + int(ew[i])] = 0.0
    return x
