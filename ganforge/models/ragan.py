"""Retrieval-augmented text-to-image GAN: DF-GAN's critic and losses, a generator that edits
the training image whose caption is nearest to the prompt.

Training: every training image's caption is compared (frozen text encoder, cosine) with the
captions of the *other* training images; its ``neighbours`` nearest, leaving out images of
the same ``--retrieval-group`` (for emoji: the skin-tone variants of one emoji, which a
held-out prompt never has in the memory), are what the generator may start from. It learns
from the adversarial and matching losses of DF-GAN (the critic judges realism and text match);
a share of rows (``--self-rows``) starts from the caption's own image and gets L1 to it, so a
prompt that names a memory image keeps it. (``--neighbour-recon`` also pulls the other rows
towards the caption's own image by L1: on emoji that painted blurry patches, so it is off;
``--colour-head`` adds a prompt-driven affine colour map of the start.) At sampling time the
memory is the whole training set.

What this buys on a CPU: the output starts from a real image, so it is sharp from the first
step (an untrained generator returns the neighbour: "retrieval only" in our benchmarks is that
baseline, and a model is worth shipping only where it beats it); what the generator learns is
the edit. What it costs: the model carries its training images (lossless WebP, ~2 kB each at 64 px),
and its pictures stay close to them — a near-copy for a prompt that names a training image.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.config import option
from ganforge.data.captions import CaptionedImages
from ganforge.data.images import uint8_to_float
from ganforge.errors import ConfigError, DataError
from ganforge.inference.base import InferenceModel
from ganforge.inference.dfgan import MINILM_DIM
from ganforge.inference.ragan import (
    Memory,
    RAGANInferenceConfig,
    RAGANModel,
    build_retrieval_generator,
    colour_key_embeddings,
    encode_images,
    pick_neighbours,
)
from ganforge.models.dfgan import (
    DFGAN,
    CaptionsDataConfig,
    DFGANConfig,
    TextImageCritic,
    load_captions,
)


@dataclass
class RAGANConfig(DFGANConfig):
    """DF-GAN's options, a frozen text encoder, and how neighbours are retrieved."""

    generator_channels: int = option(16, "base channel count of the generator (U-Net)")
    text_encoder: str = option("minilm", "minilm (frozen, needs ganforge[minilm]): retrieval "
                               "compares captions in its space, so it cannot be trained")
    neighbours: int = option(3, "how many nearest training captions a sample may start from")
    rank_spread: float = option(1.0, "a sample starts from neighbour rank floor(|z0| / this), "
                                "z0 its first noise value (zero noise: the nearest)")
    colour_head: bool = option(
        False, "the generator also predicts an affine colour map of its start image (3x3 + "
        "shift, from the prompt): trained by L1 from each neighbour to the caption's own "
        "image (--colour-weight), it can recolour without blurring shapes")
    colour_weight: float = option(2.0, "weight of that colour map's L1 loss")
    colour_keys: bool = option(
        True, "the saved memory also keys each image by its caption prefixed with the colour "
        "measured on its pixels ('red beating heart'): a prompt's colour word picks, among the "
        "nearest captions, the image of that colour (retrieval only; training is unchanged)")
    compose: bool = option(
        True, "at sampling, a prompt naming a colour or a 'with' accessory that the nearest "
        "training image lacks starts from a collage: the subject retrieved and recoloured, "
        "the accessory retrieved and overlaid (eyewear on the eyes, headwear on top, else "
        "beside); sampling only, training is unchanged")
    rank_margin: float = option(
        0.05, "only neighbours within this cosine similarity of the nearest are candidates "
        "(a prompt that names one training image well always starts from it)")
    self_rows: float = option(
        0.2, "share of training rows that start from their own image (similarity 1): the "
        "generator learns to keep an image its prompt names exactly, as sampling a training "
        "caption retrieves it")
    neighbour_recon: bool = option(
        False, "pull images started from another image towards the caption's own image (L1 "
        "on the zero-noise rows); off: only rows started from their own image (--self-rows) "
        "get the L1 loss, the others learn from the critic alone (an unpredictable target "
        "pulled by L1 paints blurry patches of its colours)")
    recon_weight: float = option(
        2.0, "weight of the L1 loss between the image drawn at zero noise and the caption's "
        "own image (see --neighbour-recon; 0 = off)")
    recon_rows: float = option(
        1.0, "share of each batch that may get the L1 loss (drawn at zero noise)")

    def validate(self) -> RAGANConfig:
        super().validate()
        if self.text_encoder != "minilm":
            raise ConfigError("the retrieval-augmented GAN compares captions with a frozen "
                              "text encoder: use --text-encoder minilm")
        if self.neighbours < 1:
            raise ConfigError(f"--neighbours must be at least 1, got {self.neighbours}")
        if self.rank_margin < 0:
            raise ConfigError(f"--rank-margin must be at least 0, got {self.rank_margin}")
        if self.rank_spread <= 0:
            raise ConfigError(f"--rank-spread must be positive, got {self.rank_spread}")
        if not 0.0 <= self.self_rows <= 1.0:
            raise ConfigError(f"--self-rows must be in [0, 1], got {self.self_rows}")
        return self


@dataclass
class RetrievalDataConfig(CaptionsDataConfig):
    """A captions file, and which images must never be each other's neighbour in training."""

    retrieval_group: str = option(
        "", "column naming groups of images that are never retrieved for each other in "
        "training (e.g. base_id: an emoji's skin-tone variants), so training sees neighbours "
        "as distant as a new prompt's ('' = only the image itself is left out)")


class RetrievalCaptions(CaptionedImages):
    """Captioned images whose batches also carry each image's nearest *other* training images
    (``neighbours`` [B, K] indices, ``neighbour_similarity`` [B, K])."""

    table: torch.Tensor
    table_similarity: torch.Tensor
    keys: torch.Tensor

    self_rows: float = 0.0
    neighbour_recon: bool = True

    def attach(self, keys: torch.Tensor, neighbours: int, group: str,
               self_rows: float = 0.0, neighbour_recon: bool = True) -> None:
        """Compute the neighbour table from unit caption embeddings ``keys`` [N, D]; a
        ``self_rows`` share of batch rows will start from their own image instead."""
        self.self_rows = self_rows
        self.neighbour_recon = neighbour_recon
        if len(self) < 2:
            raise DataError("the retrieval-augmented GAN needs at least 2 training images")
        self.keys = F.normalize(keys.float(), dim=1)
        similarity = self.keys @ self.keys.T
        banned = torch.eye(len(self), dtype=torch.bool)
        if group:
            missing = [str(p) for p, f in zip(self.paths, self.fields, strict=True)
                       if group not in f]
            if missing:
                raise DataError(f"--retrieval-group {group!r}: no such column for "
                                f"{len(missing)} image(s), e.g. {missing[0]}")
            labels = [str(f[group]) for f in self.fields]
            codes = {label: i for i, label in enumerate(dict.fromkeys(labels))}
            ids = torch.tensor([codes[label] for label in labels])
            banned |= ids[:, None] == ids[None, :]
        allowed = (~banned).sum(dim=1)
        if int(allowed.min()) == 0:
            raise DataError(f"--retrieval-group {group!r} leaves an image with no other group "
                            "to retrieve from: every image is in one group")
        similarity = similarity.masked_fill(banned, float("-inf"))
        top = similarity.topk(min(neighbours, int(allowed.min())), dim=1)
        self.table, self.table_similarity = top.indices, top.values

    def _with_neighbours(self, out: dict[str, Any], indices: torch.Tensor,
                         own: torch.Tensor | None = None) -> dict[str, Any]:
        """Add the neighbour table's rows of ``indices``; rows where ``own`` is set start
        from their own image (similarity 1)."""
        table, similarity = self.table[indices], self.table_similarity[indices]
        if own is not None and own.any():
            table[own] = indices[own, None].expand(-1, table.shape[1])
            similarity[own] = 1.0
        out["neighbours"], out["neighbour_similarity"] = table, similarity
        return out

    def batch(self, indices: torch.Tensor, epoch: int) -> dict[str, Any]:
        images = self._resample(indices, epoch)
        # drawn from (seed, epoch, sample) alone, apart from the caption draws
        own = torch.tensor([bool(torch.rand(1, generator=self._generator(-2 - epoch, int(i)))
                                 < self.self_rows) for i in indices])
        out = self._with_neighbours(super().batch(indices, epoch), images, own)
        if not self.neighbour_recon:  # only rows started from their own image have a target
            out["single"] = out["single"] & own
        return out

    def preview(self, count: int) -> dict[str, Any]:
        from ganforge.data.datasets import spread

        return self._with_neighbours(super().preview(count), spread(len(self), count))


class RAGAN(DFGAN):
    """Text-to-image GAN that edits the nearest training image (retrieval-augmented)."""

    name = "ragan"
    ModelConfig = RAGANConfig
    DataConfig = RetrievalDataConfig
    Inference = RAGANModel

    def __init__(self, model_config: RAGANConfig):
        super().__init__(model_config)
        self.memory: RetrievalCaptions | None = None
        self._recoloured: tuple[torch.Tensor, torch.Tensor] | None = None
        self._png: tuple[torch.Tensor, torch.Tensor] | None = None
        self._colour_keys: torch.Tensor | None = None

    @classmethod
    def build(cls, model_config: RAGANConfig) -> dict[str, nn.Module]:
        c = model_config
        return {"generator": build_retrieval_generator(c),
                "discriminator": TextImageCritic(c.size, MINILM_DIM, c.discriminator_channels)}

    @classmethod
    def inference_config(cls, model_config: RAGANConfig,
                         data_config: RetrievalDataConfig) -> RAGANInferenceConfig:
        c = model_config
        base = dataclasses.asdict(super().inference_config(c, data_config))
        return RAGANInferenceConfig(**base, neighbours=c.neighbours, rank_spread=c.rank_spread,
                                    rank_margin=c.rank_margin, colour_head=c.colour_head,
                                    colour_keys=c.colour_keys, compose=c.compose)

    def load_data(self, data_config: RetrievalDataConfig, seed: int) -> RetrievalCaptions:
        data = load_captions(data_config, self.config.size, self.config.text_encoder,
                             self.config.max_tokens, seed, dataset=RetrievalCaptions)
        assert isinstance(data, RetrievalCaptions)
        keys = torch.cat([self.encode(self.networks, [caps[0] for caps in data.captions[i:i + 512]])
                          for i in range(0, len(data), 512)]).cpu()
        data.attach(keys, self.config.neighbours, data_config.retrieval_group,
                    self.config.self_rows, self.config.neighbour_recon)
        self.memory = data
        return data

    def draw(self, nets: Mapping[str, nn.Module], noise: torch.Tensor, sentence: torch.Tensor,
             batch: dict[str, Any]) -> torch.Tensor:
        """Start each row from a neighbour of its image (rank chosen by its noise), then edit."""
        assert self.memory is not None, "load_data runs before any step"
        device = noise.device
        index, similarity = pick_neighbours(batch["neighbour_similarity"].to(device), noise,
                                            self.config.neighbours, self.config.rank_spread,
                                            self.config.rank_margin)
        # on the table's similarities, pick_neighbours returns the table's column
        rows = torch.arange(len(index), device=device)
        chosen = batch["neighbours"].to(device)[rows, index]
        start = uint8_to_float(self.memory.images[chosen.cpu()]).to(device)
        key = self.memory.keys[chosen.cpu()].to(device)
        if not self.config.colour_head:
            return nets["generator"](noise, sentence, start, key, similarity)
        out, recoloured = nets["generator"](noise, sentence, start, key, similarity,
                                            with_recoloured=True)
        self._recoloured = (recoloured, similarity < 1)  # for this step's colour loss
        return out

    def generator_extra_losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """With the colour head: L1 from the recoloured start to the caption's own image, on
        rows started from another image."""
        if not self.config.colour_head or self._recoloured is None:
            return {}
        recoloured, other = self._recoloured
        self._recoloured = None
        if not other.any():
            return {"colour": torch.zeros((), device=recoloured.device)}
        real = batch["images"].to(recoloured.device)
        loss = (recoloured[other].float() - real[other].float()).abs().mean()
        return {"colour": self.config.colour_weight * loss}

    @torch.no_grad()
    def quality(self, nets: Mapping[str, nn.Module],
                batch: dict[str, Any]) -> dict[str, float]:
        """DF-GAN's figures (``l1``, ``retrieval``) at zero noise, plus ``start_l1``: the L1
        of the image each row starts from (its nearest allowed neighbour) to the caption's
        own image. ``l1`` below ``start_l1`` means the generator's edit helps."""
        assert self.memory is not None, "load_data runs before any check"
        figures = super().quality(nets, batch)
        start = uint8_to_float(self.memory.images[batch["neighbours"][:, 0].cpu()])
        figures["start_l1"] = float((start - batch["images"].float().cpu()).abs().mean())
        return figures

    def export(self, nets: Mapping[str, nn.Module], data_config: RetrievalDataConfig,
               trained_steps: int) -> InferenceModel:
        """The inference model: the (EMA) generator and a memory of every training image."""
        assert self.memory is not None, "load_data runs before export"
        config = self.inference_config(self.config, data_config)
        if self._png is None:  # the images do not change: encode them once per run
            self._png = encode_images(self.memory.images)
        captions = [caps[0] for caps in self.memory.captions]
        if self.config.colour_keys and self._colour_keys is None:
            self._colour_keys = colour_key_embeddings(
                self.memory.images, captions, lambda texts: self.encode(nets, texts))
        memory = Memory.from_png(*self._png, self.memory.keys,
                                 self._colour_keys if self.config.colour_keys else None)
        config.memory_count, config.memory_bytes = len(memory.offsets) - 1, len(memory.png)
        config.memory_captions = captions
        return self.Inference(config, {"generator": nets["generator"], "memory": memory},
                              {"trained_steps": trained_steps})
