"""UNIT inference: the two domains' VAEs that meet in one shared latent space.

Each domain has an encoder to a latent feature map and a decoder back; the encoders' last
residual blocks and the decoders' first ones are shared (``enc_shared``, ``dec_shared``), so
a2b is ``dec_b(dec_shared(enc_shared(enc_a(x))))``. The posterior is N(mu, I): translating
decodes the latent mean, or with a random generator z = mu + noise, which gives several
outputs per input. The critics and the training recipe are in ``ganforge.models.unit``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ganforge.errors import ConfigError
from ganforge.inference.base import ImageToImageModel, reject_options
from ganforge.nn.blocks import ResnetBlock, make_norm

#: direction -> (source domain, target domain)
DIRECTIONS = {"a2b": ("a", "b"), "b2a": ("b", "a")}
#: the networks of the two VAEs, the shared ones included
VAE_NETWORKS = ("enc_a", "enc_b", "enc_shared", "dec_shared", "dec_a", "dec_b")


def latent_channels(config: Any) -> int:
    """Channels of the latent feature map: the first layer's, doubled per downsampling."""
    return config.channels * 2 ** config.downsamplings


class DomainEncoder(nn.Module):
    """The domain's own encoder layers: images [B, 3, H, W] in [-1, 1] -> features
    [B, C * 2^n, H / 2^n, W / 2^n] (c7s1-C, n stride-2 convs, the unshared residual blocks)."""

    def __init__(self, c: Any):
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(3, c.channels, 7),
                                   make_norm(c.norm, c.channels), nn.ReLU(inplace=True)]
        ch = c.channels
        for _ in range(c.downsamplings):
            layers += [nn.Conv2d(ch, ch * 2, 4, stride=2, padding=1), make_norm(c.norm, ch * 2),
                       nn.ReLU(inplace=True)]
            ch *= 2
        layers += [ResnetBlock(ch, c.norm) for _ in range(c.blocks - c.shared_blocks)]
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class DomainDecoder(nn.Module):
    """The domain's own decoder layers: latent features [B, C * 2^n, h, w] -> images
    [B, 3, h * 2^n, w * 2^n] in [-1, 1]. Upsampling is nearest + 5x5 conv (no checkerboard)."""

    def __init__(self, c: Any):
        super().__init__()
        ch = latent_channels(c)
        layers: list[nn.Module] = [ResnetBlock(ch, c.norm)
                                   for _ in range(c.blocks - c.shared_blocks)]
        for _ in range(c.downsamplings):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"),
                       nn.Conv2d(ch, ch // 2, 5, padding=2), make_norm(c.norm, ch // 2),
                       nn.ReLU(inplace=True)]
            ch //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, 3, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


def shared_blocks(c: Any) -> nn.Module:
    """The residual blocks both domains share (latent features in, same layout out)."""
    return nn.Sequential(*[ResnetBlock(latent_channels(c), c.norm)
                           for _ in range(c.shared_blocks)])


def build_vaes(config: Any) -> dict[str, nn.Module]:
    """The networks of :data:`VAE_NETWORKS` for a config with UNIT's shape fields (``channels``,
    ``downsamplings``, ``blocks``, ``shared_blocks``, ``norm``; inference or training)."""
    return {"enc_a": DomainEncoder(config), "enc_b": DomainEncoder(config),
            "enc_shared": shared_blocks(config), "dec_shared": shared_blocks(config),
            "dec_a": DomainDecoder(config), "dec_b": DomainDecoder(config)}


def encode(nets: Mapping[str, nn.Module], domain: str, images: torch.Tensor) -> torch.Tensor:
    """Latent mean mu [B, C_z, h, w] of ``images`` [B, 3, H, W] from ``domain``'s encoder."""
    return nets["enc_shared"](nets[f"enc_{domain}"](images))


def decode(nets: Mapping[str, nn.Module], domain: str, shared: torch.Tensor) -> torch.Tensor:
    """Images of ``domain`` from latents already through the shared decoder blocks."""
    return nets[f"dec_{domain}"](shared)


def latent_noise(mu: torch.Tensor,
                 generator: torch.Generator | Sequence[torch.Generator]) -> torch.Tensor:
    """Unit Gaussian noise shaped like ``mu`` [B, ...], drawn on the CPU (the same on every
    device): from one generator for the whole batch, or from one generator per image."""
    if isinstance(generator, torch.Generator):
        noise = torch.randn(mu.shape, generator=generator)
    else:
        generators = list(generator)
        if len(generators) != len(mu) or not all(isinstance(g, torch.Generator)
                                                 for g in generators):
            raise ConfigError(f"generator must be a torch.Generator or a list of one per image "
                              f"({len(mu)}), got {type(generator).__name__} of "
                              f"{len(generators)}")
        noise = torch.stack([torch.randn(mu.shape[1:], generator=g) for g in generators])
    return noise.to(device=mu.device, dtype=mu.dtype)


def cross_domain(nets: Mapping[str, nn.Module], images: torch.Tensor, source: str, target: str,
                 generator: torch.Generator | Sequence[torch.Generator] | None = None
                 ) -> torch.Tensor:
    """Images [B, 3, H, W] of domain ``source`` drawn in domain ``target``: the latent mean
    decoded, or z = mu + noise drawn from ``generator`` (one, or one per image)."""
    mu = encode(nets, source, images)
    z = mu if generator is None else mu + latent_noise(mu, generator)
    return decode(nets, target, nets["dec_shared"](z))


@dataclass
class UNITInferenceConfig:
    """What translating with a trained UNIT needs: the image size and background it was
    trained at, and the VAEs' shape."""

    size: int = 64
    background: str = "white"
    channels: int = 64
    downsamplings: int = 2
    blocks: int = 4
    shared_blocks: int = 1
    norm: str = "instance"


class UNITModel(ImageToImageModel):
    """A trained UNIT: both domains' VAEs (:data:`VAE_NETWORKS`), translating a2b and b2a."""

    kind = "unit"
    Config = UNITInferenceConfig

    @classmethod
    def build_modules(cls, config: UNITInferenceConfig) -> dict[str, nn.Module]:
        return build_vaes(config)

    @property
    def directions(self) -> dict[str, str]:
        """Direction -> the network that draws its output (the target domain's decoder)."""
        return {name: f"dec_{target}" for name, (_, target) in DIRECTIONS.items()}

    def translate(self, images: torch.Tensor, direction: str | None = None,
                  generator: torch.Generator | Sequence[torch.Generator] | None = None,
                  **options: Any) -> torch.Tensor:
        """images [B, 3, H, W] in [-1, 1] -> the other domain, same layout.

        Without ``generator`` the latent mean is decoded (deterministic); with a
        ``torch.Generator`` (or a list of one per image) z = mu + noise is drawn from it."""
        if direction not in DIRECTIONS:
            raise ConfigError(f"direction {direction!r} is unknown to this model; "
                              f"known: {', '.join(DIRECTIONS)}")
        reject_options(self.kind, options)
        source, target = DIRECTIONS[direction]
        return cross_domain(self.modules, images, source, target, generator)
