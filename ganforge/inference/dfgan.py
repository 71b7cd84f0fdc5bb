"""DF-GAN inference: the text-conditioned generator and what sampling from it needs.

The generator (noise -> 4x4 features -> up-sampling blocks whose features are scaled and
shifted by the sentence embedding with the noise at every block: deep text-image fusion) is
defined here; the critic and the training recipe are in ``ganforge.models.dfgan``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.inference.base import TextToImageModel, reject_options
from ganforge.text import build_text_encoder
from ganforge.text.encoders import text_encoder_settings

MINILM_DIM = 384  # all-MiniLM-L6-v2 sentence embeddings


class Affine(nn.Module):
    """Per-channel scale and shift predicted from the condition: x * gamma(c) + beta(c),
    after a per-image instance normalisation when ``normalize`` (AdaIN, as in StyleGAN)."""

    def __init__(self, cond_dim: int, channels: int, normalize: bool = False):
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels) if normalize else nn.Identity()
        self.gamma = nn.Sequential(nn.Linear(cond_dim, channels), nn.ReLU(inplace=True),
                                   nn.Linear(channels, channels))
        self.beta = nn.Sequential(nn.Linear(cond_dim, channels), nn.ReLU(inplace=True),
                                  nn.Linear(channels, channels))
        nn.init.zeros_(self.gamma[2].weight)
        nn.init.ones_(self.gamma[2].bias)
        nn.init.zeros_(self.beta[2].weight)
        nn.init.zeros_(self.beta[2].bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        return x * self.gamma(cond)[..., None, None] + self.beta(cond)[..., None, None]


class FusionBlock(nn.Module):
    """Two text-conditioned affine transforms, each followed by LeakyReLU."""

    def __init__(self, cond_dim: int, channels: int, normalize: bool = False):
        super().__init__()
        self.first = Affine(cond_dim, channels, normalize)
        self.second = Affine(cond_dim, channels, normalize)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.first(x, cond), 0.2)
        return F.leaky_relu(self.second(x, cond), 0.2)


class UpBlock(nn.Module):
    """x2 nearest up-sampling, then fuse-conv-fuse-conv with a (1x1) shortcut."""

    def __init__(self, cond_dim: int, in_ch: int, out_ch: int, normalize: bool = False):
        super().__init__()
        self.fuse1 = FusionBlock(cond_dim, in_ch, normalize)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, 1, 1)
        self.fuse2 = FusionBlock(cond_dim, out_ch, normalize)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1)
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        h = self.conv2(self.fuse2(self.conv1(self.fuse1(x, cond)), cond))
        return self.shortcut(x) + h


def channel_plan(size: int, base: int) -> list[int]:
    """Channels at 4x4, 8x8, ..., size: 8x base for most, then 4x, 2x, 1x at the top."""
    stages = int(math.log2(size // 4))
    mult = [8] * (stages + 1)
    for i, m in enumerate((1, 2, 4)):
        if stages - i >= 1:
            mult[stages - i] = min(m, mult[stages - i])
    return [base * m for m in mult]


class TextToImageGenerator(nn.Module):
    """(noise [B, Z], sentence [B, D]) -> images [B, 3, size, size] in [-1, 1]."""

    def __init__(self, size: int, noise_dim: int, text_dim: int, channels: int,
                 normalize: bool = False):
        super().__init__()
        plan = channel_plan(size, channels)
        cond = noise_dim + text_dim
        self.noise_dim = noise_dim
        # sentence embeddings are small per component (MiniLM's have unit norm over 384
        # values, ~0.05 each) beside N(0, 1) noise: standardise them so the text is heard
        self.text_norm = nn.LayerNorm(text_dim)
        self.stem = nn.Linear(cond, plan[0] * 16)
        self.blocks = nn.ModuleList(UpBlock(cond, a, b, normalize)
                                    for a, b in itertools.pairwise(plan))
        # linear output (clamped only for display): a tanh here saturates and stalls learning
        self.to_rgb = nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(plan[-1], 3, 3, 1, 1))

    def forward(self, noise: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        cond = torch.cat([noise, self.text_norm(sentence.to(noise.dtype))], dim=1)
        x = self.stem(cond).view(noise.shape[0], -1, 4, 4)
        for block in self.blocks:
            x = block(x, cond)
        return self.to_rgb(x)


@dataclass
class DFGANInferenceConfig:
    """What sampling a trained DF-GAN needs: the generator's shape, its text encoder and the
    default truncation of the noise."""

    size: int = 64
    noise_dim: int = 100
    generator_channels: int = 32
    fusion_norm: str = "instance"
    text_encoder: str = "tiny"
    text_dim: int = 256
    text_layers: int = 4
    max_tokens: int = 64
    truncation: float | None = None

    @property
    def sentence_dim(self) -> int:
        """Length of the sentence embeddings the generator reads."""
        return self.text_dim if self.text_encoder == "tiny" else MINILM_DIM


def build_generator(config: Any) -> TextToImageGenerator:
    """The generator for a config with DF-GAN's shape fields (inference or training)."""
    text_dim = config.text_dim if config.text_encoder == "tiny" else MINILM_DIM
    return TextToImageGenerator(config.size, config.noise_dim, text_dim,
                                config.generator_channels,
                                normalize=config.fusion_norm == "instance")


class DFGANModel(TextToImageModel):
    """A trained DF-GAN: ``generator`` (+ ``text_encoder`` when it was trained with one)."""

    kind = "dfgan"
    Config = DFGANInferenceConfig

    @classmethod
    def build_modules(cls, config: DFGANInferenceConfig) -> dict[str, nn.Module]:
        modules: dict[str, nn.Module] = {"generator": build_generator(config)}
        if config.text_encoder == "tiny":  # trained with the critic, saved with the model
            modules["text_encoder"] = build_text_encoder(cls.settings_of(config))
        return modules

    @staticmethod
    def settings_of(config: DFGANInferenceConfig) -> dict[str, Any]:
        return text_encoder_settings(config.text_encoder, config.text_dim, config.text_layers,
                                     config.max_tokens)

    def text_encoder_settings(self) -> dict[str, Any]:
        return self.settings_of(self.config)

    @property
    def noise_dim(self) -> int | None:
        return int(self.config.noise_dim)

    @property
    def default_truncation(self) -> float | None:
        return self.config.truncation

    def generate(self, condition: Any, noise: torch.Tensor, **options: Any) -> torch.Tensor:
        """``generator(noise [B, Z], sentence [B, D])``; DF-GAN has no sampling options."""
        reject_options(self.kind, options)
        return self.modules["generator"](noise, condition)
