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
from ganforge.models.base import Family, Optimization
from ganforge.nn.blocks import set_requires_grad


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


class StyleGenerator(nn.Module):
    """(images [B, 3, H, W] in [-1, 1], style [B, S]) -> images [B, 3, H, W] (linear output;
    clamped only for display)."""

    def __init__(self, c: StarGANConfig):
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

    def __init__(self, c: StarGANConfig):
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
        every = torch.stack([head(h) for head in self.heads], dim=1)  # [B, D, S]
        return every[torch.arange(len(domains), device=every.device), domains]


def _trunk(c: StarGANConfig) -> tuple[nn.Sequential, int]:
    """Image [B, 3, H, W] -> features [B, C]: residual down-sampling to 4x4, then a 4x4 conv."""
    ch = c.channels
    layers: list[nn.Module] = [nn.Conv2d(3, ch, 3, 1, 1)]
    for _ in range(int(math.log2(c.size)) - 2):
        out = min(ch * 2, c.max_channels)
        layers.append(ResBlock(ch, out, downsample=True))
        ch = out
    layers += [nn.LeakyReLU(0.2), nn.Conv2d(ch, ch, 4, 1, 0), nn.LeakyReLU(0.2), nn.Flatten()]
    return nn.Sequential(*layers), ch


class StyleEncoder(nn.Module):
    """Images [B, 3, H, W] -> style codes [B, S] for the given domains, and domain logits
    [B, D] (which style an image is in)."""

    def __init__(self, c: StarGANConfig):
        super().__init__()
        self.trunk, width = _trunk(c)
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

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(styles of every domain [B, D, S], domain logits [B, D])."""
        h = self.trunk(images)
        return self.styles(h).view(-1, self.num_domains, self.style_dim), self.domain(h)

    def forward(self, images: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
        every, _ = self.encode(images)
        return every[torch.arange(len(domains), device=every.device), domains]


class MultiTaskCritic(nn.Module):
    """(images [B, 3, H, W], domains [B]) -> real/fake logits [B], one output per domain."""

    def __init__(self, c: StarGANConfig):
        super().__init__()
        self.trunk, width = _trunk(c)
        self.out = nn.Linear(width, c.num_domains)

    def forward(self, images: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
        logits = self.out(self.trunk(images))
        return logits[torch.arange(len(domains), device=logits.device), domains]


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
    ema_networks = ("generator", "mapping", "style_encoder")
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
    def pipeline_info(cls, model_config: StarGANConfig,
                      data_config: MultiDomainDataConfig) -> dict[str, Any]:
        return {"size": model_config.size, "background": data_config.background,
                "styles": data_config.names(), "latent_dim": model_config.latent_dim}

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
        encoded = nets["style_encoder"](references, domains)
        return torch.where(from_reference[:, None], encoded.to(latent.dtype), latent)

    def step(self, nets: Mapping[str, nn.Module], batch: dict[str, torch.Tensor],
             opt: Optimization) -> dict[str, torch.Tensor]:
        c = self.config
        real, source = batch["images"], batch["domains"]
        target = batch["target_domains"]
        from_reference = torch.rand(len(real)) < c.reference_share
        from_reference = from_reference.to(real.device)
        critic = self.networks["discriminator"]

        # critic: real images of their own domain vs translations into the target domain
        set_requires_grad([critic], True)
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
        set_requires_grad([critic], False)
        with opt.autocast():
            style = self._target_styles(nets, batch["references"], target, from_reference)
            fake = nets["generator"](real, style)
            adversarial = F.softplus(-nets["discriminator"](fake, target).float()).mean()
            style_rec = F.l1_loss(nets["style_encoder"](fake, target).float(), style.float())
            style2 = self._target_styles(nets, batch["references2"], target, from_reference)
            fake2 = nets["generator"](real, style2).detach()
            diversity = F.l1_loss(fake.float(), fake2.float())
            own_styles, domain_logits = _encode(nets["style_encoder"], real)
            own = own_styles[torch.arange(len(source), device=real.device), source]
            _module(nets["style_encoder"]).observe(own.detach(), source)
            cycle = F.l1_loss(nets["generator"](fake, own).float(), real)
            domain = F.cross_entropy(domain_logits.float(), source)
        diversity_now = c.diversity_weight * max(0.0, 1 - self.steps_done /
                                                 c.diversity_decay_steps)
        opt.minimize("generator", c.adversarial_weight * adversarial + c.style_weight * style_rec
                     - diversity_now * diversity + c.cycle_weight * cycle
                     + c.domain_weight * domain)
        set_requires_grad([critic], True)
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
        ref_style = nets["style_encoder"](batch["references"], batch["target_domains"])
        return [*rows, batch["references"], nets["generator"](real, ref_style)]

    def state_dict(self) -> dict[str, Any]:
        return {"steps_done": self.steps_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps_done = int(state.get("steps_done", 0))

    # ----------------------------------------------------------------------- inference
    @classmethod
    def translate(cls, nets: Mapping[str, nn.Module], info: dict[str, Any],
                  images: torch.Tensor, direction: str | None = None,
                  **options: Any) -> torch.Tensor:
        """Translate images [B, 3, H, W] in [-1, 1] into a style.

        Options: ``style=NAME`` (``direction`` may name it instead) uses the domain's average
        style code (the mean code of its training images), or through the mapping network
        with ``seed=N`` the code of one seeded latent
        (the same for every image), or with ``generator=`` one torch.Generator per image (or
        one for all) a latent drawn per image; ``reference=[B or 1, 3, H, W]`` in [-1, 1] takes
        the style of reference images through the style encoder, in ``style`` if given, else
        in the style the encoder recognises in each reference.
        """
        styles = list(info.get("styles", []))
        style, reference = options.pop("style", None), options.pop("reference", None)
        seed, generator = options.pop("seed", None), options.pop("generator", None)
        if options:
            raise ConfigError(f"{cls.name} models take no {', '.join(sorted(options))} option; "
                              "known: style, reference, seed, generator")
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
            reference = _check_reference(reference, images).to(device)
            encoder = nets["style_encoder"]
            if style is not None:
                domains = torch.full((len(reference),), styles.index(style), device=device)
            else:
                domains = encoder.encode(reference)[1].argmax(dim=1)
            code = encoder(reference, domains)
        elif style is not None:
            domain = torch.full((1,), styles.index(style), device=device)
            latent_dim = int(info["latent_dim"])
            if generator is not None:
                gens = [generator] * count if isinstance(generator, torch.Generator) \
                    else list(generator)
                if len(gens) != count:
                    raise ConfigError(f"{len(gens)} random generators for {count} images")
                noise = torch.stack([torch.randn(latent_dim, generator=g) for g in gens])
                code = nets["mapping"](noise.to(device), domain.expand(count))
            elif seed is not None:
                gen = torch.Generator().manual_seed(int(seed))
                noise = torch.randn(1, latent_dim, generator=gen)
                code = nets["mapping"](noise.to(device), domain)
            else:
                code = nets["style_encoder"].mean_styles[domain]
        else:
            raise ConfigError(f"name a target style (one of {', '.join(styles)}) or give a "
                              "reference image")
        return nets["generator"](images, code.expand(count, -1))


def _module(net: nn.Module) -> nn.Module:
    """The network itself, also when torch.compile wrapped it."""
    return getattr(net, "_orig_mod", net)


def _encode(encoder: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``StyleEncoder.encode`` through a possibly compiled encoder."""
    return _module(encoder).encode(images)


def _check_reference(reference: Any, images: torch.Tensor) -> torch.Tensor:
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
