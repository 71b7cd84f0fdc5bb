"""Convolutional building blocks shared by the image families."""

from __future__ import annotations

import torch
from torch import nn

NORMS = {
    "instance": lambda ch: nn.InstanceNorm2d(ch, affine=False),
    "batch": nn.BatchNorm2d,
    "none": lambda ch: nn.Identity(),
}


def make_norm(kind: str, channels: int) -> nn.Module:
    """A normalisation layer by name: instance (default for translation), batch or none."""
    return NORMS[kind](channels)


def init_normal(module: nn.Module, std: float = 0.02) -> None:
    """DCGAN/CycleGAN initialisation: conv weights N(0, std), norm scales N(1, std), biases 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.InstanceNorm2d) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


class ResnetBlock(nn.Module):
    """conv3x3-norm-ReLU-conv3x3-norm with reflection padding and a skip connection."""

    def __init__(self, channels: int, norm: str = "instance"):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), make_norm(norm, channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), make_norm(norm, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """Johnson et al. / CycleGAN generator: images [B, 3, H, W] in [-1, 1] -> same layout.

    c7s1-C, two stride-2 downsamplings, ``blocks`` residual blocks, two upsamplings, c7s1-3, tanh.
    """

    def __init__(self, channels: int = 64, blocks: int = 9, norm: str = "instance",
                 downsamplings: int = 2):
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3), nn.Conv2d(3, channels, 7), make_norm(norm, channels),
            nn.ReLU(inplace=True),
        ]
        ch = channels
        for _ in range(downsamplings):
            layers += [nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1), make_norm(norm, ch * 2),
                       nn.ReLU(inplace=True)]
            ch *= 2
        layers += [ResnetBlock(ch, norm) for _ in range(blocks)]
        for _ in range(downsamplings):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 3, stride=2, padding=1, output_padding=1),
                       make_norm(norm, ch // 2), nn.ReLU(inplace=True)]
            ch //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, 3, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class PatchDiscriminator(nn.Module):
    """PatchGAN critic: images [B, 3, H, W] -> realism scores [B, 1, H', W'], one per patch.

    With ``layers=3`` each score sees a 70x70 patch (the pix2pix/CycleGAN default).
    """

    def __init__(self, channels: int = 64, layers: int = 3, norm: str = "instance",
                 in_channels: int = 3):
        super().__init__()
        seq: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, stride=2, padding=1),
                                nn.LeakyReLU(0.2, inplace=True)]
        ch = channels
        for i in range(1, layers + 1):
            out = channels * min(2 ** i, 8)
            stride = 2 if i < layers else 1
            seq += [nn.Conv2d(ch, out, 4, stride=stride, padding=1), make_norm(norm, out),
                    nn.LeakyReLU(0.2, inplace=True)]
            ch = out
        seq.append(nn.Conv2d(ch, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*seq)

    def forward(self, images: torch.Tensor, features: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """The scores; with ``features=True`` also each hidden layer's activations (after
        its LeakyReLU), for a feature-matching loss (pix2pixHD)."""
        if not features:
            return self.net(images)
        hidden = []
        x = images
        for layer in self.net:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                hidden.append(x)
        return x, hidden
