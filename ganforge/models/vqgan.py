"""Image tokenizer in the VQGAN school (Esser et al. 2021): images <-> a grid of discrete codes.

Encoder: convolutional residual stages, each halving the resolution, to a ``code_dim`` latent
per cell (64 px with two halvings: a 16x16 grid). Quantiser: l2-normalised codes looked up by
cosine similarity, codebook + commitment loss, dead codes restarted from the batch's latents
(:mod:`ganforge.nn.quantize`). Decoder: the mirror of the encoder. These three are defined in
``ganforge.inference.vqgan`` with the :class:`ImageTokenizer` a trained run exports; the patch
critic and the training recipe are here.

Losses: L1 reconstruction; a feature loss, L1 between the patch critic's features of the real
and the reconstructed image at every scale; after ``adversarial_start`` steps a hinge patch
adversarial loss. Why that feature loss: LPIPS needs downloaded VGG weights, which we do not
allow. Until the warm-up ends the critic is frozen at its seeded random initialisation, and
the features of a random conv net already make a usable perceptual loss (edges and colour
blobs at several scales, more tolerant of sub-pixel shifts than L1); once the critic trains,
the loss becomes pix2pixHD's feature matching on learnt features.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.config import option
from ganforge.data.captions import CaptionedImages
from ganforge.data.datasets import random_flip, spread
from ganforge.data.images import ImageFolder, check_size, parse_color, uint8_to_float
from ganforge.errors import ConfigError
from ganforge.inference.vqgan import (
    Decoder,
    Encoder,
    ImageTokenizer,
    VQGANInferenceConfig,
    build_quantizer,
)
from ganforge.models.base import Family, Optimization


@dataclass
class VQGANConfig:
    """Networks and losses of the image tokenizer."""

    size: int = option(64, "image size (a multiple of 2^downsample)")
    downsample: int = option(2, "halvings from image to token grid (64 px, 2 -> 16x16 tokens)")
    channels: int = option(32, "channels of the first encoder stage (doubled per halving)")
    codebook_size: int = option(512, "number of codes")
    code_dim: int = option(16, "dimension of each code (looked up on the unit sphere)")
    commitment: float = option(0.25, "weight of the commitment loss (beta)")
    restart_threshold: float = option(0.03, "restart a code once its average use falls below "
                                      "this fraction of the uniform rate (0 = never)")
    feature_weight: float = option(1.0, "weight of the critic-feature loss")
    adversarial_weight: float = option(0.1, "weight of the patch adversarial loss")
    adversarial_start: int = option(1000, "training steps before the critic trains and the "
                                    "adversarial loss starts (micro-batches with grad-accum)")
    discriminator_channels: int = option(32, "channels of the patch critic's first layer")
    lr: float = option(2e-4, "Adam learning rate of the autoencoder and the critic")
    beta1: float = option(0.5, "Adam beta1")
    beta2: float = option(0.9, "Adam beta2")

    @property
    def grid(self) -> int:
        """Side of the token grid."""
        return self.size >> self.downsample

    def validate(self) -> VQGANConfig:
        """Check values; raise ConfigError naming the first bad one."""
        check_size(self.size)
        if not 1 <= self.downsample <= 5 or self.size % (1 << self.downsample):
            raise ConfigError(f"--downsample {self.downsample} does not fit --size {self.size}: "
                              "expected 1..5 halvings that divide the size")
        for name in ("channels", "codebook_size", "code_dim", "discriminator_channels"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        if self.codebook_size < 2:
            raise ConfigError(f"--codebook-size must be at least 2, got {self.codebook_size}")
        for name in ("commitment", "restart_threshold", "feature_weight", "adversarial_weight",
                     "adversarial_start"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0")
        if self.lr <= 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}")
        return self


@dataclass
class TokenizerDataConfig:
    """A folder of images, or a captions file whose images are used (captions ignored)."""

    images: str = option("", "folder of training images (nested folders are read too)")
    captions: str = option("", "or: a JSONL/CSV captions file; its images are used")
    image_template: str = option("", "with --captions: image paths from row fields, e.g. "
                                 "'twitter/64/{id}.png'")
    split: str = option("train", "with --captions: keep rows of this split ('' = all)")
    background: str = option("white", "colour that transparent pixels are composited onto")
    flip: bool = option(False, "random left-right flips")
    allow_upscale: bool = option(False, "accept images smaller than --size by upscaling them")

    def validate(self) -> TokenizerDataConfig:
        """Check values; raise ConfigError naming the first bad one."""
        if bool(self.images) == bool(self.captions):
            raise ConfigError("give exactly one of --images DIR or --captions FILE")
        parse_color(self.background)
        return self


class ImagesOnly:
    """A training dataset of images alone: batch {"images": [B, 3, H, W] in [-1, 1]}."""

    def __init__(self, images: torch.Tensor, flip: bool):
        self.images, self.flip = images, flip

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, indices: torch.Tensor, epoch: int) -> dict[str, Any]:
        images = uint8_to_float(self.images[indices])
        return {"images": random_flip(images) if self.flip else images}

    def preview(self, count: int) -> dict[str, Any]:
        return {"images": uint8_to_float(self.images[spread(len(self), count)])}


class PatchCritic(nn.Module):
    """Images [B, 3, S, S] -> (patch scores [B, 1, S/8, S/8], features at each scale)."""

    def __init__(self, channels: int):
        super().__init__()
        plan = [channels, channels * 2, channels * 4]
        self.stages = nn.ModuleList()
        previous = 3
        for ch in plan:
            self.stages.append(nn.Sequential(nn.Conv2d(previous, ch, 4, 2, 1),
                                             nn.LeakyReLU(0.2, inplace=True)))
            previous = ch
        self.head = nn.Conv2d(previous, 1, 3, 1, 1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features, x = [], images
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return self.head(x), features


class VQGAN(Family):
    """Image tokenizer: a VQ autoencoder turning images into a grid of discrete codes."""

    name = "tokenizer"
    task = "tokenizer"
    ModelConfig = VQGANConfig
    DataConfig = TokenizerDataConfig
    Inference = ImageTokenizer
    ema_networks = ("encoder", "quantizer", "decoder")
    compile_networks = ("encoder", "decoder", "discriminator")
    # The exported networks are the live ones (EMA decay 0): an average of codebooks whose
    # dead codes were restarted would be codes no encoder output is near.
    train_defaults: ClassVar[dict[str, Any]] = {
        "batch_size": 32, "lr_decay_start": 0.8, "ema_decay": 0.0, "sample_every": 500,
        "checkpoint_every": 1000, "num_samples": 8}

    def __init__(self, model_config: VQGANConfig):
        super().__init__(model_config)
        self.steps_done = 0

    @classmethod
    def build(cls, model_config: VQGANConfig) -> dict[str, nn.Module]:
        c = model_config
        return {"encoder": Encoder(c.channels, c.downsample, c.code_dim),
                "quantizer": build_quantizer(c),
                "decoder": Decoder(c.channels, c.downsample, c.code_dim),
                "discriminator": PatchCritic(c.discriminator_channels)}

    @classmethod
    def inference_config(cls, model_config: VQGANConfig,
                         data_config: TokenizerDataConfig) -> VQGANInferenceConfig:
        c = model_config
        return VQGANInferenceConfig(
            size=c.size, downsample=c.downsample, channels=c.channels,
            codebook_size=c.codebook_size, code_dim=c.code_dim, commitment=c.commitment,
            restart_threshold=c.restart_threshold, background=data_config.background)

    def load_data(self, data_config: TokenizerDataConfig, seed: int) -> Any:
        background = parse_color(data_config.background)
        if data_config.images:
            folder = ImageFolder.load(data_config.images, self.config.size, background,
                                      allow_upscale=data_config.allow_upscale)
            return ImagesOnly(folder.images, data_config.flip)
        data = CaptionedImages.load(
            data_config.captions, self.config.size, background,
            image_template=data_config.image_template or None,
            split=data_config.split or None, allow_upscale=data_config.allow_upscale, seed=seed)
        return ImagesOnly(data.images, data_config.flip)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c, n = self.config, self.networks
        autoencoder = [p for name in ("encoder", "quantizer", "decoder")
                       for p in n[name].parameters()]
        return {"autoencoder": torch.optim.Adam(autoencoder, lr=c.lr, betas=(c.beta1, c.beta2)),
                "discriminator": torch.optim.Adam(n["discriminator"].parameters(), lr=c.lr,
                                                  betas=(c.beta1, c.beta2))}

    def step(self, nets: Mapping[str, nn.Module], batch: dict[str, Any],
             opt: Optimization) -> dict[str, torch.Tensor]:
        c = self.config
        real = batch["images"]
        adversarial = self.steps_done >= c.adversarial_start
        self.steps_done += 1
        critic = nets["discriminator"]
        with opt.autocast():
            quantized = nets["quantizer"](nets["encoder"](real))
            fake = nets["decoder"](quantized.latents.to(real.dtype))
            l1 = (fake.float() - real.float()).abs().mean()
            loss = l1 + quantized.loss
            zero = torch.zeros((), device=real.device)
            feature, loss_g = zero, zero
            if c.feature_weight > 0 or adversarial:
                fake_scores, fake_features = critic(fake)
                with torch.no_grad():
                    _, real_features = critic(real)
                feature = sum(((f.float() - r.float()).abs().mean() for f, r in
                               zip(fake_features, real_features, strict=True)), zero)
                loss = loss + c.feature_weight * feature
                if adversarial:
                    loss_g = -fake_scores.float().mean()
                    loss = loss + c.adversarial_weight * loss_g
        opt.minimize("autoencoder", loss)
        loss_d = zero
        if adversarial:
            with opt.autocast():
                real_scores, _ = critic(real)
                fake_scores, _ = critic(fake.detach())
                loss_d = (F.relu(1 - real_scores.float()).mean()
                          + F.relu(1 + fake_scores.float()).mean())
            opt.minimize("discriminator", loss_d)
        elif self.steps_done == 1:  # an empty first step: the critic's schedule starts in order
            opt.minimize("discriminator", 0.0 * self.networks["discriminator"].head.bias.sum())
        return {name: v.detach().float() for name, v in {
            "l1": l1, "vq": quantized.loss, "feature": feature, "g": loss_g, "d": loss_d,
            "perplexity": quantized.perplexity, "usage": quantized.usage,
            "restarted": quantized.restarted}.items()}

    @torch.no_grad()
    def sample_rows(self, nets: Mapping[str, nn.Module],
                    batch: dict[str, Any]) -> list[torch.Tensor]:
        real = batch["images"]
        quantizer = nets["quantizer"]
        codes = quantizer(nets["encoder"](real)).codes
        return [real, nets["decoder"](quantizer.lookup(codes).to(real.dtype)).clamp(-1, 1)]

    def state_dict(self) -> dict[str, Any]:
        return {"steps_done": self.steps_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps_done = int(state.get("steps_done", 0))
