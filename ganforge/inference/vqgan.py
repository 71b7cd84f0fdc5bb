"""The image tokenizer (VQGAN school): images <-> a grid of discrete codes, as a saved model.

Encoder: convolutional residual stages, each halving the resolution, to a ``code_dim`` latent
per cell (64 px with two halvings: a 16x16 grid). Quantiser: l2-normalised codes looked up by
cosine similarity (:mod:`ganforge.nn.quantize`). Decoder: the mirror of the encoder. The patch
critic and the training recipe are in ``ganforge.models.vqgan``; MaskGIT keeps a copy of the
codebook and decoder (:class:`TokenDecoder`) in its own saved model.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganforge.inference.base import InferenceModel
from ganforge.nn.quantize import VectorQuantizer

#: the ``task`` an image tokenizer had in the pipeline folders before saved artifacts
LEGACY_TASK = "image-tokenizer"


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with a (1x1) shortcut."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(min(8, in_ch), in_ch), nn.SiLU(), nn.Conv2d(in_ch, out_ch, 3, 1, 1),
            nn.GroupNorm(min(8, out_ch), out_ch), nn.SiLU(), nn.Conv2d(out_ch, out_ch, 3, 1, 1))
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.body(x)


def _stage_channels(channels: int, downsample: int) -> list[int]:
    return [channels * min(2 ** i, 4) for i in range(downsample + 1)]


class Encoder(nn.Module):
    """Images [B, 3, S, S] in [-1, 1] -> latents [B, code_dim, S/2^d, S/2^d]."""

    def __init__(self, channels: int, downsample: int, code_dim: int):
        super().__init__()
        plan = _stage_channels(channels, downsample)
        layers: list[nn.Module] = [nn.Conv2d(3, plan[0], 3, 1, 1)]
        for a, b in itertools.pairwise(plan):
            layers += [ResBlock(a, a), nn.Conv2d(a, b, 4, 2, 1)]
        layers += [ResBlock(plan[-1], plan[-1]), nn.GroupNorm(min(8, plan[-1]), plan[-1]),
                   nn.SiLU(), nn.Conv2d(plan[-1], code_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class Decoder(nn.Module):
    """Latents [B, code_dim, g, g] -> images [B, 3, g*2^d, g*2^d] (linear output, clamp to show)."""

    def __init__(self, channels: int, downsample: int, code_dim: int):
        super().__init__()
        plan = list(reversed(_stage_channels(channels, downsample)))
        layers: list[nn.Module] = [nn.Conv2d(code_dim, plan[0], 3, 1, 1), ResBlock(plan[0],
                                                                                  plan[0])]
        for a, b in itertools.pairwise(plan):
            layers += [nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(a, b, 3, 1, 1),
                       ResBlock(b, b)]
        layers += [nn.GroupNorm(min(8, plan[-1]), plan[-1]), nn.SiLU(),
                   nn.Conv2d(plan[-1], 3, 3, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.net(latents)


@dataclass
class VQGANInferenceConfig:
    """The tokenizer's shape (the training recipe's fields of the same names) and the colour
    its training images were composited onto."""

    size: int = 64
    downsample: int = 2
    channels: int = 32
    codebook_size: int = 512
    code_dim: int = 16
    commitment: float = 0.25
    restart_threshold: float = 0.03
    background: str = "white"

    @property
    def grid(self) -> int:
        """Side of the token grid."""
        return self.size >> self.downsample


def build_quantizer(config: Any) -> VectorQuantizer:
    """The codebook of a config with the tokenizer's shape fields (inference or training)."""
    return VectorQuantizer(config.codebook_size, config.code_dim, config.commitment,
                           dead_threshold=config.restart_threshold)


class TokenDecoder(nn.Module):
    """What turns codes back into pixels: the codebook and the decoder.

    ``decode(codes [B, g, g] int64) -> images [B, 3, S, S]`` in [-1, 1] (clamped).
    """

    def __init__(self, config: Any):
        super().__init__()
        self.quantizer = build_quantizer(config)
        self.decoder = Decoder(config.channels, config.downsample, config.code_dim)

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.quantizer.lookup(codes)).float().clamp(-1, 1)


class ImageTokenizer(InferenceModel):
    """A trained tokenizer: ``encode(images) -> codes``, ``decode(codes) -> images``.

    Images are [B, 3, S, S] in [-1, 1]; codes [B, g, g] int64 in 0..codebook_size-1.
    """

    kind = "vqgan"
    task = "tokenizer"
    Config = VQGANInferenceConfig

    @classmethod
    def build_modules(cls, config: VQGANInferenceConfig) -> dict[str, nn.Module]:
        return {"encoder": Encoder(config.channels, config.downsample, config.code_dim),
                "quantizer": build_quantizer(config),
                "decoder": Decoder(config.channels, config.downsample, config.code_dim)}

    @classmethod
    def upgrade(cls, header: dict[str, Any], folder: Path) -> dict[str, Any]:
        """An older tokenizer folder: its family was called ``tokenizer`` then."""
        upgraded = super().upgrade(header, folder)
        if header.get("task") == LEGACY_TASK:
            upgraded["kind"] = cls.kind
        return upgraded

    @property
    def grid(self) -> int:
        return self.config.grid

    @property
    def codebook_size(self) -> int:
        return int(self.config.codebook_size)

    @torch.no_grad()
    def encode(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Codes [B, g, g] of images [B, 3, S, S] in [-1, 1]."""
        out = []
        for chunk in images.split(batch_size):
            latents = self.modules["encoder"](chunk.to(self.device).float())
            out.append(self.modules["quantizer"](latents).codes)
        return torch.cat(out)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Images [B, 3, S, S] in [-1, 1] of codes [B, g, g]."""
        quantizer, decoder = self.modules["quantizer"], self.modules["decoder"]
        return torch.cat([decoder(quantizer.lookup(chunk.to(self.device))).float().clamp(-1, 1)
                          for chunk in codes.split(batch_size)])

    def token_decoder(self) -> TokenDecoder:
        """A frozen :class:`TokenDecoder` holding copies of this tokenizer's codebook and
        decoder."""
        module = TokenDecoder(self.config)
        module.quantizer.load_state_dict(self.modules["quantizer"].state_dict())
        module.decoder.load_state_dict(self.modules["decoder"].state_dict())
        return module.to(self.device).eval().requires_grad_(False)
