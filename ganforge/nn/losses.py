"""Adversarial losses by name, each written from the point of view of one side."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def lsgan(scores: torch.Tensor, target_real: bool) -> torch.Tensor:
    """Least-squares GAN (Mao et al. 2017): mean (score - target)^2 with targets 1 / 0."""
    target = torch.ones_like(scores) if target_real else torch.zeros_like(scores)
    return F.mse_loss(scores.float(), target.float())


def vanilla(scores: torch.Tensor, target_real: bool) -> torch.Tensor:
    """Non-saturating GAN loss: binary cross-entropy on logits."""
    target = torch.ones_like(scores) if target_real else torch.zeros_like(scores)
    return F.binary_cross_entropy_with_logits(scores.float(), target.float())


ADVERSARIAL = {"lsgan": lsgan, "vanilla": vanilla}
