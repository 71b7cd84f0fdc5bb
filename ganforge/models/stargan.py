"""Multi-domain translation in the StarGAN v2 school (Choi et al. 2020): one model, many styles.

One generator translates an image into any domain, steered by a style code [B, S]. Style codes
come from a mapping network (noise + target domain -> style) or from a style encoder applied to
a reference image of the target domain. A multi-task critic has one real/fake output per
domain. Losses (as the paper): non-saturating adversarial loss, R1 penalty on real images,
style reconstruction (the style encoder recovers the code from the translation), style
diversification (two codes must give two different images; its weight decays to zero) and
cycle consistency (translating back with the source's own style recovers the source). Each
sample's target style comes from noise or from a reference at random (the paper alternates).

Beyond the paper: the style encoder also learns to tell which domain a real image is from, so
that a reference image can be used without naming its style; it keeps the mean style code of
each domain's training images, the deterministic "average style" that ``style=NAME`` uses
(noise through the mapping network gives the varied ones); the generator has no instance norm
before its output layer. No high-pass (face) filter.

The generator, mapping network and style encoder, and the exported model that translates with
them, are in ``ganforge.inference.stargan``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.config import option
from ganforge.data.images import ImageFolder, check_size, parse_color
from ganforge.data.multidomain import MultiDomainImages, domain_names
from ganforge.errors import ConfigError
from ganforge.inference.stargan import (
    MappingNetwork,
    StarGANInferenceConfig,
    StarGANModel,
    StyleEncoder,
    StyleGenerator,
    pick,
    trunk,
)
from ganforge.models.base import Family, Optimization


@dataclass
class StarGANConfig:
    """Networks and losses of the multi-domain translator; defaults are the paper's recipe with
    narrower networks (the paper's 64 px networks start at 256 channels)."""

    num_domains: int = option(3, "styles the model learns: one per --domains folder")
    size: int = option(64, "image size: a power of two from 16 to 256 (images are resized "
                                "and centre-cropped)")
    channels: int = option(32, "channels of the first layer of every network")
    max_channels: int = option(256, "channel cap as the networks go deeper")
    downsamplings: int = option(2, "down-samplings in the generator (the paper: log2(size)-4)")
    bottleneck_blocks: int = option(2, "residual blocks at the generator's lowest resolution, "
                                    "on each side (plain, then style-modulated)")
    style_dim: int = option(64, "length of a style code")
    latent_dim: int = option(16, "length of the mapping network's noise")
    mapping_layers: int = option(4, "shared layers of the mapping network")
    mapping_channels: int = option(256, "width of the mapping network")
    adversarial_weight: float = option(1.0, "weight of the generator's adversarial loss")
    r1_weight: float = option(1.0, "weight of the R1 penalty on real images")
    style_weight: float = option(1.0, "weight of the style reconstruction loss")
    diversity_weight: float = option(1.0, "initial weight of the style diversification loss")
    diversity_decay_steps: int = option(10000, "steps over which the diversity weight falls "
                                        "linearly to zero")
    cycle_weight: float = option(1.0, "weight of the cycle-consistency loss")
    domain_weight: float = option(0.1, "weight of the style encoder's domain classification "
                                  "(lets a reference be used without naming its style; 0 = off)")
    reference_share: float = option(0.5, "share of target styles taken from reference images "
                                     "rather than noise in training")
    lr: float = option(1e-4, "Adam learning rate of the generator, style encoder and critic")
    mapping_lr: float = option(1e-6, "Adam learning rate of the mapping network")
    beta1: float = option(0.0, "Adam beta1")
    beta2: float = option(0.99, "Adam beta2")
    weight_decay: float = option(1e-4, "Adam weight decay")

    def validate(self) -> StarGANConfig:
        """Check values; raise ConfigError naming the first bad one."""
        check_size(self.size)
        if self.size < 16 or self.size > 256 or self.size & (self.size - 1):
            raise ConfigError(f"--size {self.size} is not supported by the multi-domain "
                              "translator: expected 16, 32, 64, 128 or 256")
        if self.num_domains < 2:
            raise ConfigError(f"--num-domains must be at least 2, got {self.num_domains}")
        for name in ("channels", "max_channels", "style_dim", "latent_dim", "mapping_layers",
                     "mapping_channels", "diversity_decay_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, "
                                  f"got {getattr(self, name)}")
        if not 0 <= self.downsamplings <= int(math.log2(self.size)) - 2:
            raise ConfigError(f"--downsamplings must be in 0..{int(math.log2(self.size)) - 2} "
                              f"at --size {self.size}, got {self.downsamplings}")
        if self.bottleneck_blocks < 0:
            raise ConfigError(f"--bottleneck-blocks must be >= 0, got {self.bottleneck_blocks}")
        for name in ("adversarial_weight", "r1_weight", "style_weight", "diversity_weight",
                     "cycle_weight", "domain_weight", "weight_decay"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0")
        if not 0.0 <= self.reference_share <= 1.0:
            raise ConfigError(f"--reference-share must be in [0, 1], got {self.reference_share}")
        if self.lr <= 0 or self.mapping_lr <= 0:
            raise ConfigError("--lr and --mapping-lr must be positive")
        return self


@dataclass
class MultiDomainDataConfig:
    """Several folders of images, one per domain (style), not paired."""

    domains: str = option("", "comma-separated folders, one per domain (style), at least two")
    domain_names: str = option("", "comma-separated names of the domains (default: the folders' "
                               "names, or their parents' when those collide)")
    background: str = option("white", "colour that transparent pixels are composited onto")
    flip: bool = option(True, "random left-right flips")
    allow_upscale: bool = option(False, "accept images smaller than --size by upscaling them")

    def folders(self) -> list[str]:
        """The domain folders, in order."""
        return [f.strip() for f in self.domains.split(",") if f.strip()]

    def names(self) -> list[str]:
        """The domain names, in the folders' order."""
        given = [n.strip() for n in self.domain_names.split(",") if n.strip()]
        return domain_names(self.folders(), given)

    def validate(self) -> MultiDomainDataConfig:
        """Check values; raise ConfigError naming the first bad one."""
        if len(self.folders()) < 2:
            raise ConfigError("--domains is required: two or more comma-separated folders of "
                              "images, one per style")
        self.names()
        parse_color(self.background)
        return self


# ------------------------------------------------------------------------------ networks
class MultiTaskCritic(nn.Module):
    """(images [B, 3, H, W], domains [B]) -> real/fake logits [B], one output per domain."""

    def __init__(self, c: StarGANConfig):
        super().__init__()
        self.trunk, width = trunk(c)
        self.out = nn.Linear(width, c.num_domains)

    def forward(self, images: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
        return pick(self.out(self.trunk(images)), domains)


def r1_penalty(scores: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): 0.5 E|d score / d image|^2 on real images."""
    (grad,) = torch.autograd.grad(scores.float().sum(), images, create_graph=True)
    return 0.5 * grad.float().pow(2).flatten(1).sum(1).mean()


# -------------------------------------------------------------------------------- family
class StarGAN(Family):
    """Multi-domain translation (StarGAN v2): one generator, a style per domain."""

    name = "stargan"
    task = "image-to-image"
    ModelConfig = StarGANConfig
    DataConfig = MultiDomainDataConfig
    Inference = StarGANModel
    ema_networks = ("generator", "mapping", "style_encoder")
    # the critic stays eager: its R1 penalty back-propagates through a gradient
    # (create_graph), which torch.compile's backward does not support
    compile_networks = ("generator", "mapping", "style_encoder")
    train_defaults: ClassVar[dict[str, Any]] = {
        "batch_size": 8, "lr_decay_start": 1.0, "ema_decay": 0.999, "num_samples": 6}

    def __init__(self, model_config: StarGANConfig):
        super().__init__(model_config)
        self.steps_done = 0  # for the diversity weight's decay

    @classmethod
    def build(cls, model_config: StarGANConfig) -> dict[str, nn.Module]:
        c = model_config
        nets = {"generator": StyleGenerator(c), "mapping": MappingNetwork(c),
                "style_encoder": StyleEncoder(c), "discriminator": MultiTaskCritic(c)}
        return nets

    @classmethod
    def inference_config(cls, model_config: StarGANConfig,
                         data_config: MultiDomainDataConfig) -> StarGANInferenceConfig:
        c = model_config
        return StarGANInferenceConfig(
            styles=data_config.names(), size=c.size, background=data_config.background,
            channels=c.channels, max_channels=c.max_channels, downsamplings=c.downsamplings,
            bottleneck_blocks=c.bottleneck_blocks, style_dim=c.style_dim,
            latent_dim=c.latent_dim, mapping_layers=c.mapping_layers,
            mapping_channels=c.mapping_channels)

    def load_data(self, data_config: MultiDomainDataConfig, seed: int) -> MultiDomainImages:
        del seed  # references and flips use the loop-seeded global RNG
        folders = data_config.folders()
        if len(folders) != self.config.num_domains:
            raise ConfigError(f"--domains names {len(folders)} folders but the model is built "
                              f"for --num-domains {self.config.num_domains}; pass "
                              f"--num-domains {len(folders)}")
        background = parse_color(data_config.background)
        images = [ImageFolder.load(path, self.config.size, background, data_config.allow_upscale)
                  for path in folders]
        return MultiDomainImages(images, data_config.names(), flip=data_config.flip)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c, n = self.config, self.networks
        betas, decay = (c.beta1, c.beta2), c.weight_decay
        return {
            # one optimiser for every network the generator's loss trains, with their own rates
            "generator": torch.optim.Adam([
                {"params": [*n["generator"].parameters(), *n["style_encoder"].parameters()]},
                {"params": n["mapping"].parameters(), "lr": c.mapping_lr},
            ], lr=c.lr, betas=betas, weight_decay=decay),
            "discriminator": torch.optim.Adam(n["discriminator"].parameters(), lr=c.lr,
                                              betas=betas, weight_decay=decay),
        }

    def _target_styles(self, nets: Mapping[str, nn.Module], references: torch.Tensor,
                       domains: torch.Tensor, from_reference: torch.Tensor) -> torch.Tensor:
        """Style codes [B, S] of ``domains``: from ``references`` where ``from_reference``
        [B] bool, else from fresh noise through the mapping network."""
        noise = torch.randn(len(domains), self.config.latent_dim, device=domains.device)
        latent = nets["mapping"](noise, domains)
        if not bool(from_reference.any()):
            return latent
        encoded = pick(nets["style_encoder"](references)[0], domains)
        return torch.where(from_reference[:, None], encoded.to(latent.dtype), latent)

    def step(self, nets: Mapping[str, nn.Module], batch: dict[str, torch.Tensor],
             opt: Optimization) -> dict[str, torch.Tensor]:
        c = self.config
        real, source = batch["images"], batch["domains"]
        target = batch["target_domains"]
        from_reference = torch.rand(len(real)) < c.reference_share
        from_reference = from_reference.to(real.device)

        # critic: real images of their own domain vs translations into the target domain
        with torch.no_grad(), opt.autocast():
            fake = nets["generator"](real, self._target_styles(
                nets, batch["references"], target, from_reference))
        real_in = real.detach().requires_grad_(True)
        with opt.autocast():
            score_real = nets["discriminator"](real_in, source)
            score_fake = nets["discriminator"](fake, target)
        loss_real = F.softplus(-score_real.float()).mean()
        loss_fake = F.softplus(score_fake.float()).mean()
        r1 = r1_penalty(score_real, real_in) if c.r1_weight > 0 else torch.zeros_like(loss_real)
        opt.minimize("discriminator", loss_real + loss_fake + c.r1_weight * r1)

        # generator, mapping network and style encoder
        with opt.autocast():
            style = self._target_styles(nets, batch["references"], target, from_reference)
            fake = nets["generator"](real, style)
            adversarial = F.softplus(-nets["discriminator"](fake, target).float()).mean()
            style_rec = F.l1_loss(pick(nets["style_encoder"](fake)[0], target).float(),
                                  style.float())
            style2 = self._target_styles(nets, batch["references2"], target, from_reference)
            fake2 = nets["generator"](real, style2).detach()
            diversity = F.l1_loss(fake.float(), fake2.float())
            own_styles, domain_logits = nets["style_encoder"](real)
            own = pick(own_styles, source)
            _module(nets["style_encoder"]).observe(own.detach(), source)
            cycle = F.l1_loss(nets["generator"](fake, own).float(), real)
            domain = F.cross_entropy(domain_logits.float(), source)
        diversity_now = c.diversity_weight * max(0.0, 1 - self.steps_done /
                                                 c.diversity_decay_steps)
        opt.minimize("generator", c.adversarial_weight * adversarial + c.style_weight * style_rec
                     - diversity_now * diversity + c.cycle_weight * cycle
                     + c.domain_weight * domain)
        self.steps_done += 1
        return {name: v.detach() for name, v in {
            "d_real": loss_real, "d_fake": loss_fake, "r1": r1, "g_adv": adversarial,
            "style": style_rec, "diversity": diversity, "cycle": cycle, "domain": domain}.items()}

    @torch.no_grad()
    def sample_rows(self, nets: Mapping[str, nn.Module],
                    batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Sources, then their translation into every domain (its average style code), then
        references (of each column's next domain) and the translation into their style."""
        real = batch["images"]
        rows = [real]
        means = _module(nets["style_encoder"]).mean_styles
        for k in range(self.config.num_domains):
            rows.append(nets["generator"](real, means[k].expand(len(real), -1)))
        ref_style = pick(nets["style_encoder"](batch["references"])[0], batch["target_domains"])
        return [*rows, batch["references"], nets["generator"](real, ref_style)]

    def state_dict(self) -> dict[str, Any]:
        return {"steps_done": self.steps_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps_done = int(state.get("steps_done", 0))


def _module(net: nn.Module) -> nn.Module:
    """The network itself, also when torch.compile wrapped it."""
    return getattr(net, "_orig_mod", net)
