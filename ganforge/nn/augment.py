"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) for everything a critic sees.

Applied to real and generated images alike, and differentiable, so the generator still gets
gradients through it. With a few thousand training images it keeps the critic from
memorising them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def color(x: torch.Tensor) -> torch.Tensor:
    """Random brightness, saturation and contrast per image; x: [B, 3, H, W] in [-1, 1]."""
    b = x.shape[0]
    x = x + (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size, filling with zeros."""
    b, _, h, w = x.shape
    shift = (torch.rand(b, 2, device=x.device) * 2 - 1) * ratio * 2  # in [-1, 1] grid units
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, :, 2] = shift.to(x.dtype)
    grid = F.affine_grid(theta, [b, 3, h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one random square of ``ratio`` x the image size per image."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio), int(w * ratio)
    top = torch.randint(0, h - ch + 1, (b, 1, 1), device=x.device)
    left = torch.randint(0, w - cw + 1, (b, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    hole = (rows >= top) & (rows < top + ch) & (cols >= left) & (cols < left + cw)
    return x * (~hole).unsqueeze(1).to(x.dtype)


POLICIES = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(x: torch.Tensor, policy: str) -> torch.Tensor:
    """Apply the comma-separated ``policy`` (e.g. "color,translation,cutout"; "" = none)."""
    for name in filter(None, (p.strip() for p in policy.split(","))):
        x = POLICIES[name](x)
    return x
