"""CycleGAN (Zhu et al. 2017): unpaired translation between two image domains.

Two ResNet generators (A->B, B->A), two 70x70 PatchGAN critics, least-squares GAN loss,
cycle consistency (weight 10), identity loss (0.5 x cycle weight) and a history pool of 50
generated images that the critics see. The schedule (constant, then linear decay to zero)
belongs to the loop's TrainConfig. The exported model is ``ganforge.inference.cyclegan``'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.config import option
from ganforge.data.datasets import UnpairedImages
from ganforge.data.images import ImageFolder, check_size, parse_color
from ganforge.errors import ConfigError
from ganforge.inference.cyclegan import CycleGANInferenceConfig, CycleGANModel, build_generator
from ganforge.models.base import Family, Optimization
from ganforge.nn.blocks import NORMS, PatchDiscriminator, init_normal
from ganforge.nn.losses import ADVERSARIAL


@dataclass
class CycleGANConfig:
    """Networks and losses of a CycleGAN; defaults are the published recipe."""

    generator_blocks: int = option(9, "residual blocks in each generator (6 or 9 in the paper)")
    generator_channels: int = option(64, "channels of the generators' first layer")
    discriminator_channels: int = option(64, "channels of the critics' first layer")
    discriminator_layers: int = option(3, "strided layers of the PatchGAN (3 = 70x70 patches)")
    norm: str = option("instance", "normalisation: instance, batch or none")
    gan_loss: str = option("lsgan", "adversarial loss: lsgan or vanilla")
    cycle_weight: float = option(10.0, "weight of the cycle-consistency L1 loss")
    identity_weight: float = option(0.5, "identity loss weight, as a fraction of cycle_weight")
    pool_size: int = option(50, "generated images kept in the critics' history pool (0 = off)")
    lr: float = option(2e-4, "Adam learning rate of generators and critics")
    beta1: float = option(0.5, "Adam beta1")
    beta2: float = option(0.999, "Adam beta2")

    def validate(self) -> CycleGANConfig:
        """Check values; raise ConfigError naming the first bad one."""
        for name in ("generator_blocks", "generator_channels", "discriminator_channels",
                     "discriminator_layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, "
                                  f"got {getattr(self, name)}")
        if self.norm not in NORMS:
            raise ConfigError(f"--norm {self.norm!r} is unknown; known: {', '.join(NORMS)}")
        if self.gan_loss not in ADVERSARIAL:
            raise ConfigError(f"--gan-loss {self.gan_loss!r} is unknown; "
                              f"known: {', '.join(ADVERSARIAL)}")
        if self.pool_size < 0 or self.cycle_weight < 0 or self.identity_weight < 0:
            raise ConfigError("--pool-size, --cycle-weight and --identity-weight must be >= 0")
        if self.lr <= 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}")
        return self


@dataclass
class UnpairedDataConfig:
    """Two folders of images, not paired."""

    domain_a: str = option("", "folder of domain A images (nested folders are read too)")
    domain_b: str = option("", "folder of domain B images")
    size: int = option(64, "training resolution (images are resized and centre-cropped)")
    background: str = option("white", "colour that transparent pixels are composited onto")
    flip: bool = option(True, "random left-right flips")
    allow_upscale: bool = option(False, "accept images smaller than --size by upscaling them")

    def validate(self) -> UnpairedDataConfig:
        """Check values; raise ConfigError naming the first bad one."""
        for name in ("domain_a", "domain_b"):
            if not getattr(self, name):
                raise ConfigError(f"--{name.replace('_', '-')} is required: a folder of images")
        check_size(self.size)
        parse_color(self.background)
        return self


class ImagePool:
    """History of generated images (Shrivastava et al. 2017): the critic sees older fakes too.

    Each queried image is stored; once full, with probability 1/2 an older image is returned
    in its place and the new one takes its slot.
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """images: [B, 3, H, W] detached fakes -> [B, 3, H, W] mixed with history."""
        if self.capacity == 0:
            return images
        out = []
        for image in images:
            image = image.unsqueeze(0)
            if len(self.images) < self.capacity:
                self.images.append(image)
                out.append(image)
            elif torch.rand(()) < 0.5:
                slot = int(torch.randint(len(self.images), ()))
                out.append(self.images[slot].clone())
                self.images[slot] = image
            else:
                out.append(image)
        return torch.cat(out)

    def state(self) -> torch.Tensor | None:
        return torch.cat(self.images).cpu() if self.images else None

    def load(self, state: torch.Tensor | None, device: torch.device) -> None:
        self.images = [] if state is None else list(state.to(device).split(1))


class CycleGAN(Family):
    """Unpaired image-to-image translation with two generators and two critics."""

    name = "cyclegan"
    task = "image-to-image"
    ModelConfig = CycleGANConfig
    DataConfig = UnpairedDataConfig
    Inference = CycleGANModel
    ema_networks = ("g_ab", "g_ba")

    def __init__(self, model_config: CycleGANConfig):
        super().__init__(model_config)
        self.pools = {"a": ImagePool(model_config.pool_size),
                      "b": ImagePool(model_config.pool_size)}
        self.adversarial = ADVERSARIAL[model_config.gan_loss]

    @classmethod
    def build(cls, model_config: CycleGANConfig) -> dict[str, nn.Module]:
        c = model_config

        def critic() -> nn.Module:
            return PatchDiscriminator(c.discriminator_channels, c.discriminator_layers, c.norm)

        nets = {"g_ab": build_generator(c), "g_ba": build_generator(c),
                "d_a": critic(), "d_b": critic()}
        for net in nets.values():
            init_normal(net)
        return nets

    @classmethod
    def inference_config(cls, model_config: CycleGANConfig,
                         data_config: UnpairedDataConfig) -> CycleGANInferenceConfig:
        c = model_config
        return CycleGANInferenceConfig(
            size=data_config.size, background=data_config.background,
            generator_channels=c.generator_channels, generator_blocks=c.generator_blocks,
            norm=c.norm)

    def load_data(self, data_config: UnpairedDataConfig, seed: int) -> UnpairedImages:
        background = parse_color(data_config.background)
        folders = [ImageFolder.load(path, data_config.size, background,
                                    data_config.allow_upscale)
                   for path in (data_config.domain_a, data_config.domain_b)]
        return UnpairedImages(*folders, flip=data_config.flip, seed=seed)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c, n = self.config, self.networks
        betas = (c.beta1, c.beta2)
        return {
            "generators": torch.optim.Adam(
                [*n["g_ab"].parameters(), *n["g_ba"].parameters()], lr=c.lr, betas=betas),
            "critics": torch.optim.Adam(
                [*n["d_a"].parameters(), *n["d_b"].parameters()], lr=c.lr, betas=betas),
        }

    def step(self, nets: Mapping[str, nn.Module], batch: dict[str, torch.Tensor],
             opt: Optimization) -> dict[str, torch.Tensor]:
        c, adv = self.config, self.adversarial
        real_a, real_b = batch["a"], batch["b"]

        with opt.autocast():
            fake_b, fake_a = nets["g_ab"](real_a), nets["g_ba"](real_b)
            rec_a, rec_b = nets["g_ba"](fake_b), nets["g_ab"](fake_a)
            g_adv = adv(nets["d_b"](fake_b), True) + adv(nets["d_a"](fake_a), True)
            cycle = F.l1_loss(rec_a.float(), real_a) + F.l1_loss(rec_b.float(), real_b)
            identity = torch.zeros((), device=real_a.device)
            if c.identity_weight > 0:
                identity = (F.l1_loss(nets["g_ab"](real_b).float(), real_b)
                            + F.l1_loss(nets["g_ba"](real_a).float(), real_a))
        loss_g = (g_adv + c.cycle_weight * cycle
                  + c.cycle_weight * c.identity_weight * identity)
        opt.minimize("generators", loss_g)

        with opt.autocast():
            pooled_a = self.pools["a"].query(fake_a.detach())
            pooled_b = self.pools["b"].query(fake_b.detach())
            d_a = 0.5 * (adv(nets["d_a"](real_a), True) + adv(nets["d_a"](pooled_a), False))
            d_b = 0.5 * (adv(nets["d_b"](real_b), True) + adv(nets["d_b"](pooled_b), False))
        opt.minimize("critics", d_a + d_b)

        return {name: value.detach() for name, value in
                {"g_adv": g_adv, "cycle": cycle, "identity": identity,
                 "d_a": d_a, "d_b": d_b}.items()}

    @torch.no_grad()
    def sample_rows(self, nets: Mapping[str, nn.Module],
                    batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        real_a, real_b = batch["a"], batch["b"]
        fake_b, fake_a = nets["g_ab"](real_a), nets["g_ba"](real_b)
        return [real_a, fake_b, nets["g_ba"](fake_b), real_b, fake_a, nets["g_ab"](fake_a)]

    def state_dict(self) -> dict[str, Any]:
        return {f"pool_{k}": pool.state() for k, pool in self.pools.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = next(self.networks.parameters()).device
        for k, pool in self.pools.items():
            pool.load(state.get(f"pool_{k}"), device)
