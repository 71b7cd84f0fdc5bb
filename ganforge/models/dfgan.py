"""Text-to-image GAN in the DF-GAN school (Tao et al. 2022), one stage.

Generator: noise -> 4x4 features -> up-sampling blocks whose features are scaled and shifted
by the sentence embedding (with the noise) at every block: deep text-image fusion.
Critic: image features down to 4x4, joined with the sentence embedding, one score judging
realism and text match together. Hinge loss; the matching-aware gradient penalty (MA-GP)
on real images with their own captions; real images with another image's caption count as
fake; DiffAugment on everything the critic sees; EMA generator for sampling.

Beyond DF-GAN, for fast learning on small data and a CPU (all switchable):
- the text also drives the 4x4 stem, and features are instance-normalised before each
  text-conditioned scale and shift (AdaIN, as StyleGAN): conditioning acts from the first step;
- the critic's image-text contrastive loss reaches the generator too (XMC-GAN/GALIP style), so
  the generator is told apart from the other captions, not only judged real;
- a share of each batch is drawn at zero noise and pulled (L1) towards the caption's own
  image, as pix2pix adds L1 to its GAN loss: each training caption names one image;
- the gradient penalty is applied lazily (every N critic steps, scaled by N);
- the critic's residual branches start at gain 1 (DF-GAN starts them at 0, which leaves the
  critic nearly linear for the first thousand steps: blurry, colour-noisy samples).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.config import option
from ganforge.data.captions import CaptionedImages
from ganforge.data.images import check_size, parse_color
from ganforge.errors import ConfigError
from ganforge.inference.dfgan import (
    MINILM_DIM,
    DFGANInferenceConfig,
    DFGANModel,
    build_generator,
    channel_plan,
)
from ganforge.models.base import Family, Optimization
from ganforge.nn.augment import POLICIES, diff_augment
from ganforge.text import TextEncoder, build_text_encoder
from ganforge.text.encoders import text_encoder_settings


@dataclass
class DFGANConfig:
    """Networks, text encoder and losses of the text-to-image GAN."""

    size: int = option(64, "image size: a power of two from 16 to 256")
    noise_dim: int = option(100, "length of the noise vector")
    generator_channels: int = option(32, "base channel count of the generator (ngf)")
    fusion_norm: str = option("instance", "normalise features before each text-conditioned "
                              "scale and shift: instance (AdaIN; learns faster) or none "
                              "(DF-GAN as published)")
    discriminator_channels: int = option(32, "base channel count of the critic (ndf)")
    text_encoder: str = option("tiny", "tiny (trainable transformer) or minilm (frozen, "
                               "needs ganforge[minilm])")
    text_dim: int = option(256, "width of the tiny text encoder")
    text_layers: int = option(4, "layers of the tiny text encoder")
    max_tokens: int = option(64, "longest prompt the tiny encoder reads, in UTF-8 bytes")
    augment: str = option("color,translation,cutout", "DiffAugment policy ('' = none)")
    gp_weight: float = option(2.0, "weight of the matching-aware gradient penalty")
    match_weight: float = option(1.0, "weight of the image-text contrastive loss on the "
                                 "critic's features (trains the text encoder; 0 = off)")
    gp_power: float = option(6.0, "power of the gradient norm in the penalty")
    generator_match_weight: float = option(
        1.0, "weight of the same contrastive loss on the generator's images: the critic's "
        "text matching reaches the generator (XMC-GAN/GALIP style; 0 = off)")
    recon_weight: float = option(
        5.0, "weight of the L1 loss between the image drawn (at zero noise) for a caption "
        "that names one training image and that image (pix2pix-style; captions shared by "
        "many images, such as class names, are left out; 0 = off)")
    recon_rows: float = option(
        0.5, "share of each batch drawn at zero noise: the reconstruction loss pulls those "
        "images towards their caption's image, the others keep the noise's diversity")
    sample_truncation: float = option(
        0.0, "default truncation of the noise when the exported model samples (a value t "
        "keeps every noise value in [-t, t]: closer to the caption, less variety; 0 = none)")
    gp_every: int = option(4, "apply the gradient penalty every N critic steps, scaled by N "
                           "(lazy regularisation, as StyleGAN2: same strength, less compute)")
    lr_generator: float = option(2e-4, "Adam learning rate of the generator")
    lr_discriminator: float = option(4e-4, "Adam learning rate of the critic and text encoder")
    beta1: float = option(0.0, "Adam beta1")
    beta2: float = option(0.9, "Adam beta2")

    def validate(self) -> DFGANConfig:
        """Check values; raise ConfigError naming the first bad one."""
        check_size(self.size)
        if self.size < 16 or self.size > 256 or self.size & (self.size - 1):
            raise ConfigError(f"--size {self.size} is not supported by the text-to-image GAN: "
                              "expected 16, 32, 64, 128 or 256")
        if self.sample_truncation < 0:
            raise ConfigError(f"--sample-truncation must be at least 0 (0 = none), "
                              f"got {self.sample_truncation}")
        if not 0.0 <= self.recon_rows <= 1.0:
            raise ConfigError(f"--recon-rows must be in [0, 1], got {self.recon_rows}")
        for name in ("match_weight", "generator_match_weight", "recon_weight", "gp_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 0")
        for name in ("gp_every", "noise_dim", "generator_channels", "discriminator_channels",
                     "text_dim", "text_layers", "max_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        if self.fusion_norm not in ("instance", "none"):
            raise ConfigError(f"--fusion-norm {self.fusion_norm!r} is unknown; "
                              "known: instance, none")
        if self.text_encoder not in ("tiny", "minilm"):
            raise ConfigError(f"--text-encoder {self.text_encoder!r} is unknown; "
                              "known: tiny, minilm")
        unknown = [p for p in self.augment.split(",") if p.strip() and p.strip() not in POLICIES]
        if unknown:
            raise ConfigError(f"--augment has unknown policies {unknown}; "
                              f"known: {', '.join(POLICIES)}")
        return self

    def text_encoder_config(self) -> dict[str, Any]:
        """What ``build_text_encoder`` needs."""
        return text_encoder_settings(self.text_encoder, self.text_dim, self.text_layers,
                                     self.max_tokens)


@dataclass
class CaptionsDataConfig:
    """A captions file (JSONL or CSV) naming images and their captions."""

    captions: str = option("", "JSONL or CSV file: an image path and captions per row")
    image_template: str = option("", "build image paths from row fields, e.g. "
                                 "'twitter/64/{id}.png'")
    split: str = option("train", "keep rows whose 'split' column has this value ('' = all)")
    background: str = option("white", "colour that transparent pixels are composited onto")
    flip: bool = option(False, "random left-right flips (off: text may name a direction)")
    balance_by: str = option("", "sample so each value of this attribute (a column, or "
                             "'skin-tone') is equally likely: a bias mitigation ('' = off)")
    allow_upscale: bool = option(False, "accept images smaller than --size by upscaling them")

    def validate(self) -> CaptionsDataConfig:
        """Check values; raise ConfigError naming the first bad one."""
        if not self.captions:
            raise ConfigError("--captions is required: a JSONL or CSV file of images and "
                              "captions")
        parse_color(self.background)
        return self


class DownBlock(nn.Module):
    """Residual x2 down-sampling: conv4x4/2 + conv3x3, shortcut avg-pool (+1x1), learnt gain."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.residual = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False), nn.LeakyReLU(0.2, inplace=True))
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.gain = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.shortcut(x), 2) + self.gain * self.residual(x)


class TextImageCritic(nn.Module):
    """Scores (images [B, 3, S, S], sentence [B, D]) -> [B]: high = real and matching."""

    def __init__(self, size: int, text_dim: int, channels: int):
        super().__init__()
        plan = list(reversed(channel_plan(size, channels)))
        self.stem = nn.Conv2d(3, plan[0], 3, 1, 1)
        self.blocks = nn.Sequential(*(DownBlock(a, b) for a, b in itertools.pairwise(plan)))
        self.joint = nn.Sequential(
            nn.Conv2d(plan[-1] + text_dim, channels * 2, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(channels * 2, 1, 4, 1, 0))

        self.image_to_text = nn.Linear(plan[-1], text_dim)
        self.text_norm = nn.LayerNorm(text_dim)  # as in the generator: unit-scale text

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Image features [B, C, 4, 4] (the part worth compiling; the heads are small)."""
        return self.blocks(self.stem(images))

    def normalize_text(self, sentence: torch.Tensor) -> torch.Tensor:
        """Sentence embeddings [B, D] standardised to unit scale per component (what
        ``judge`` reads, and what the gradient penalty differentiates against)."""
        return self.text_norm(sentence.float())

    def judge(self, features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Scores [B] of image features with normalised text [B, D] (``normalize_text``)."""
        text = text.to(features.dtype)[..., None, None].expand(-1, -1, 4, 4)
        return self.joint(torch.cat([features, text], dim=1)).view(-1)

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """Image features projected into the sentence space [B, D] (for text matching)."""
        return self.image_to_text(features.float().mean(dim=(2, 3)))

    def score(self, images: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        """Scores [B] of images with their sentence embeddings [B, D]."""
        return self.judge(self(images), self.normalize_text(sentence))


def contrastive_loss(image: torch.Tensor, text: torch.Tensor, captions: Sequence[str],
                     temperature: float = 0.1) -> torch.Tensor:
    """Symmetric InfoNCE between image [B, D] and text [B, D] embeddings (CLIP/DAMSM style);
    pairs with the same caption all count as positives."""
    image, text = F.normalize(image.float(), dim=1), F.normalize(text.float(), dim=1)
    logits = image @ text.T / temperature
    same = torch.tensor([[a == b for b in captions] for a in captions], device=logits.device)
    target = same.float() / same.sum(dim=1, keepdim=True)
    return 0.5 * (torch.sum(-target * logits.log_softmax(dim=1), dim=1).mean()
                  + torch.sum(-target * logits.log_softmax(dim=0).T, dim=1).mean())


def load_captions(data_config: CaptionsDataConfig, size: int, text_encoder: str,
                  max_tokens: int, seed: int,
                  dataset: type[CaptionedImages] = CaptionedImages) -> CaptionedImages:
    """The captioned training images at ``size`` px (as ``dataset``, a CaptionedImages
    subclass); warns once when the trainable ("tiny") text encoder will truncate captions
    longer than ``max_tokens`` bytes."""
    data = dataset.load(
        data_config.captions, size, parse_color(data_config.background),
        image_template=data_config.image_template or None,
        split=data_config.split or None, flip=data_config.flip,
        allow_upscale=data_config.allow_upscale, seed=seed,
        balance_by=data_config.balance_by or None)
    if text_encoder == "tiny":
        limit = max_tokens - 2  # [BOS] and [EOS]
        long = sum(len(c.lower().encode()) > limit for caps in data.captions for c in caps)
        if long:
            warnings.warn(f"{long} caption(s) are longer than --max-tokens {max_tokens} bytes "
                          "allow; they are truncated in training", stacklevel=3)
    return data


class DFGAN(Family):
    """Text-to-image GAN with deep text-image fusion and a matching-aware critic."""

    name = "dfgan"
    task = "text-to-image"
    ModelConfig = DFGANConfig
    DataConfig = CaptionsDataConfig
    Inference = DFGANModel
    ema_networks = ("generator", "text_encoder")
    # the critic stays eager: its gradient penalty back-propagates through a gradient
    # (create_graph), which torch.compile's backward does not support
    compile_networks = ("generator",)
    # channels_last on an AVX-512 CPU too: +17 % (fp32) and +24 % (bf16) img/s at batch 32,
    # 64 px on a Xeon with AMX; on an AVX2-only AMD EPYC it was 13 % slower (docs/benchmarks.md,
    # CPU efficiency), so "auto" decides by the CPU
    channels_last_on_avx512 = True
    train_defaults: ClassVar[dict[str, Any]] = {
        "batch_size": 32, "lr_decay_start": 1.0, "ema_decay": 0.999, "sample_every": 500,
        "checkpoint_every": 1000, "num_samples": 8}

    def __init__(self, model_config: DFGANConfig):
        super().__init__(model_config)
        self.frozen_text: TextEncoder | None = None
        if "text_encoder" not in self.networks:
            self.frozen_text = build_text_encoder(model_config.text_encoder_config())
        self.critic_steps = 0  # counts critic updates, for the lazy gradient penalty

    @classmethod
    def build(cls, model_config: DFGANConfig) -> dict[str, nn.Module]:
        c = model_config
        nets: dict[str, nn.Module] = {}
        if c.text_encoder == "tiny":  # trained with the critic; a frozen one is not a network
            nets["text_encoder"] = build_text_encoder(c.text_encoder_config())
        text_dim = c.text_dim if c.text_encoder == "tiny" else MINILM_DIM
        nets["generator"] = build_generator(c)
        nets["discriminator"] = TextImageCritic(c.size, text_dim, c.discriminator_channels)
        return nets

    @classmethod
    def inference_config(cls, model_config: DFGANConfig,
                         data_config: CaptionsDataConfig) -> DFGANInferenceConfig:
        c = model_config
        return DFGANInferenceConfig(
            size=c.size, noise_dim=c.noise_dim, generator_channels=c.generator_channels,
            fusion_norm=c.fusion_norm, text_encoder=c.text_encoder, text_dim=c.text_dim,
            text_layers=c.text_layers, max_tokens=c.max_tokens,
            truncation=c.sample_truncation if c.sample_truncation > 0 else None)

    def load_data(self, data_config: CaptionsDataConfig, seed: int) -> CaptionedImages:
        return load_captions(data_config, self.config.size, self.config.text_encoder,
                             self.config.max_tokens, seed)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c, n = self.config, self.networks
        critic = list(n["discriminator"].parameters())
        if "text_encoder" in n:
            critic += list(n["text_encoder"].parameters())
        return {
            "generator": torch.optim.Adam(n["generator"].parameters(), lr=c.lr_generator,
                                          betas=(c.beta1, c.beta2)),
            "discriminator": torch.optim.Adam(critic, lr=c.lr_discriminator,
                                              betas=(c.beta1, c.beta2)),
        }

    def encode(self, nets: Mapping[str, nn.Module], prompts: Sequence[str]) -> torch.Tensor:
        """Sentence embeddings [B, D] (a frozen encoder caches them per caption itself)."""
        if "text_encoder" in nets:
            with warnings.catch_warnings():  # truncation was reported once at load time
                warnings.simplefilter("ignore")
                return nets["text_encoder"].encode(prompts).sentence
        assert self.frozen_text is not None
        with torch.no_grad():
            device = next(self.networks.parameters()).device
            return self.frozen_text.to(device).encode(prompts).sentence.float()

    def draw(self, nets: Mapping[str, nn.Module], noise: torch.Tensor, sentence: torch.Tensor,
             batch: dict[str, Any]) -> torch.Tensor:
        """The generator's images [B, 3, S, S] for noise [B, Z] and sentences [B, D] (a family
        that also reads the batch, such as the retrieval-augmented one, overrides this)."""
        del batch
        return nets["generator"](noise, sentence)

    def generator_extra_losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Weighted losses a family adds to the generator's, from this step's ``draw`` (logged
        by name; DF-GAN adds none)."""
        del batch
        return {}

    def step(self, nets: Mapping[str, nn.Module], batch: dict[str, Any],
             opt: Optimization) -> dict[str, torch.Tensor]:
        c = self.config
        real = batch["images"]
        critic = nets["discriminator"]

        # critic (and trainable text encoder): real+text real, fake+text and real+other fake
        self.critic_steps += 1
        penalize = c.gp_weight > 0 and self.critic_steps % c.gp_every == 0
        with opt.autocast():
            sentence = self.encode(nets, batch["captions"])
            other = self.encode(nets, batch["mismatched"])
            noise = torch.randn(real.shape[0], c.noise_dim, device=real.device)
            # rows drawn at zero noise and pulled towards their image: a share of the batch,
            # among captions that name one image only (a class name has no single target)
            anchored = torch.zeros(real.shape[0], dtype=torch.bool, device=real.device)
            if c.recon_weight > 0:
                anchored[:round(c.recon_rows * real.shape[0])] = True
                anchored &= batch["single"].to(real.device)
            noise[anchored] = 0
            fake = self.draw(nets, noise, sentence.detach(), batch)
            real_in = diff_augment(real, c.augment).requires_grad_(penalize)
            # the penalty differentiates with respect to the (normalised) text too, even a
            # frozen encoder's
            text_in = critic.normalize_text(sentence)
            if penalize and not text_in.requires_grad:
                text_in = text_in.detach().requires_grad_()
            real_features = critic(real_in)
            score_real = critic.judge(real_features, text_in)
            loss_real = F.relu(1.0 - score_real).mean()
            loss_fake = F.relu(1.0 + critic.judge(critic(diff_augment(fake.detach(), c.augment)),
                                                  critic.normalize_text(sentence))).mean()
            loss_mismatch = F.relu(1.0 + critic.judge(real_features,
                                                      critic.normalize_text(other))).mean()
            loss_match = self._matching(critic, real_features, sentence, batch["captions"],
                                        c.match_weight)
        penalty = torch.zeros((), device=real.device)
        if penalize:
            grads = torch.autograd.grad(score_real.float().sum(), (real_in, text_in),
                                        create_graph=True)
            norm = torch.cat([g.flatten(1).float() for g in grads], dim=1).norm(dim=1)
            penalty = c.gp_weight * c.gp_every * norm.pow(c.gp_power).mean()
        opt.minimize("discriminator", loss_real + 0.5 * (loss_fake + loss_mismatch) + penalty
                     + c.match_weight * loss_match)

        # generator: fool the critic with the caption it was given, be told apart from the
        # other captions by the critic's text matching, and (at the chosen noise) draw the
        # caption's own image
        with opt.autocast():
            fake_features = critic(diff_augment(fake, c.augment))
            text = sentence.detach()
            loss_g = -critic.judge(fake_features, critic.normalize_text(text)).float().mean()
            loss_g_match = self._matching(critic, fake_features, text, batch["captions"],
                                          c.generator_match_weight)
            loss_recon = torch.zeros((), device=real.device)
            if anchored.any():
                loss_recon = (fake[anchored].float() - real[anchored].float()).abs().mean()
            extra = self.generator_extra_losses(batch)
        opt.minimize("generator", loss_g + c.generator_match_weight * loss_g_match
                     + c.recon_weight * loss_recon + sum(extra.values()))
        return {name: v.detach() for name, v in {
            "g": loss_g, "d_real": loss_real, "d_fake": loss_fake, "d_mismatch": loss_mismatch,
            "ma_gp": penalty, "match": loss_match, "g_match": loss_g_match,
            "recon": loss_recon, **extra}.items()}

    @staticmethod
    def _matching(critic: nn.Module, features: torch.Tensor, sentence: torch.Tensor,
                  captions: Sequence[str], weight: float) -> torch.Tensor:
        """The critic's image-text contrastive loss on image features (zero when off)."""
        if weight <= 0:
            return torch.zeros((), device=features.device)
        return contrastive_loss(critic.embed(features), sentence, captions)

    def state_dict(self) -> dict[str, Any]:
        return {"critic_steps": self.critic_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.critic_steps = int(state.get("critic_steps", 0))

    @torch.no_grad()
    def quality(self, nets: Mapping[str, nn.Module],
                batch: dict[str, Any]) -> dict[str, float]:
        """Noise-free images for the batch's captions against each caption's own image:
        ``l1`` (lower is better) and ``retrieval``, the share of images whose nearest real
        image in the batch (L1 at 16 px) is their own (higher is better; chance 1/B)."""
        real = batch["images"]
        noise = torch.zeros(real.shape[0], self.config.noise_dim, device=real.device)
        fake = self.draw(nets, noise, self.encode(nets, batch["captions"]), batch).float()
        fake = fake.clamp(-1, 1)
        small_fake = F.adaptive_avg_pool2d(fake, 16).flatten(1)
        small_real = F.adaptive_avg_pool2d(real.float(), 16).flatten(1)
        nearest = torch.cdist(small_fake, small_real, p=1).argmin(dim=1)
        own = torch.arange(real.shape[0], device=real.device)
        return {"l1": float((fake - real.float()).abs().mean()),
                "retrieval": float((nearest == own).float().mean())}

    @torch.no_grad()
    def sample_rows(self, nets: Mapping[str, nn.Module],
                    batch: dict[str, Any]) -> list[torch.Tensor]:
        """Rows: the real images, then drawn for their captions at zero noise, then at two
        fixed noise draws."""
        real = batch["images"]
        sentence = self.encode(nets, batch["captions"])
        gen = torch.Generator().manual_seed(0)
        zero = torch.zeros(real.shape[0], self.config.noise_dim, device=real.device)
        rows = [real, self.draw(nets, zero, sentence, batch)]
        for _ in range(2):
            noise = torch.randn(real.shape[0], self.config.noise_dim, generator=gen)
            rows.append(self.draw(nets, noise.to(real.device), sentence, batch))
        return rows
