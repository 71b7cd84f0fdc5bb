"""StarGAN v2-style inference: one generator that translates into any of several styles.

The generator is steered by a style code [B, S]: a style's average code (kept by the style
encoder from its training images), a code from noise through the mapping network, or the code
the style encoder reads off a reference image. These networks are defined here; the
multi-task critic and the training recipe are in ``ganforge.models.stargan``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.errors import ConfigError
from ganforge.inference.base import ImageToImageModel


def pick(values: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
    """Row i's entry for domain ``domains[i]``: values [B, D, ...], domains [B] -> [B, ...]."""
    return values[torch.arange(len(domains), device=values.device), domains]


class ResBlock(nn.Module):
    """Pre-activation residual block (instance norm optional), average-pool down-sampling,
    1x1 learnt shortcut; the sum is scaled by 1/sqrt(2) as in StarGAN v2."""

    def __init__(self, dim_in: int, dim_out: int, normalize: bool = False,
                 downsample: bool = False):
        super().__init__()
        self.downsample = downsample
        self.norm1 = nn.InstanceNorm2d(dim_in, affine=True) if normalize else nn.Identity()
        self.norm2 = nn.InstanceNorm2d(dim_in, affine=True) if normalize else nn.Identity()
        self.conv1 = nn.Conv2d(dim_in, dim_in, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(dim_in, dim_out, 1, bias=False) if dim_in != dim_out \
            else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.shortcut(x)
        h = self.conv1(F.leaky_relu(self.norm1(x), 0.2))
        if self.downsample:
            skip, h = F.avg_pool2d(skip, 2), F.avg_pool2d(h, 2)
        h = self.conv2(F.leaky_relu(self.norm2(h), 0.2))
        return (skip + h) / math.sqrt(2)


class AdaIN(nn.Module):
    """Instance norm whose scale and shift come from a style code: (1 + gamma(s)) x + beta(s)."""

    def __init__(self, style_dim: int, channels: int):
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.affine = nn.Linear(style_dim, channels * 2)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.affine(style).to(x.dtype)[..., None, None].chunk(2, dim=1)
        return (1 + gamma) * self.norm(x) + beta


class AdaResBlock(nn.Module):
    """Residual block with AdaIN, optional x2 nearest up-sampling."""

    def __init__(self, dim_in: int, dim_out: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.upsample = upsample
        self.norm1, self.norm2 = AdaIN(style_dim, dim_in), AdaIN(style_dim, dim_out)
        self.conv1 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_out, dim_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(dim_in, dim_out, 1, bias=False) if dim_in != dim_out \
            else nn.Identity()

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.norm1(x, style), 0.2)
        if self.upsample:
            x, h = (F.interpolate(t, scale_factor=2.0, mode="nearest") for t in (x, h))
        h = self.conv2(F.leaky_relu(self.norm2(self.conv1(h), style), 0.2))
        return (self.shortcut(x) + h) / math.sqrt(2)


# The networks below take a config with StarGAN's shape fields (``size``, ``channels``,
# ``max_channels``, ``downsamplings``, ``bottleneck_blocks``, ``style_dim``, ``latent_dim``,
# ``mapping_layers``, ``mapping_channels``, ``num_domains``): the training recipe's or
# :class:`StarGANInferenceConfig`.
class StyleGenerator(nn.Module):
    """(images [B, 3, H, W] in [-1, 1], style [B, S]) -> images [B, 3, H, W] (linear output;
    clamped only for display)."""

    def __init__(self, c: Any):
        super().__init__()
        self.stem = nn.Conv2d(3, c.channels, 3, 1, 1)
        self.encode = nn.ModuleList()
        self.decode = nn.ModuleList()
        ch = c.channels
        for _ in range(c.downsamplings):
            out = min(ch * 2, c.max_channels)
            self.encode.append(ResBlock(ch, out, normalize=True, downsample=True))
            self.decode.insert(0, AdaResBlock(out, ch, c.style_dim, upsample=True))
            ch = out
        for _ in range(c.bottleneck_blocks):
            self.encode.append(ResBlock(ch, ch, normalize=True))
            self.decode.insert(0, AdaResBlock(ch, ch, c.style_dim))
        # no instance norm before the output (the paper has one): it would erase the global
        # colour a style sets, which then takes many more steps to learn
        self.to_rgb = nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(c.channels, 3, 1))

    def forward(self, images: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        x = self.stem(images)
        for block in self.encode:
            x = block(x)
        for block in self.decode:
            x = block(x, style)
        return self.to_rgb(x)


class MappingNetwork(nn.Module):
    """(noise [B, Z], domains [B] long) -> style codes [B, S]: a shared MLP, one head per
    domain."""

    def __init__(self, c: Any):
        super().__init__()
        self.latent_dim, self.style_dim = c.latent_dim, c.style_dim
        layers: list[nn.Module] = []
        width = c.latent_dim
        for _ in range(c.mapping_layers):
            layers += [nn.Linear(width, c.mapping_channels), nn.ReLU()]
            width = c.mapping_channels
        self.shared = nn.Sequential(*layers)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, c.style_dim))
            for _ in range(c.num_domains))

    def forward(self, noise: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
        h = self.shared(noise)
        return pick(torch.stack([head(h) for head in self.heads], dim=1), domains)


def trunk(c: Any) -> tuple[nn.Sequential, int]:
    """Image [B, 3, H, W] -> features [B, C]: residual down-sampling to 4x4, then a 4x4 conv;
    also the width C."""
    ch = c.channels
    layers: list[nn.Module] = [nn.Conv2d(3, ch, 3, 1, 1)]
    for _ in range(int(math.log2(c.size)) - 2):
        out = min(ch * 2, c.max_channels)
        layers.append(ResBlock(ch, out, downsample=True))
        ch = out
    layers += [nn.LeakyReLU(0.2), nn.Conv2d(ch, ch, 4, 1, 0), nn.LeakyReLU(0.2), nn.Flatten()]
    return nn.Sequential(*layers), ch


class StyleEncoder(nn.Module):
    """Images [B, 3, H, W] -> (style codes in every domain [B, D, S], domain logits [B, D]:
    which style each image is in); ``pick(codes, domains)`` takes each image's domain."""

    def __init__(self, c: Any):
        super().__init__()
        self.trunk, width = trunk(c)
        self.num_domains, self.style_dim = c.num_domains, c.style_dim
        self.styles = nn.Linear(width, c.num_domains * c.style_dim)
        self.domain = nn.Linear(width, c.num_domains)
        # running mean of the style codes of each domain's real images, and how many were seen
        self.register_buffer("mean_styles", torch.zeros(c.num_domains, c.style_dim))
        self.register_buffer("seen", torch.zeros(c.num_domains))

    @torch.no_grad()
    def observe(self, styles: torch.Tensor, domains: torch.Tensor) -> None:
        """Fold the codes [B, S] of real images of ``domains`` [B] into ``mean_styles``: an
        exact mean over the first images, then a moving average (1% per batch at least)."""
        for k in domains.unique().tolist():
            batch = styles[domains == k].float()
            self.seen[k] += len(batch)
            rate = max(len(batch) / float(self.seen[k]), 0.01)
            self.mean_styles[k].lerp_(batch.mean(dim=0), rate)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(images)
        return self.styles(h).view(-1, self.num_domains, self.style_dim), self.domain(h)


def check_reference(reference: Any, images: torch.Tensor) -> torch.Tensor:
    """Check a reference batch against the images it styles; broadcast one reference to all."""
    if not isinstance(reference, torch.Tensor) or reference.ndim != 4 or reference.shape[1] != 3:
        shape = tuple(reference.shape) if isinstance(reference, torch.Tensor) else \
            type(reference).__name__
        raise ConfigError(f"a style reference must be a tensor [B, 3, H, W] in [-1, 1], "
                          f"got {shape}")
    if reference.shape[2:] != images.shape[2:]:
        raise ConfigError(f"style reference images are {reference.shape[3]}x{reference.shape[2]}"
                          f" but this model translates {images.shape[3]}x{images.shape[2]} "
                          "images; resize the reference")
    if len(reference) not in (1, len(images)):
        raise ConfigError(f"{len(reference)} style references for {len(images)} images: give "
                          "one reference, or one per image")
    return reference.float().expand(len(images), -1, -1, -1) if len(reference) == 1 \
        else reference.float()


@dataclass
class StarGANInferenceConfig:
    """What translating with a trained multi-domain translator needs: its styles (one per
    training domain, in the networks' order), the image size and background it was trained
    at, and the networks' shape."""

    styles: list[str]
    size: int = 64
    background: str = "white"
    channels: int = 32
    max_channels: int = 256
    downsamplings: int = 2
    bottleneck_blocks: int = 2
    style_dim: int = 64
    latent_dim: int = 16
    mapping_layers: int = 4
    mapping_channels: int = 256

    @property
    def num_domains(self) -> int:
        return len(self.styles)


class StarGANModel(ImageToImageModel):
    """A trained multi-domain translator: ``generator``, ``mapping`` (noise -> style codes)
    and ``style_encoder`` (reference image -> style code; average code of each style). It
    translates into a named style, or a reference's, and has no directions."""

    kind = "stargan"
    Config = StarGANInferenceConfig

    @classmethod
    def build_modules(cls, config: StarGANInferenceConfig) -> dict[str, nn.Module]:
        return {"generator": StyleGenerator(config), "mapping": MappingNetwork(config),
                "style_encoder": StyleEncoder(config)}

    @property
    def styles(self) -> list[str]:
        return list(self.config.styles)

    def translate(self, images: torch.Tensor, direction: str | None = None,
                  style: str | None = None, reference: torch.Tensor | None = None,
                  seed: int | None = None,
                  generator: torch.Generator | Sequence[torch.Generator] | None = None,
                  **options: Any) -> torch.Tensor:
        """Translate images [B, 3, H, W] in [-1, 1] into a style.

        ``style=NAME`` (``direction`` may name it instead) uses the style's average code (the
        mean code of its training images), or through the mapping network with ``seed=N`` the
        code of one seeded latent (the same for every image), or with ``generator=`` one
        torch.Generator per image (or one for all) a latent drawn per image;
        ``reference=[B or 1, 3, H, W]`` in [-1, 1] takes the style of reference images through
        the style encoder, in ``style`` if given, else in the style the encoder recognises in
        each reference.
        """
        styles = self.styles
        if options:
            raise ConfigError(f"{self.kind} models take no {', '.join(sorted(options))} "
                              "option; known: style, reference, seed, generator")
        for name in (direction, style):
            if name is not None and name not in styles:
                raise ConfigError(f"style {name!r} is unknown to this model; "
                                  f"known: {', '.join(styles)}")
        if direction is not None and style is not None and direction != style:
            raise ConfigError(f"direction {direction!r} and style {style!r} disagree; "
                              "name the target style once")
        style = style or direction
        device = images.device
        count = len(images)
        if reference is not None:
            if generator is not None or seed is not None:
                raise ConfigError("a style reference gives one style per image; drawing styles "
                                  "(seed, generator) needs a target style name instead")
            reference = check_reference(reference, images).to(device)
            codes, logits = self.modules["style_encoder"](reference)
            if style is not None:
                domains = torch.full((len(reference),), styles.index(style), device=device)
            else:
                domains = logits.argmax(dim=1)
            code = pick(codes, domains)
        elif style is not None:
            code = self._style_code(styles.index(style), count, seed, generator, device)
        else:
            raise ConfigError(f"name a target style (one of {', '.join(styles)}) or give a "
                              "reference image")
        return self.modules["generator"](images, code.expand(count, -1))

    def _style_code(self, index: int, count: int, seed: int | None,
                    generator: torch.Generator | Sequence[torch.Generator] | None,
                    device: torch.device) -> torch.Tensor:
        """Style codes [1 or count, S] of the style ``index``: drawn per image from
        ``generator``, one drawn from ``seed``, else the style's average code."""
        domain = torch.full((1,), index, device=device)
        latent_dim = self.config.latent_dim
        if generator is not None:
            gens = [generator] * count if isinstance(generator, torch.Generator) \
                else list(generator)
            if len(gens) != count:
                raise ConfigError(f"{len(gens)} random generators for {count} images")
            noise = torch.stack([torch.randn(latent_dim, generator=g) for g in gens])
            return self.modules["mapping"](noise.to(device), domain.expand(count))
        if seed is not None:
            noise = torch.randn(1, latent_dim, generator=torch.Generator().manual_seed(int(seed)))
            return self.modules["mapping"](noise.to(device), domain)
        return self.modules["style_encoder"].mean_styles[domain]
