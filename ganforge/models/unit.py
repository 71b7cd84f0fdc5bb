"""UNIT (Liu, Breuel & Kautz 2017): unpaired translation through one shared latent space.

Each domain has a VAE: an encoder to a latent feature map and a decoder back. The encoders'
last residual blocks and the decoders' first ones are shared (``enc_shared``, ``dec_shared``),
so an image of either domain lands in the same latent space and a2b is
``decoder_b(encoder_a(x))``. Losses: VAE reconstruction (L1) with a KL term per domain, a
least-squares GAN loss per domain (a PatchGAN critic each), and cycle reconstruction through
the latent (a -> z -> b -> z' -> a). As in the authors' PyTorch code the posterior is
N(mu, I): the encoder gives mu, z = mu + noise, and the KL term is mean(mu^2).

The VAEs and the exported model (which decodes the latent mean, or with ``generator=`` draws
z = mu + noise, giving several outputs per input) are in ``ganforge.inference.unit``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.config import option
from ganforge.data.datasets import UnpairedImages
from ganforge.errors import ConfigError
from ganforge.inference.unit import (
    VAE_NETWORKS,
    UNITInferenceConfig,
    UNITModel,
    build_vaes,
    cross_domain,
    decode,
    encode,
)
from ganforge.models.base import Family, Optimization
from ganforge.models.cyclegan import CycleGAN, UnpairedDataConfig
from ganforge.nn.blocks import NORMS, PatchDiscriminator, init_normal
from ganforge.nn.losses import ADVERSARIAL

DOMAINS = ("a", "b")


@dataclass
class UNITConfig:
    """Networks and losses of a UNIT translator; defaults follow the authors' PyTorch code."""

    channels: int = option(64, "channels of the encoders' first layer (x2 per downsampling)")
    downsamplings: int = option(2, "stride-2 steps from image to latent (latent = size / 2^n)")
    blocks: int = option(4, "residual blocks in each encoder and in each decoder")
    shared_blocks: int = option(1, "of those, the encoders' last and the decoders' first "
                                   "blocks shared by both domains")
    discriminator_channels: int = option(64, "channels of the critics' first layer")
    discriminator_layers: int = option(3, "strided layers of the PatchGAN (3 = 70x70 patches)")
    norm: str = option("instance", "normalisation: instance, batch or none")
    gan_loss: str = option("lsgan", "adversarial loss: lsgan or vanilla")
    gan_weight: float = option(1.0, "weight of the GAN losses")
    reconstruction_weight: float = option(10.0, "weight of the VAE reconstruction L1 loss")
    kl_weight: float = option(0.01, "weight of the VAE KL term")
    cycle_weight: float = option(10.0, "weight of the cycle reconstruction L1 loss")
    cycle_kl_weight: float = option(0.01, "weight of the KL term of the cycle's latents")
    lr: float = option(1e-4, "Adam learning rate of the VAEs and critics")
    beta1: float = option(0.5, "Adam beta1")
    beta2: float = option(0.999, "Adam beta2")
    weight_decay: float = option(1e-4, "Adam weight decay")

    def validate(self) -> UNITConfig:
        """Check values; raise ConfigError naming the first bad one."""
        for name in ("channels", "downsamplings", "blocks", "shared_blocks",
                     "discriminator_channels", "discriminator_layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, "
                                  f"got {getattr(self, name)}")
        if self.shared_blocks > self.blocks:
            raise ConfigError(f"--shared-blocks {self.shared_blocks} cannot exceed --blocks "
                              f"{self.blocks}")
        if self.norm not in NORMS:
            raise ConfigError(f"--norm {self.norm!r} is unknown; known: {', '.join(NORMS)}")
        if self.gan_loss not in ADVERSARIAL:
            raise ConfigError(f"--gan-loss {self.gan_loss!r} is unknown; "
                              f"known: {', '.join(ADVERSARIAL)}")
        for name in ("gan_weight", "reconstruction_weight", "kl_weight", "cycle_weight",
                     "cycle_kl_weight", "weight_decay"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, "
                                  f"got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}")
        return self


def kl_term(mu: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, I) || N(0, I)) up to a constant factor: the mean of mu^2."""
    return mu.float().pow(2).mean()


class UNIT(Family):
    """Unpaired image-to-image translation through a shared VAE latent (UNIT)."""

    name = "unit"
    task = "image-to-image"
    ModelConfig = UNITConfig
    DataConfig = UnpairedDataConfig
    Inference = UNITModel
    ema_networks = VAE_NETWORKS

    def __init__(self, model_config: UNITConfig):
        super().__init__(model_config)
        self.adversarial = ADVERSARIAL[model_config.gan_loss]

    @classmethod
    def build(cls, model_config: UNITConfig) -> dict[str, nn.Module]:
        c = model_config
        nets = {**build_vaes(c),
                "d_a": PatchDiscriminator(c.discriminator_channels, c.discriminator_layers,
                                          c.norm),
                "d_b": PatchDiscriminator(c.discriminator_channels, c.discriminator_layers,
                                          c.norm)}
        for net in nets.values():
            init_normal(net)
        return nets

    @classmethod
    def inference_config(cls, model_config: UNITConfig,
                         data_config: UnpairedDataConfig) -> UNITInferenceConfig:
        c = model_config
        return UNITInferenceConfig(
            size=data_config.size, background=data_config.background, channels=c.channels,
            downsamplings=c.downsamplings, blocks=c.blocks, shared_blocks=c.shared_blocks,
            norm=c.norm)

    def load_data(self, data_config: UnpairedDataConfig, seed: int) -> UnpairedImages:
        """The same folders, sizes and augmentation as CycleGAN; the size must halve
        ``downsamplings`` times."""
        factor = 2 ** self.config.downsamplings
        if data_config.size % factor:
            raise ConfigError(f"--size {data_config.size} is not a multiple of {factor} "
                              f"(2^--downsamplings {self.config.downsamplings})")
        return CycleGAN.load_data(self, data_config, seed)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c, n = self.config, self.networks
        vae = [p for name in self.ema_networks for p in n[name].parameters()]
        critics = [*n["d_a"].parameters(), *n["d_b"].parameters()]
        kwargs = {"lr": c.lr, "betas": (c.beta1, c.beta2), "weight_decay": c.weight_decay}
        return {"vaes": torch.optim.Adam(vae, **kwargs),
                "critics": torch.optim.Adam(critics, **kwargs)}

    def step(self, nets: Mapping[str, nn.Module], batch: dict[str, torch.Tensor],
             opt: Optimization) -> dict[str, torch.Tensor]:
        c, adv = self.config, self.adversarial
        real = {"a": batch["a"], "b": batch["b"]}
        other = {"a": "b", "b": "a"}

        with opt.autocast():
            mu = {d: encode(nets, d, real[d]) for d in DOMAINS}
            shared = {d: nets["dec_shared"](mu[d] + torch.randn_like(mu[d])) for d in DOMAINS}
            # fake[d]: the other domain's latent decoded into domain d
            fake = {d: decode(nets, d, shared[other[d]]) for d in DOMAINS}
            recon = sum(F.l1_loss(decode(nets, d, shared[d]).float(), real[d])
                        for d in DOMAINS)
            kl = sum(kl_term(mu[d]) for d in DOMAINS)
            g_adv = sum(adv(nets[f"d_{d}"](fake[d]), True) for d in DOMAINS)
            # cycle: fake[d] (in domain d) encoded and decoded back into the other domain
            mu_cycle = {d: encode(nets, d, fake[d]) for d in DOMAINS}
            cycle = sum(F.l1_loss(decode(nets, other[d], nets["dec_shared"](
                mu_cycle[d] + torch.randn_like(mu_cycle[d]))).float(), real[other[d]])
                for d in DOMAINS)
            cycle_kl = sum(kl_term(mu_cycle[d]) for d in DOMAINS)
        loss_vae = (c.gan_weight * g_adv + c.reconstruction_weight * recon + c.kl_weight * kl
                    + c.cycle_weight * cycle + c.cycle_kl_weight * cycle_kl)
        opt.minimize("vaes", loss_vae)

        with opt.autocast():
            d_loss = {d: 0.5 * (adv(nets[f"d_{d}"](real[d]), True)
                                + adv(nets[f"d_{d}"](fake[d].detach()), False))
                      for d in DOMAINS}
        opt.minimize("critics", d_loss["a"] + d_loss["b"])

        return {name: value.detach() for name, value in
                {"g_adv": g_adv, "recon": recon, "kl": kl, "cycle": cycle,
                 "cycle_kl": cycle_kl, "d_a": d_loss["a"], "d_b": d_loss["b"]}.items()}

    @torch.no_grad()
    def sample_rows(self, nets: Mapping[str, nn.Module],
                    batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Rows: A, A->B, A->B->A, B, B->A, B->A->B (latent means)."""
        rows = []
        for source, target in (("a", "b"), ("b", "a")):
            fake = cross_domain(nets, batch[source], source, target)
            rows += [batch[source], fake, cross_domain(nets, fake, target, source)]
        return rows
