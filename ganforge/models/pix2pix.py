"""pix2pix (Isola et al. 2017): paired image-to-image translation.

A U-Net generator (encoder-decoder whose mirrored layers are joined by skip connections, so
fine detail of the input reaches the output), a PatchGAN critic that judges (input, output)
pairs stacked channel-wise, and the loss L1(output, true target) x ``l1_weight`` (100 in the
paper) plus an adversarial term (least squares or hinge). Pairs come from two folders matched
by file name (``ganforge.data.paired``). The U-Net and the exported model are in
``ganforge.inference.pix2pix``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.config import option
from ganforge.data.images import check_size, parse_color
from ganforge.data.paired import PairedImages, load_pairs, pair_by_name
from ganforge.errors import ConfigError
from ganforge.inference.pix2pix import (
    UPSAMPLE,
    Pix2PixInferenceConfig,
    Pix2PixModel,
    build_generator,
)
from ganforge.models.base import Family, Optimization
from ganforge.nn.blocks import NORMS, PatchDiscriminator, init_normal
from ganforge.nn.losses import lsgan

GAN_LOSSES = ("lsgan", "hinge")


@dataclass
class Pix2PixConfig:
    """Networks and losses of pix2pix; defaults are the paper's, but for the U-Net depth
    (6 levels: 64 px reach 1x1) and instance norm (the paper's batch norm at batch size 1)."""

    generator_channels: int = option(64, "channels of the U-Net's first layer (x2 per level)")
    generator_max_channels: int = option(512, "cap on the U-Net's channels (the paper: 8 x "
                                              "64 = 512)")
    generator_depth: int = option(6, "U-Net levels: the image side must be a multiple of "
                                      "2^depth (6: 64 px reach 1x1)")
    dropout: float = option(0.5, "dropout in the U-Net's three innermost decoder layers "
                                 "(training only)")
    upsample: str = option("transpose", "how the U-Net's decoder doubles the resolution: "
                                        "transpose (the paper's transposed conv) or resize "
                                        "(nearest x2 + conv3x3: no checkerboard)")
    residual: bool = option(False, "the U-Net adds its output to the input image (starts as "
                                   "the identity map; learns the change)")
    residual_blur: int = option(1, "with --residual: the change is averaged over blocks of "
                                   "this many pixels and smoothly up-sampled (only smooth "
                                   "shading; 1 = off)")
    input_scale: float = option(1.0, "shrink the input about its centre by this factor "
                                     "before the U-Net, when the target domain draws its "
                                     "subject smaller on the canvas (Fluent 3D emoji: 0.875 "
                                     "of Twemoji's size); 1 = off")
    discriminator_channels: int = option(64, "channels of the critic's first layer")
    discriminator_layers: int = option(3, "strided layers of the PatchGAN (3 = 70x70 patches, "
                                          "2 = 34x34)")
    norm: str = option("instance", "normalisation: instance, batch or none")
    gan_loss: str = option("lsgan", "adversarial loss: lsgan or hinge")
    l1_weight: float = option(100.0, "weight of the L1 loss to the true target")
    feature_matching_weight: float = option(0.0, "weight of the critic-feature-matching loss "
                                                 "(pix2pixHD: L1 between the critic's hidden "
                                                 "activations on the output and on the true "
                                                 "target; 0 = off)")
    lr: float = option(2e-4, "Adam learning rate of generator and critic")
    beta1: float = option(0.5, "Adam beta1")
    beta2: float = option(0.999, "Adam beta2")

    def validate(self) -> Pix2PixConfig:
        """Check values; raise ConfigError naming the first bad one."""
        for name in ("generator_channels", "generator_max_channels", "generator_depth",
                     "discriminator_channels",
                     "discriminator_layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, "
                                  f"got {getattr(self, name)}")
        if self.generator_depth < 2:
            raise ConfigError(f"--generator-depth must be at least 2, got "
                              f"{self.generator_depth}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.norm not in NORMS:
            raise ConfigError(f"--norm {self.norm!r} is unknown; known: {', '.join(NORMS)}")
        if self.gan_loss not in GAN_LOSSES:
            raise ConfigError(f"--gan-loss {self.gan_loss!r} is unknown; "
                              f"known: {', '.join(GAN_LOSSES)}")
        if self.upsample not in UPSAMPLE:
            raise ConfigError(f"--upsample {self.upsample!r} is unknown; "
                              f"known: {', '.join(UPSAMPLE)}")
        for name in ("l1_weight", "feature_matching_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, "
                                  f"got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}")
        if self.residual_blur < 1 or (self.residual_blur > 1 and not self.residual):
            raise ConfigError(f"--residual-blur {self.residual_blur} must be >= 1, and > 1 "
                              "only with --residual")
        if not 0 < self.input_scale <= 1:
            raise ConfigError(f"--input-scale must be in (0, 1], got {self.input_scale}")
        return self


@dataclass
class PairedDataConfig:
    """Two folders of images paired by file name."""

    domain_a: str = option("", "folder of input images (nested folders are read too)")
    domain_b: str = option("", "folder of their true translations, same file names "
                               "(suffixes may differ)")
    size: int = option(64, "training resolution (images are resized and centre-cropped)")
    background: str = option("white", "colour that transparent pixels are composited onto")
    flip: bool = option(True, "random left-right flips (the same for both images of a pair)")
    jitter: int = option(4, "random shift of up to this many pixels (the same for both images "
                            "of a pair; 0 = off)")
    allow_upscale: bool = option(False, "accept images smaller than --size by upscaling them")

    def validate(self) -> PairedDataConfig:
        """Check values; raise ConfigError naming the first bad one."""
        for name in ("domain_a", "domain_b"):
            if not getattr(self, name):
                raise ConfigError(f"--{name.replace('_', '-')} is required: a folder of images")
        check_size(self.size)
        parse_color(self.background)
        if not 0 <= self.jitter < self.size // 2:
            raise ConfigError(f"--jitter must be in [0, {self.size // 2}), got {self.jitter}")
        return self


def generator_adversarial(kind: str, fake_scores: torch.Tensor) -> torch.Tensor:
    """The generator's adversarial loss on the critic's scores of its outputs."""
    if kind == "hinge":
        return -fake_scores.float().mean()
    return lsgan(fake_scores, True)


def critic_adversarial(kind: str, real_scores: torch.Tensor,
                       fake_scores: torch.Tensor) -> torch.Tensor:
    """The critic's loss: true pairs scored real, generated pairs fake (halved, as in the
    paper, to slow the critic relative to the generator)."""
    if kind == "hinge":
        return 0.5 * (F.relu(1 - real_scores.float()).mean()
                      + F.relu(1 + fake_scores.float()).mean())
    return 0.5 * (lsgan(real_scores, True) + lsgan(fake_scores, False))


class Pix2Pix(Family):
    """Paired translation A -> B: U-Net generator, conditional PatchGAN critic, L1 + GAN."""

    name = "pix2pix"
    task = "image-to-image"
    ModelConfig = Pix2PixConfig
    DataConfig = PairedDataConfig
    Inference = Pix2PixModel
    ema_networks = ("generator",)
    #: batch 16, as the shipped restyle model was trained: at 64 px a U-Net step of batch 1
    #: spends its time in per-layer overhead (6 % of this CPU's fp32 matmul peak; batch 8:
    #: 32 %, batch 32: 52 %; docs/benchmarks.md, CPU efficiency)
    train_defaults: ClassVar[dict[str, Any]] = {"batch_size": 16}

    @classmethod
    def build(cls, model_config: Pix2PixConfig) -> dict[str, nn.Module]:
        c = model_config
        nets = {"generator": build_generator(c),
                "critic": PatchDiscriminator(c.discriminator_channels, c.discriminator_layers,
                                             c.norm, in_channels=6)}
        for net in nets.values():
            init_normal(net)
        if model_config.residual:
            nets["generator"].zero_residual()
        return nets

    @classmethod
    def inference_config(cls, model_config: Pix2PixConfig,
                         data_config: PairedDataConfig) -> Pix2PixInferenceConfig:
        c = model_config
        return Pix2PixInferenceConfig(
            size=data_config.size, background=data_config.background,
            generator_channels=c.generator_channels,
            generator_max_channels=c.generator_max_channels, generator_depth=c.generator_depth,
            norm=c.norm, dropout=c.dropout, upsample=c.upsample, residual=c.residual,
            input_scale=c.input_scale, residual_blur=c.residual_blur)

    def load_data(self, data_config: PairedDataConfig, seed: int) -> PairedImages:
        levels = 2 ** self.config.generator_depth
        if data_config.size % levels:
            raise ConfigError(f"--size {data_config.size} is not a multiple of "
                              f"2^--generator-depth = {levels}: pick a size that is, or a "
                              f"smaller --generator-depth")
        pairing = pair_by_name(data_config.domain_a, data_config.domain_b)
        a, b, _ = load_pairs(pairing.pairs, data_config.size, parse_color(data_config.background),
                             data_config.allow_upscale)
        return PairedImages(a, b, flip=data_config.flip, jitter=data_config.jitter)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c, n = self.config, self.networks
        betas = (c.beta1, c.beta2)
        return {"generator": torch.optim.Adam(n["generator"].parameters(), lr=c.lr, betas=betas),
                "critic": torch.optim.Adam(n["critic"].parameters(), lr=c.lr, betas=betas)}

    def step(self, nets: Mapping[str, nn.Module], batch: dict[str, torch.Tensor],
             opt: Optimization) -> dict[str, torch.Tensor]:
        c = self.config
        real_a, real_b = batch["a"], batch["b"]

        with opt.autocast():
            fake_b = nets["generator"](real_a)
            scores, fake_features = nets["critic"](torch.cat([real_a, fake_b], 1),
                                                   features=True)
            g_adv = generator_adversarial(c.gan_loss, scores)
            l1 = F.l1_loss(fake_b.float(), real_b)
            loss = g_adv + c.l1_weight * l1
            logs = {}
            if c.feature_matching_weight > 0:
                with torch.no_grad():
                    _, real_features = nets["critic"](torch.cat([real_a, real_b], 1),
                                                      features=True)
                fm = sum(F.l1_loss(f.float(), r.float())
                         for f, r in zip(fake_features, real_features, strict=True))
                fm = fm / len(fake_features)
                loss = loss + c.feature_matching_weight * fm
                logs["fm"] = fm.detach()
        opt.minimize("generator", loss)

        with opt.autocast():
            d = critic_adversarial(c.gan_loss,
                                   nets["critic"](torch.cat([real_a, real_b], 1)),
                                   nets["critic"](torch.cat([real_a, fake_b.detach()], 1)))
        opt.minimize("critic", d)
        return {"g_adv": g_adv.detach(), "l1": l1.detach(), "d": d.detach(), **logs}

    @torch.no_grad()
    def quality(self, nets: Mapping[str, nn.Module],
                batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """Mean absolute error to the true targets in [0, 1] units (lower is better)."""
        fake = nets["generator"](batch["a"]).float()
        return {"paired_l1": float((fake - batch["b"].float()).abs().mean() / 2)}

    @torch.no_grad()
    def sample_rows(self, nets: Mapping[str, nn.Module],
                    batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        return [batch["a"], nets["generator"](batch["a"]), batch["b"]]
