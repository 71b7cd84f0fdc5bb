"""ESRGAN inference: the x2 / x4 super-resolution generator.

Residual-in-residual dense blocks (RRDB: three 5-conv dense blocks inside a residual, every
residual scaled by ``residual_scale``, no batch norm), a trunk skip, then x2
nearest-neighbour up-sampling + conv stages; by default the network predicts the residual over
a bicubic up-sampling of its input. The critic and the training recipe are in
``ganforge.models.esrgan``; tiling of large images is the upscale pipeline's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.inference.base import UpscaleModel


class DenseBlock(nn.Module):
    """Five 3x3 convs, each seeing all earlier features (dense), residual scaled; no norm."""

    def __init__(self, channels: int, growth: int, residual_scale: float):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(channels + i * growth, growth if i < 4 else channels, 3, 1, 1)
            for i in range(5))
        self.residual_scale = residual_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for conv in self.convs[:-1]:
            features.append(F.leaky_relu(conv(torch.cat(features, 1)), 0.2))
        return x + self.residual_scale * self.convs[-1](torch.cat(features, 1))


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks inside a scaled residual."""

    def __init__(self, channels: int, growth: int, residual_scale: float):
        super().__init__()
        self.dense = nn.Sequential(*(DenseBlock(channels, growth, residual_scale)
                                     for _ in range(3)))
        self.residual_scale = residual_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.residual_scale * self.dense(x)


class RRDBNet(nn.Module):
    """Low-resolution images [B, 3, h, w] in [-1, 1] -> [B, 3, scale*h, scale*w], same range
    (not clamped: clamp for display)."""

    def __init__(self, scale: int, channels: int, growth: int, blocks: int,
                 residual_scale: float, bicubic_skip: bool):
        super().__init__()
        self.scale, self.bicubic_skip = scale, bicubic_skip
        self.conv_first = nn.Conv2d(3, channels, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(channels, growth, residual_scale)
                                    for _ in range(blocks)))
        self.conv_body = nn.Conv2d(channels, channels, 3, 1, 1)
        self.upsample = nn.ModuleList(nn.Conv2d(channels, channels, 3, 1, 1)
                                      for _ in range(scale.bit_length() - 1))
        self.conv_hr = nn.Conv2d(channels, channels, 3, 1, 1)
        self.conv_last = nn.Conv2d(channels, 3, 3, 1, 1)
        for module in self.modules():  # ESRGAN's init: Kaiming scaled by 0.1
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, a=0.2)
                module.weight.data.mul_(0.1)
                nn.init.zeros_(module.bias)
        if bicubic_skip:  # an untrained network is bicubic up-sampling exactly
            nn.init.zeros_(self.conv_last.weight)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.conv_first(images)
        features = features + self.conv_body(self.body(features))
        for conv in self.upsample:
            features = F.leaky_relu(conv(F.interpolate(features, scale_factor=2.0,
                                                       mode="nearest")), 0.2)
        out = self.conv_last(F.leaky_relu(self.conv_hr(features), 0.2))
        if self.bicubic_skip:
            out = out + F.interpolate(images, scale_factor=float(self.scale), mode="bicubic",
                                      align_corners=False)
        return out


@dataclass
class ESRGANInferenceConfig:
    """The generator's shape (the training recipe's fields of the same names) and the colour
    transparent inputs are composited onto."""

    scale: int = 4
    channels: int = 32
    growth: int = 16
    blocks: int = 2
    residual_scale: float = 0.2
    bicubic_skip: bool = True
    background: str = "white"


def build_generator(config: Any) -> RRDBNet:
    """The generator for a config with ESRGAN's shape fields (inference or training)."""
    return RRDBNet(config.scale, config.channels, config.growth, config.blocks,
                   config.residual_scale, config.bicubic_skip)


class ESRGANModel(UpscaleModel):
    """A trained ESRGAN upscaler: one ``generator``."""

    kind = "esrgan"
    Config = ESRGANInferenceConfig

    @classmethod
    def build_modules(cls, config: ESRGANInferenceConfig) -> dict[str, nn.Module]:
        return {"generator": build_generator(config)}

    def upscale(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, h, w] in [-1, 1] -> [B, 3, scale*h, scale*w] as float32, not clamped
        (clamp for display); a caller tiles large images (``ganforge.pipelines.upscale``)."""
        return self.modules["generator"](images).float()
