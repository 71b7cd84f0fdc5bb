"""CycleGAN inference: the two ResNet generators, one per direction.

The generator itself (``ganforge.nn.blocks.ResnetGenerator``) is shared with other families;
the critics, the image pool and the training recipe are in ``ganforge.models.cyclegan``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from ganforge.inference.base import ImageToImageModel
from ganforge.nn.blocks import ResnetGenerator

#: direction -> the generator that translates in it
DIRECTIONS = {"a2b": "g_ab", "b2a": "g_ba"}


@dataclass
class CycleGANInferenceConfig:
    """What translating with a trained CycleGAN needs: the image size and background it was
    trained at, and the generators' shape."""

    size: int = 64
    background: str = "white"
    generator_channels: int = 64
    generator_blocks: int = 9
    norm: str = "instance"


def build_generator(config: Any) -> ResnetGenerator:
    """One generator for a config with CycleGAN's shape fields (inference or training)."""
    return ResnetGenerator(config.generator_channels, config.generator_blocks, config.norm)


class CycleGANModel(ImageToImageModel):
    """A trained CycleGAN: ``g_ab`` translates a2b, ``g_ba`` b2a; images [B, 3, S, S] in
    [-1, 1] either way. It takes no sampling options."""

    kind = "cyclegan"
    Config = CycleGANInferenceConfig

    @classmethod
    def build_modules(cls, config: CycleGANInferenceConfig) -> dict[str, nn.Module]:
        return {name: build_generator(config) for name in DIRECTIONS.values()}

    @property
    def directions(self) -> dict[str, str]:
        return dict(DIRECTIONS)
