"""Vector quantisation with l2-normalised codes and dead-code restarts (ViT-VQGAN school).

Latents and codebook entries are compared on the unit sphere (cosine similarity): the lookup
no longer favours codes with a large norm, which is the usual reason most codes of a plain VQ
layer never get picked. A code that has not been chosen for a while is restarted from an
encoder output of the current batch, so the whole codebook stays in use.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


@dataclass
class Quantized:
    """What :class:`VectorQuantizer` returns for latents [B, D, H, W].

    ``latents``: quantised latents [B, D, H, W] (straight-through gradient to the encoder);
    ``codes``: indices [B, H, W] int64; ``loss``: codebook + beta x commitment (scalar);
    ``perplexity``: exp(entropy) of the batch's code histogram; ``usage``: share of codes
    used in the batch; ``restarted``: codes restarted by this call.
    """

    latents: torch.Tensor
    codes: torch.Tensor
    loss: torch.Tensor
    perplexity: torch.Tensor
    usage: torch.Tensor
    restarted: torch.Tensor


class VectorQuantizer(nn.Module):
    """``codebook_size`` codes of dimension ``dim``; nearest code by cosine similarity.

    Training (``self.training``): an exponential average of how often each code is picked
    (``decay``) is kept; before the lookup, codes whose average fell below ``dead_threshold``
    times the uniform rate are re-seeded from random latents of the batch (global torch RNG).
    """

    def __init__(self, codebook_size: int, dim: int, beta: float = 0.25, decay: float = 0.95,
                 dead_threshold: float = 0.03):
        super().__init__()
        self.codebook_size, self.dim, self.beta = codebook_size, dim, beta
        self.decay, self.dead_threshold = decay, dead_threshold
        self.codebook = nn.Embedding(codebook_size, dim)
        nn.init.normal_(self.codebook.weight)
        self.register_buffer("usage_average", torch.full((codebook_size,), 1.0 / codebook_size))

    def normalized_codebook(self) -> torch.Tensor:
        """Codes on the unit sphere [K, D]."""
        return F.normalize(self.codebook.weight.float(), dim=1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [B, H, W] int64 -> latents [B, D, H, W]."""
        return rearrange(self.normalized_codebook()[codes], "b h w d -> b d h w")

    @torch.no_grad()
    def _restart_dead(self, flat: torch.Tensor) -> torch.Tensor:
        """Re-seed dead codes from random rows of ``flat`` [N, D]; returns their count."""
        dead = self.usage_average < self.dead_threshold / self.codebook_size
        count = int(dead.sum())
        if count:
            picks = torch.randint(0, flat.shape[0], (count,), device=flat.device)
            noise = 0.01 * torch.randn(count, self.dim, device=flat.device)
            self.codebook.weight[dead] = (flat[picks] + noise).to(self.codebook.weight.dtype)
            self.usage_average[dead] = 1.0 / self.codebook_size
        return torch.tensor(float(count), device=flat.device)

    def forward(self, latents: torch.Tensor) -> Quantized:
        """Quantise latents [B, D, H, W] (any norm; they are l2-normalised first)."""
        b, _, h, w = latents.shape
        flat = F.normalize(rearrange(latents.float(), "b d h w -> (b h w) d"), dim=1)
        restarted = torch.zeros((), device=latents.device)
        if self.training:
            restarted = self._restart_dead(flat.detach())
        book = self.normalized_codebook()
        codes = (flat @ book.T).argmax(dim=1)  # max cosine = min l2 distance on the sphere
        chosen = book[codes]
        loss = F.mse_loss(chosen, flat.detach()) + self.beta * F.mse_loss(flat, chosen.detach())
        counts = torch.bincount(codes, minlength=self.codebook_size).float()
        share = counts / counts.sum()
        if self.training:
            with torch.no_grad():
                self.usage_average.mul_(self.decay).add_(share, alpha=1 - self.decay)
        perplexity = torch.exp(-(share * torch.log(share.clamp_min(1e-10))).sum())
        quantized = flat + (chosen - flat).detach()  # straight-through estimator
        return Quantized(
            latents=rearrange(quantized, "(b h w) d -> b d h w", b=b, h=h, w=w),
            codes=codes.view(b, h, w), loss=loss, perplexity=perplexity,
            usage=(counts > 0).float().mean(), restarted=restarted)
