"""pix2pix inference: the U-Net generator that translates a2b.

The U-Net (an encoder-decoder whose mirrored layers are joined by skip connections, so fine
detail of the input reaches the output) is defined here; the conditional PatchGAN critic and
the training recipe are in ``ganforge.models.pix2pix``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.inference.base import ImageToImageModel
from ganforge.nn.blocks import make_norm

#: direction -> the network that translates in it (pix2pix learns one direction)
DIRECTIONS = {"a2b": "generator"}
#: how the U-Net's decoder doubles the resolution
UPSAMPLE = ("transpose", "resize")


class UNetGenerator(nn.Module):
    """U-Net: images [B, 3, H, W] in [-1, 1] -> [B, 3, H, W] in [-1, 1]; H, W multiples of
    2^depth.

    Encoder: conv4x4/2 - norm - LeakyReLU(0.2) per level (no norm on the first and the
    innermost); decoder: ReLU - up-sampling x2 - norm (- dropout), each level fed its encoder
    twin's features concatenated to the layer below's output. The up-sampling is the paper's
    transposed conv4x4/2 (``upsample="transpose"``) or nearest-neighbour doubling followed by a
    conv3x3 (``"resize"``), which cannot draw the transposed convolution's checkerboard
    (Odena et al. 2016, "Deconvolution and checkerboard artifacts").

    With ``residual`` the last layer has no tanh and its output is added to the input image
    (its weights start at zero, see ``zero_residual``): an untrained network is the identity
    map, and training learns the change, keeping the input's edges where nothing must move.

    With ``residual_blur`` k > 1 the change is averaged over k x k blocks and brought back by
    bilinear up-sampling: the network can only shade the input smoothly (recolour, add
    gradients), never draw noise or edges.

    ``input_scale`` < 1 first shrinks the input about its centre (bilinear, the border colour
    extended outwards): for domains drawn at different sizes on the canvas (Fluent's 3D emoji
    fill 0.875 of the side Twemoji fills), so that the U-Net's skips carry the input where the
    output must be drawn.
    """

    def __init__(self, channels: int = 64, depth: int = 6, norm: str = "instance",
                 dropout: float = 0.5, max_channels: int = 512, upsample: str = "transpose",
                 residual: bool = False, input_scale: float = 1.0, residual_blur: int = 1):
        super().__init__()
        self.residual = residual
        if residual_blur < 1 or (residual_blur > 1 and not residual):
            raise ValueError(f"residual_blur {residual_blur} needs residual and must be >= 1")
        self.residual_blur = residual_blur
        if upsample not in UPSAMPLE:
            raise ValueError(f"upsample {upsample!r} is unknown; known: {', '.join(UPSAMPLE)}")
        if not 0 < input_scale <= 1:
            raise ValueError(f"input_scale {input_scale} must be in (0, 1]")
        self.input_scale = input_scale

        def up(ch_in: int, ch_out: int) -> list[nn.Module]:
            if upsample == "resize":
                return [nn.Upsample(scale_factor=2, mode="nearest"),
                        nn.Conv2d(ch_in, ch_out, 3, padding=1)]
            return [nn.ConvTranspose2d(ch_in, ch_out, 4, stride=2, padding=1)]

        widths = [min(channels * 2 ** i, max(channels, max_channels)) for i in range(depth)]
        self.down = nn.ModuleList()
        ch = 3
        for i, width in enumerate(widths):
            layers: list[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2)]
            layers.append(nn.Conv2d(ch, width, 4, stride=2, padding=1))
            if 0 < i < depth - 1:
                layers.append(make_norm(norm, width))
            self.down.append(nn.Sequential(*layers))
            ch = width
        self.up = nn.ModuleList()
        for i in reversed(range(depth)):
            inner = widths[i] if i == depth - 1 else 2 * widths[i]
            if i == 0:
                tail = [] if residual else [nn.Tanh()]
                self.up.append(nn.Sequential(nn.ReLU(), *up(inner, 3), *tail))
                continue
            layers = [nn.ReLU(), *up(inner, widths[i - 1]), make_norm(norm, widths[i - 1])]
            if dropout > 0 and i >= depth - 3:
                layers.append(nn.Dropout(dropout))
            self.up.append(nn.Sequential(*layers))

    def reframe(self, images: torch.Tensor) -> torch.Tensor:
        """The input shrunk by ``input_scale`` about its centre (unchanged at 1)."""
        if self.input_scale == 1:
            return images
        theta = torch.zeros(len(images), 2, 3, dtype=images.dtype, device=images.device)
        theta[:, 0, 0] = theta[:, 1, 1] = 1 / self.input_scale
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                             align_corners=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        skips = []
        images = self.reframe(images)
        x = images
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        x = self.up[0](skips.pop())
        for layer in self.up[1:]:
            x = layer(torch.cat([x, skips.pop()], 1))
        if not self.residual:
            return x
        if self.residual_blur > 1:  # only a smooth change: no noise, no new edges
            size = x.shape[-2:]
            x = F.interpolate(F.avg_pool2d(x, self.residual_blur), size=size, mode="bilinear",
                              align_corners=False)
        return images + x

    def zero_residual(self) -> None:
        """Start a residual network at the identity map (its last layer at zero)."""
        last = self.up[-1][-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)


@dataclass
class Pix2PixInferenceConfig:
    """What translating with a trained pix2pix needs: the image size and background it was
    trained at, and the U-Net's shape (``dropout`` only adds parameter-free layers, inert in
    eval mode; it is kept so the network is the one that was trained)."""

    size: int = 64
    background: str = "white"
    generator_channels: int = 64
    generator_max_channels: int = 512
    generator_depth: int = 6
    norm: str = "instance"
    dropout: float = 0.5
    upsample: str = "transpose"
    residual: bool = False
    input_scale: float = 1.0
    residual_blur: int = 1


def build_generator(config: Any) -> UNetGenerator:
    """The U-Net for a config with pix2pix's shape fields (inference or training)."""
    return UNetGenerator(config.generator_channels, config.generator_depth, config.norm,
                         config.dropout, config.generator_max_channels, config.upsample,
                         config.residual, config.input_scale, config.residual_blur)


class Pix2PixModel(ImageToImageModel):
    """A trained pix2pix: ``generator`` translates a2b, images [B, 3, S, S] in [-1, 1]. It
    takes no sampling options."""

    kind = "pix2pix"
    Config = Pix2PixInferenceConfig

    @classmethod
    def build_modules(cls, config: Pix2PixInferenceConfig) -> dict[str, nn.Module]:
        return {"generator": build_generator(config)}

    @property
    def directions(self) -> dict[str, str]:
        return dict(DIRECTIONS)

    @property
    def subject_scale(self) -> float:
        return self.config.input_scale
