"""x4 (or x2) super-resolution GAN in the ESRGAN school (Wang et al. 2018).

Generator (in ``ganforge.inference.esrgan``, with the model a trained run exports):
residual-in-residual dense blocks (RRDB: three 5-conv dense blocks inside a residual, every
residual scaled by ``residual_scale``, no batch norm), a trunk skip, then x2
nearest-neighbour up-sampling + conv stages. One deviation for small CPU-sized models: by
default the network predicts the residual over a bicubic up-sampling of its input, with a
zero-initialised last layer, so an untrained generator is exactly bicubic and every step of
learning is spent on what bicubic misses.

Critic: a spectrally normalised patch critic on high-resolution crops, trained with the
relativistic average loss (RaGAN): "is this real patch more realistic than the average fake
one?", and symmetrically for the generator.

Losses of the generator: ``pixel_weight`` x L1 + ``feature_weight`` x feature loss +
``adversarial_weight`` x RaGAN. ESRGAN's feature loss compares VGG19 activations; that needs
downloaded ImageNet weights, which ganforge never fetches. We use a **multi-scale gradient +
frequency loss** instead (:func:`gradient_frequency_loss`): L1 between the horizontal and
vertical finite differences of output and target at 1/1, 1/2 and 1/4 scale, plus L1 between
their Fourier amplitude spectra. Why this and not the alternatives: it is deterministic, has no
parameters and costs almost nothing on a CPU; it weighs exactly what plain L1 under-weights
(edges and high frequencies, whose loss is the blur of PSNR-trained models); a fixed randomly
initialised conv net gives features whose usefulness depends on the seed and its scale, and the
critic's own features are a moving target that does not exist yet during the L1-only warm-up.

Training follows ESRGAN's two phases in one run: the first ``warmup_steps`` optimiser steps
are L1 only (the PSNR-oriented pre-training), then the feature and adversarial losses start
and the critic trains. Data: high-resolution images (transparency composited), their
low-resolution versions made by bicubic (antialiased) down-sampling once in ``load_data``, and
aligned random crops.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.nn.utils import spectral_norm

from ganforge.config import option
from ganforge.data.datasets import spread
from ganforge.data.images import ImageFolder, check_size, parse_color, to_tensor, uint8_to_float
from ganforge.errors import ConfigError
from ganforge.inference.esrgan import ESRGANInferenceConfig, ESRGANModel, build_generator
from ganforge.models.base import Family, Optimization

SCALES = (2, 4)


@dataclass
class ESRGANConfig:
    """Networks and losses of the super-resolution GAN (defaults: small enough for a CPU)."""

    scale: int = option(4, "upscaling factor: 2 or 4")
    channels: int = option(32, "feature channels of the generator (64 in the paper)")
    growth: int = option(16, "growth channels of each dense block (32 in the paper)")
    blocks: int = option(2, "residual-in-residual dense blocks (23 in the paper)")
    residual_scale: float = option(0.2, "scale of every residual branch (0.2 in the paper)")
    bicubic_skip: bool = option(True, "predict the residual over bicubic up-sampling")
    discriminator_channels: int = option(32, "channels of the critic's first layer")
    pixel_weight: float = option(1.0, "weight of the L1 loss after the warm-up")
    feature_weight: float = option(1.0, "weight of the multi-scale gradient + frequency loss")
    adversarial_weight: float = option(5e-3, "weight of the relativistic adversarial loss "
                                       "(5e-3 in the paper; 0 = no GAN)")
    warmup_steps: int = option(0, "L1-only (PSNR-oriented) steps before the GAN losses start")
    lr_generator: float = option(2e-4, "Adam learning rate of the generator")
    lr_discriminator: float = option(2e-4, "Adam learning rate of the critic")
    beta1: float = option(0.9, "Adam beta1")
    beta2: float = option(0.99, "Adam beta2")

    def validate(self) -> ESRGANConfig:
        """Check values; raise ConfigError naming the first bad one."""
        if self.scale not in SCALES:
            raise ConfigError(f"--scale {self.scale} is not supported: expected 2 or 4")
        for name in ("channels", "growth", "blocks", "discriminator_channels"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, "
                                  f"got {getattr(self, name)}")
        for name in ("pixel_weight", "feature_weight", "adversarial_weight", "warmup_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, "
                                  f"got {getattr(self, name)}")
        if not 0 < self.residual_scale <= 1:
            raise ConfigError(f"--residual-scale must be in (0, 1], got {self.residual_scale}")
        if self.lr_generator <= 0 or self.lr_discriminator <= 0:
            raise ConfigError("--lr-generator and --lr-discriminator must be positive")
        return self


@dataclass
class SuperResolutionDataConfig:
    """A folder of high-resolution images; low-resolution inputs are made from them."""

    images: str = option("", "folder of high-resolution images (nested folders are read too)")
    size: int = option(256, "images are resized and centre-cropped to this size first")
    crop: int = option(128, "side of the random high-resolution training crops "
                       "(a multiple of --scale)")
    background: str = option("white", "colour that transparent pixels are composited onto")
    flip: bool = option(True, "random left-right flips")
    allow_upscale: bool = option(False, "accept images smaller than --size by upscaling them")

    def validate(self) -> SuperResolutionDataConfig:
        """Check values; raise ConfigError naming the first bad one."""
        if not self.images:
            raise ConfigError("--images is required: a folder of high-resolution images")
        check_size(self.size)
        if not 8 <= self.crop <= self.size:
            raise ConfigError(f"--crop {self.crop} must be in 8..--size ({self.size})")
        parse_color(self.background)
        return self


# ----------------------------------------------------------------------------- critic
class PatchCritic(nn.Module):
    """High-resolution images [B, 3, H, W] -> realism logits [B, 1, H/8, W/8]; spectral norm,
    no batch norm (RaGAN compares batch means, which batch norm would blur)."""

    def __init__(self, channels: int):
        super().__init__()
        c = channels
        plan = [(3, c, 3, 1), (c, c, 4, 2), (c, 2 * c, 3, 1), (2 * c, 2 * c, 4, 2),
                (2 * c, 4 * c, 3, 1), (4 * c, 4 * c, 4, 2)]
        layers: list[nn.Module] = []
        for in_ch, out_ch, kernel, stride in plan:
            layers += [spectral_norm(nn.Conv2d(in_ch, out_ch, kernel, stride, 1)),
                       nn.LeakyReLU(0.2, inplace=True)]
        layers.append(spectral_norm(nn.Conv2d(4 * c, 1, 3, 1, 1)))
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


# ------------------------------------------------------------------------------ losses
def gradient_frequency_loss(pred: torch.Tensor, target: torch.Tensor,
                            scales: int = 3) -> torch.Tensor:
    """Feature loss that needs no pretrained network: pred, target [B, 3, H, W] -> scalar.

    L1 between horizontal and vertical finite differences at ``scales`` dyadic scales
    (2x2 average pooling between them), plus L1 between the Fourier amplitude spectra
    (orthonormal ``rfft2``, so amplitudes are on the scale of pixel values)."""
    pred, target = pred.float(), target.float()
    loss = F.l1_loss(torch.fft.rfft2(pred, norm="ortho").abs(),
                     torch.fft.rfft2(target, norm="ortho").abs())
    for level in range(scales):
        if level:
            if min(pred.shape[-2:]) < 4:
                break
            pred, target = F.avg_pool2d(pred, 2), F.avg_pool2d(target, 2)
        loss = loss + F.l1_loss(pred.diff(dim=-1), target.diff(dim=-1))
        loss = loss + F.l1_loss(pred.diff(dim=-2), target.diff(dim=-2))
    return loss


def relativistic_loss(real: torch.Tensor, fake: torch.Tensor, fake_is_real: bool
                      ) -> torch.Tensor:
    """Relativistic average GAN loss on critic logits (any shape; the average runs over
    batch and patches). ``fake_is_real=False``: the critic's loss; True: the generator's."""
    real_vs_fake = real - fake.mean()
    fake_vs_real = fake - real.mean()
    target_real = torch.zeros_like if fake_is_real else torch.ones_like
    target_fake = torch.ones_like if fake_is_real else torch.zeros_like
    return 0.5 * (
        F.binary_cross_entropy_with_logits(real_vs_fake, target_real(real_vs_fake))
        + F.binary_cross_entropy_with_logits(fake_vs_real, target_fake(fake_vs_real)))


# -------------------------------------------------------------------------------- data
def bicubic_downscale(image: Image.Image, scale: int) -> Image.Image:
    """The low-resolution version of an RGB image: antialiased bicubic down-sampling (PIL),
    the usual protocol of super-resolution benchmarks. Sides are floored to a multiple."""
    w, h = image.size
    return image.resize((w // scale, h // scale), Image.BICUBIC)


def bicubic_upscale(image: Image.Image, scale: int) -> Image.Image:
    """The baseline every super-resolution model is compared with: PIL bicubic up-sampling."""
    w, h = image.size
    return image.resize((w * scale, h * scale), Image.BICUBIC)


class SuperResolutionCrops:
    """Aligned random crops: batch {"lr": [B, 3, c/s, c/s], "hr": [B, 3, c, c]} in [-1, 1].

    ``hr`` uint8 [N, 3, S, S], ``lr`` uint8 [N, 3, S/s, S/s]; crops are taken on the
    low-resolution grid so both stay aligned; offsets and flips use the global torch RNG
    (seeded and checkpointed by the loop)."""

    def __init__(self, hr: torch.Tensor, lr: torch.Tensor, scale: int, crop: int,
                 flip: bool = True):
        self.hr, self.lr, self.scale, self.flip = hr, lr, scale, flip
        self.lr_crop = crop // scale

    def __len__(self) -> int:
        return len(self.hr)

    def _crops(self, indices: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor
               ) -> dict[str, torch.Tensor]:
        s, c = self.scale, self.lr_crop
        lr = torch.stack([self.lr[i, :, t:t + c, x:x + c]
                          for i, t, x in zip(indices.tolist(), tops.tolist(), lefts.tolist(),
                                             strict=True)])
        hr = torch.stack([self.hr[i, :, t * s:(t + c) * s, x * s:(x + c) * s]
                          for i, t, x in zip(indices.tolist(), tops.tolist(), lefts.tolist(),
                                             strict=True)])
        return {"lr": uint8_to_float(lr), "hr": uint8_to_float(hr)}

    def batch(self, indices: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
        room = self.lr.shape[-1] - self.lr_crop + 1
        tops = torch.randint(room, (len(indices),))
        lefts = torch.randint(room, (len(indices),))
        out = self._crops(indices, tops, lefts)
        if self.flip:
            flips = torch.rand(len(indices)) < 0.5
            for key in out:
                out[key][flips] = out[key][flips].flip(-1)
        return out

    def preview(self, count: int) -> dict[str, torch.Tensor]:
        indices = spread(len(self), count)
        centre = torch.full((len(indices),), (self.lr.shape[-1] - self.lr_crop) // 2)
        return self._crops(indices, centre, centre)


# ------------------------------------------------------------------------------ family
class ESRGAN(Family):
    """Super-resolution GAN (ESRGAN school): RRDB generator, relativistic patch critic."""

    name = "esrgan"
    task = "super-resolution"
    ModelConfig = ESRGANConfig
    DataConfig = SuperResolutionDataConfig
    Inference = ESRGANModel
    ema_networks = ("generator",)
    train_defaults: ClassVar[dict[str, Any]] = {"batch_size": 8, "sample_every": 200,
                                                "checkpoint_every": 200}

    @classmethod
    def build(cls, model_config: ESRGANConfig) -> dict[str, nn.Module]:
        c = model_config
        return {"generator": build_generator(c),
                "critic": PatchCritic(c.discriminator_channels)}

    @classmethod
    def inference_config(cls, model_config: ESRGANConfig,
                         data_config: SuperResolutionDataConfig) -> ESRGANInferenceConfig:
        c = model_config
        return ESRGANInferenceConfig(
            scale=c.scale, channels=c.channels, growth=c.growth, blocks=c.blocks,
            residual_scale=c.residual_scale, bicubic_skip=c.bicubic_skip,
            background=data_config.background)

    def load_data(self, data_config: SuperResolutionDataConfig,
                  seed: int) -> SuperResolutionCrops:
        scale, size = self.config.scale, data_config.size
        if data_config.crop % scale or size % scale:
            raise ConfigError(f"--crop {data_config.crop} and --size {size} must be multiples "
                              f"of --scale {scale}")
        folder = ImageFolder.load(data_config.images, size, parse_color(data_config.background),
                                  data_config.allow_upscale)
        lr = torch.stack([to_tensor(bicubic_downscale(Image.fromarray(
            image.permute(1, 2, 0).numpy()), scale)) for image in folder.images])
        return SuperResolutionCrops(folder.images, lr, scale, data_config.crop,
                                    data_config.flip)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c, n = self.config, self.networks
        if c.warmup_steps:  # the critic's schedule ticks before its first step: expected here
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step")
        betas = (c.beta1, c.beta2)
        self._optimizers = {
            "generator": torch.optim.Adam(n["generator"].parameters(), lr=c.lr_generator,
                                          betas=betas),
            "critic": torch.optim.Adam(n["critic"].parameters(), lr=c.lr_discriminator,
                                       betas=betas)}
        return self._optimizers

    def generator_updates(self) -> int:
        """Optimiser steps the generator has taken (read from Adam's state, so it survives
        resuming and counts a step once under gradient accumulation)."""
        opt = self._optimizers["generator"]
        state = opt.state.get(opt.param_groups[0]["params"][0], {})
        return int(state.get("step", 0))

    def step(self, nets: Mapping[str, nn.Module], batch: dict[str, torch.Tensor],
             opt: Optimization) -> dict[str, torch.Tensor]:
        c = self.config
        lr, hr = batch["lr"], batch["hr"]
        warming_up = self.generator_updates() < c.warmup_steps
        gan = not warming_up and c.adversarial_weight > 0
        zero = torch.zeros((), device=hr.device)
        feature, g_adv, d_loss = zero, zero, zero
        critic = nets["critic"]

        with opt.autocast():
            sr = nets["generator"](lr).float()
            pixel = F.l1_loss(sr, hr)
            if warming_up:
                loss_g = pixel
            else:
                feature = gradient_frequency_loss(sr, hr)
                loss_g = c.pixel_weight * pixel + c.feature_weight * feature
                if gan:
                    g_adv = relativistic_loss(critic(hr).float(), critic(sr).float(),
                                              fake_is_real=True)
                    loss_g = loss_g + c.adversarial_weight * g_adv
        opt.minimize("generator", loss_g)

        if gan:
            with opt.autocast():
                d_loss = relativistic_loss(critic(hr).float(), critic(sr.detach()).float(),
                                           fake_is_real=False)
            opt.minimize("critic", d_loss)
        return {name: value.detach() for name, value in
                {"l1": pixel, "feature": feature, "g_adv": g_adv, "critic": d_loss}.items()}

    @torch.no_grad()
    def sample_rows(self, nets: Mapping[str, nn.Module],
                    batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        lr, hr = batch["lr"], batch["hr"]
        bicubic = F.interpolate(lr, scale_factor=float(self.config.scale), mode="bicubic",
                                align_corners=False)
        return [bicubic.clamp(-1, 1), nets["generator"](lr).float().clamp(-1, 1), hr]
