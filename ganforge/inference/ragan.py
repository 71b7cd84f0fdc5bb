"""Retrieval-augmented text-to-image GAN inference: start from a training image, then edit it.

The prompt's sentence embedding finds the training captions nearest to it (cosine, in the
frozen text encoder's space); the generator takes the image of one of them, the prompt, the
difference between the prompt and that image's caption, and noise, and returns the image
plus a learnt edit (a U-Net whose decoder is text-conditioned like DF-GAN's). The retrieved
images travel inside the saved model (lossless WebP bytes in ``model.safetensors``), with
their captions in ``config.json``: a model needs nothing else at run time. ``remember`` adds
images to a trained model's memory without training (``ganforge remember``).

Which neighbour a sample starts from comes from its noise: the first noise value ``z0`` picks
rank ``floor(|z0| / rank_spread)`` among the ``neighbours`` nearest whose similarity is within
``rank_margin`` of the nearest's (zero or truncated noise, or a prompt that names one training
image much better than any other: the nearest), so seeds differ where the prompt is ambiguous
and image ``j`` of a seed is reproducible. With colour keys (``colour_keys``), each memory
image also has the embedding of its caption prefixed by the colour measured on its pixels
("red beating heart"): among the ``colour_pool`` entries nearest by caption, an entry ranks by
the better of its two keys, so "red heart" starts from a heart that is red although no
training caption says so. With ``skin_tones="varied"`` (a sampling option), a sample whose
start is an untoned image that the memory also holds in skin-tone variants ("man running";
"man running, dark skin tone", ...) starts from one of them, drawn evenly by its noise: for
prompts that name no tone, a spread of tones instead of the emoji convention's yellow. The
school: IC-GAN
(instance-conditioned GAN), KNN-Diffusion, RDM and Re-Imagen condition generation on
retrieved neighbours; here the neighbours are training images and the condition is text.
"""

from __future__ import annotations

import io
import itertools
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ganforge.data.attributes import SKIN_TONE_CHOICES, TONE_PHRASE
from ganforge.errors import CheckpointError, ConfigError
from ganforge.inference.base import reject_options
from ganforge.inference.compose import (
    COLOUR_WORDS,
    TARGET_HUES,
    PromptParts,
    hsv,
    overlay,
    parse_prompt,
    placement,
    recolour,
)
from ganforge.inference.dfgan import (
    MINILM_DIM,
    DFGANInferenceConfig,
    DFGANModel,
    UpBlock,
    channel_plan,
)


def encode_images(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images [N, 3, H, W] -> (concatenated lossless WebP bytes [T] uint8, offsets
    [N + 1]). Lossless: they decode to the same pixels; about 30 % smaller than optimised PNG
    on emoji (5.6 vs 8.1 MB for 2,763 Twemoji at 64 px)."""
    blobs = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image.permute(1, 2, 0).contiguous().numpy()).save(
            buffer, "WEBP", lossless=True, quality=100, method=4)
        blobs.append(buffer.getvalue())
    offsets = torch.tensor([0, *itertools.accumulate(len(b) for b in blobs)], dtype=torch.int64)
    data = torch.from_numpy(np.frombuffer(b"".join(blobs), dtype=np.uint8).copy())
    return data, offsets


#: colour names of ``colour_names``, each with its hue range in degrees (chromatic pixels)
HUES = (("red", 0, 15), ("orange", 15, 40), ("yellow", 40, 70), ("green", 70, 170),
        ("blue", 170, 255), ("purple", 255, 290), ("pink", 290, 340), ("red", 340, 361))


def colour_names(images: torch.Tensor) -> list[str]:
    """The dominant colour name of each uint8 image [N, 3, H, W] on a white background: the
    most frequent name among its pixels that are not near-white, each pixel named by hue
    (``HUES``) when saturated (a dark orange is brown, a pale red is pink), else black, grey
    or white by value. An all-white image is "white"."""
    hue, saturation, high = hsv(images)
    names = ["black", "grey", "white", "brown", *dict.fromkeys(n for n, _, _ in HUES)]
    code = {name: i for i, name in enumerate(names)}
    label = torch.full_like(high, code["grey"])
    label[high < 0.2] = code["black"]
    label[(high > 0.9) & (saturation < 0.25)] = code["white"]
    chromatic = (saturation >= 0.25) & (high >= 0.2)
    for name, start, end in HUES:
        label[chromatic & (hue >= start) & (hue < end)] = code[name]
    orange = chromatic & (hue >= 15) & (hue < 40)
    label[orange & (high < 0.6)] = code["brown"]
    reds = chromatic & ((hue < 15) | (hue >= 340))
    label[reds & (saturation < 0.5) & (high > 0.8)] = code["pink"]
    background = (high > 0.94) & (saturation < 0.06)
    out = []
    for labels, empty in zip(label.flatten(1), background.flatten(1), strict=True):
        kept = labels[~empty].long()
        out.append("white" if kept.numel() == 0
                   else names[int(torch.bincount(kept, minlength=len(names)).argmax())])
    return out


class Memory(nn.Module):
    """The training images a retrieval-augmented generator starts from: their encoded bytes
    (compact on disk: lossless WebP since 2026-12-03, PNG before — both decode; the buffer
    keeps its old name ``png`` so that older models load), their offsets, and the unit-length
    embeddings of their captions (fp16), all buffers saved with the weights; ``images()``
    decodes them once and keeps them. Optionally: colour keys [N, D] (``colour_captions``),
    and aliases — more names of some images ("coffee" for "hot beverage"), as unit
    embeddings ``alias_keys`` [M, D] with the index of the image each names,
    ``alias_owner`` [M]."""

    def __init__(self, count: int, nbytes: int, dim: int, colour_keys: bool = False,
                 aliases: int = 0):
        super().__init__()
        self.register_buffer("png", torch.zeros(nbytes, dtype=torch.uint8))
        self.register_buffer("offsets", torch.zeros(count + 1, dtype=torch.int64))
        self.register_buffer("keys", torch.zeros(count, dim, dtype=torch.float16))
        if colour_keys:
            self.register_buffer("colour_keys", torch.zeros(count, dim, dtype=torch.float16))
        else:
            self.colour_keys: torch.Tensor | None = None
        if aliases:
            self.register_buffer("alias_keys", torch.zeros(aliases, dim, dtype=torch.float16))
            self.register_buffer("alias_owner", torch.zeros(aliases, dtype=torch.int64))
        else:
            self.alias_keys: torch.Tensor | None = None
            self.alias_owner: torch.Tensor | None = None
        self._decoded: tuple[tuple[int, int, str], torch.Tensor] | None = None

    @classmethod
    def of(cls, images: torch.Tensor, keys: torch.Tensor,
           colour_keys: torch.Tensor | None = None) -> Memory:
        """A memory holding uint8 ``images`` [N, 3, H, W] with caption embeddings [N, D] (and
        optionally embeddings of the captions with their colours, [N, D])."""
        return cls.from_png(*encode_images(images), keys, colour_keys)

    @classmethod
    def from_png(cls, data: torch.Tensor, offsets: torch.Tensor, keys: torch.Tensor,
                 colour_keys: torch.Tensor | None = None,
                 aliases: tuple[torch.Tensor, torch.Tensor] | None = None) -> Memory:
        """A memory from ``encode_images``'s output and caption embeddings [N, D] (optional:
        colour keys [N, D]; aliases as (embeddings [M, D], owning image indices [M]))."""
        count = 0 if aliases is None else len(aliases[1])
        memory = cls(len(offsets) - 1, len(data), keys.shape[1], colour_keys is not None, count)
        memory.png.copy_(data)
        memory.offsets.copy_(offsets)
        memory.keys.copy_(F.normalize(keys.float(), dim=1).half())
        if colour_keys is not None:
            assert memory.colour_keys is not None
            memory.colour_keys.copy_(F.normalize(colour_keys.float(), dim=1).half())
        if count:
            assert aliases is not None and memory.alias_keys is not None
            assert memory.alias_owner is not None
            memory.alias_keys.copy_(F.normalize(aliases[0].float(), dim=1).half())
            memory.alias_owner.copy_(aliases[1])
        return memory

    def aliases(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(alias embeddings [M, D] float, owners [M]) on the CPU, or None without aliases."""
        if self.alias_keys is None or self.alias_owner is None:
            return None
        return self.alias_keys.float().cpu(), self.alias_owner.cpu()

    def images(self) -> torch.Tensor:
        """All images, uint8 [N, 3, H, W] on the buffers' device (decoded on first use)."""
        stamp = (self.png.data_ptr(), self.png.numel(), str(self.png.device))
        if self._decoded is None or self._decoded[0] != stamp:
            raw = self.png.cpu().numpy().tobytes()
            ends = self.offsets.tolist()
            decoded = []
            for index, (start, end) in enumerate(itertools.pairwise(ends)):
                try:
                    with Image.open(io.BytesIO(raw[start:end])) as image:
                        decoded.append(torch.from_numpy(np.array(image.convert("RGB"))))
                except (OSError, ValueError) as exc:
                    raise CheckpointError(f"retrieval memory image {index} cannot be decoded "
                                          f"({exc}): the weights are damaged") from None
            stack = torch.stack(decoded).permute(0, 3, 1, 2).contiguous()
            self._decoded = (stamp, stack.to(self.png.device))
        return self._decoded[1]


def alias_text(raw: str) -> str | None:
    """An alias as a prompt would say it: a short name's underscores and hyphens as spaces
    ("heart_eyes" -> "heart eyes"); None for one without letters ("+1", "100")."""
    text = " ".join(re.sub(r"[_-]", " ", str(raw)).split())
    return text if re.search(r"[A-Za-z]", text) else None


def tone_variants(captions: list[str]) -> dict[int, list[int]]:
    """For each caption that names no skin tone and has variants that name exactly one
    ("man running" -> "man running, light skin tone", ...): the variants' indices."""
    untoned = {caption: i for i, caption in enumerate(captions)
               if not TONE_PHRASE.search(caption)}
    out: dict[int, list[int]] = {}
    for i, caption in enumerate(captions):
        if len(TONE_PHRASE.findall(caption)) != 1:
            continue
        base = TONE_PHRASE.sub("", caption).strip(" ,:;")
        if base in untoned:
            out.setdefault(untoned[base], []).append(i)
    return out


def vary_tones(index: torch.Tensor, noise: torch.Tensor, variants: dict[int, list[int]]
               ) -> torch.Tensor:
    """``index`` [B] with each untoned start that has variants replaced by one of them or
    kept, evenly by the normal CDF of the row's second noise value (reproducible per seed)."""
    if noise.shape[1] < 2:
        raise ConfigError("skin_tones='varied' needs noise of at least 2 values per image")
    share = 0.5 * (1 + torch.erf(noise[:, 1].float().cpu() / 2**0.5))
    out = index.clone()
    for row, start in enumerate(index.tolist()):
        choices = [start, *variants.get(start, [])]
        out[row] = choices[min(int(float(share[row]) * len(choices)), len(choices) - 1)]
    return out


def pick_neighbours(similarity: torch.Tensor, noise: torch.Tensor, neighbours: int,
                    spread: float, margin: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(memory index [B], cosine similarity [B]) of each row's starting image: rank
    ``floor(|noise[:, 0]| / spread)`` among the ``neighbours`` most similar entries of
    ``similarity`` [B, N] that are within ``margin`` of the most similar (zero noise, or a
    prompt with one clear match: the most similar)."""
    top = similarity.topk(min(neighbours, similarity.shape[1]), dim=1)
    close = (top.values >= top.values[:, :1] - margin).sum(dim=1)
    rank = (noise[:, 0].float().abs() / spread).floor().long()
    rank = torch.minimum(rank, close - 1).clamp(min=0).unsqueeze(1)
    return top.indices.gather(1, rank).squeeze(1), top.values.gather(1, rank).squeeze(1)


class Down(nn.Module):
    """x2 down-sampling of the retrieved image's features: conv4x4/2, conv3x3."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


#: width of the generator's condition after its mapping layer
COND_DIM = 256


class RetrievalGenerator(nn.Module):
    """(noise [B, Z], sentence [B, D], start image [B, 3, S, S] in [-1, 1], start caption
    embedding [B, D], similarity [B]) -> start + edit, [B, 3, S, S].

    A U-Net: the start image is encoded down to 4x4; the decoder is DF-GAN's (up-sampling
    blocks with text-conditioned affine transforms, AdaIN) and joins the encoder's features at
    every scale. Its condition is the noise, the prompt, the prompt minus the start image's
    caption (what to change) and their similarity. The edit's last layer starts at zero: an
    untrained generator returns the retrieved image.
    """

    def __init__(self, size: int, noise_dim: int, text_dim: int, channels: int,
                 normalize: bool = True, colour_head: bool = False):
        super().__init__()
        plan = channel_plan(size, channels)
        # optional: a per-image affine colour map of the start (3x3 + shift) predicted from
        # the condition, applied before the edit; starts at the identity
        self.colour = nn.Linear(COND_DIM, 12) if colour_head else None
        if self.colour is not None:
            nn.init.zeros_(self.colour.weight)
            nn.init.zeros_(self.colour.bias)
        cond = COND_DIM
        self.noise_dim = noise_dim
        self.text_norm = nn.LayerNorm(text_dim)
        # one shared projection of (noise, prompt, prompt - start caption, similarity): the
        # many text-conditioned affines then read 256 values, not ~870 (4x fewer weights)
        self.mapping = nn.Sequential(nn.Linear(noise_dim + 2 * text_dim + 1, cond),
                                     nn.LeakyReLU(0.2))
        self.encode_stem = nn.Conv2d(3, plan[-1], 3, 1, 1)
        rising = list(reversed(plan))
        self.down = nn.ModuleList(Down(a, b) for a, b in itertools.pairwise(rising))
        self.stem = nn.Linear(cond, plan[0] * 16)
        self.blocks = nn.ModuleList(UpBlock(cond, a, b, normalize)
                                    for a, b in itertools.pairwise(plan))
        self.merge = nn.ModuleList(nn.Conv2d(2 * b, b, 1) for b in plan[1:])
        self.to_rgb = nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(plan[-1], 3, 3, 1, 1))
        nn.init.zeros_(self.to_rgb[1].weight)
        nn.init.zeros_(self.to_rgb[1].bias)

    def forward(self, noise: torch.Tensor, sentence: torch.Tensor, start: torch.Tensor,
                start_key: torch.Tensor, similarity: torch.Tensor,
                with_recoloured: bool = False) -> Any:
        """The image; with ``with_recoloured``, (image, the start after the colour map)."""
        dtype = noise.dtype
        text = self.text_norm(sentence.to(dtype))
        cond = self.mapping(torch.cat([noise, text, text - self.text_norm(start_key.to(dtype)),
                                       similarity.to(dtype).unsqueeze(1)], dim=1))
        start = start.to(dtype)
        h = F.leaky_relu(self.encode_stem(start), 0.2)
        skips = []
        for down in self.down:
            skips.append(h)
            h = down(h)
        x = h + self.stem(cond).view(noise.shape[0], -1, 4, 4)
        for block, merge, skip in zip(self.blocks, self.merge, reversed(skips), strict=True):
            x = merge(torch.cat([block(x, cond), skip], dim=1))
        base = start
        if self.colour is not None:
            params = self.colour(cond)
            matrix = params[:, :9].view(-1, 3, 3) + torch.eye(3, dtype=dtype, device=x.device)
            base = torch.einsum("bij,bjhw->bihw", matrix, start) + params[:, 9:, None, None]
        out = base + self.to_rgb(x)
        return (out, base) if with_recoloured else out


@dataclass(frozen=True)
class Composition:
    """A prompt's parts (``compose.parse_prompt``) with the sentence embeddings [D] of its
    subject and accessory phrases."""

    parts: PromptParts
    subject: torch.Tensor
    accessory: torch.Tensor | None


@dataclass
class RAGANInferenceConfig(DFGANInferenceConfig):
    """What sampling a retrieval-augmented GAN needs: DF-GAN's fields (the generator's shape,
    its frozen text encoder, the default truncation), the colour head, how a neighbour is
    picked, and the size and captions of its memory."""

    generator_channels: int = 16
    text_encoder: str = "minilm"
    colour_head: bool = False
    neighbours: int = 3
    rank_spread: float = 1.0
    rank_margin: float = 0.05
    memory_count: int = 0
    memory_bytes: int = 0
    memory_captions: list[str] = field(default_factory=list)
    memory_aliases: list[str] = field(default_factory=list)
    colour_keys: bool = False
    colour_pool: int = 16
    compose: bool = False
    accessory_min_similarity: float = 0.75


def colour_captions(images: torch.Tensor, captions: list[str]) -> list[str]:
    """Each caption prefixed by the colour measured on its uint8 image [N, 3, H, W] (the text
    a memory image's colour key embeds)."""
    return [f"{name} {caption}" for name, caption in zip(colour_names(images), captions,
                                                          strict=True)]


def colour_key_embeddings(images: torch.Tensor, captions: list[str], encode: Any
                          ) -> torch.Tensor:
    """Colour keys [N, D] (float, CPU) of uint8 images [N, 3, H, W] with their captions:
    ``encode(texts) -> [n, D]`` embeds ``colour_captions``, 512 at a time."""
    texts = colour_captions(images, captions)
    return torch.cat([encode(texts[i:i + 512]).float().cpu() for i in range(0, len(texts), 512)])


def build_retrieval_generator(config: Any) -> RetrievalGenerator:
    """The generator for a config with the family's shape fields (inference or training)."""
    return RetrievalGenerator(config.size, config.noise_dim, MINILM_DIM,
                              config.generator_channels,
                              normalize=config.fusion_norm == "instance",
                              colour_head=config.colour_head)


class RAGANModel(DFGANModel):
    """A trained retrieval-augmented GAN: ``generator`` and its ``memory``."""

    kind = "ragan"
    Config = RAGANInferenceConfig
    sampling_options = ("skin_tones",)

    @classmethod
    def build_modules(cls, config: RAGANInferenceConfig) -> dict[str, nn.Module]:
        return {"generator": build_retrieval_generator(config),
                "memory": Memory(config.memory_count, config.memory_bytes, MINILM_DIM,
                                 config.colour_keys, len(config.memory_aliases))}

    def name_similarity(self, sentence: torch.Tensor, aliases: bool = True
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """(similarity [B, N] of unit ``sentence`` [B, D] to each memory image's names: its
        caption or, with ``aliases``, the nearest of its aliases when nearer; the index [B, N]
        of the alias that gave it, -1 where the caption did)."""
        memory = self.modules["memory"]
        similarity = sentence @ memory.keys.float().T
        which = torch.full_like(similarity, -1, dtype=torch.long)
        if not aliases or memory.alias_keys is None:
            return similarity, which
        to_alias = sentence @ memory.alias_keys.float().T  # [B, M]
        owner = memory.alias_owner.view(1, -1).expand_as(to_alias)
        best = torch.full_like(similarity, -2.0).scatter_reduce(1, owner, to_alias, "amax")
        won = best > similarity
        if bool(won.any()):
            # which alias of the image was nearest: the alias whose similarity is its best
            hit = to_alias == best.gather(1, owner)
            alias_index = torch.arange(to_alias.shape[1], device=owner.device).expand_as(owner)
            chosen = torch.full_like(which, -1).scatter_reduce(
                1, owner, torch.where(hit, alias_index, torch.full_like(alias_index, -1)),
                "amax")
            which = torch.where(won, chosen, which)
        return torch.maximum(similarity, best), which

    def retrieve(self, sentence: torch.Tensor, noise: torch.Tensor, skin_tones: str = "as-named",
                 aliases: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(memory index [B], name similarity [B]) of the image each row starts from
        (``skin_tones``: see the module's docstring; ``aliases``: whether an image's aliases
        name it too, as well as its caption)."""
        if skin_tones not in SKIN_TONE_CHOICES:
            raise ConfigError(f"skin_tones must be one of {', '.join(SKIN_TONE_CHOICES)}, "
                              f"got {skin_tones!r}")
        memory = self.modules["memory"]
        sentence = F.normalize(sentence.float(), dim=1)
        similarity, _ = self.name_similarity(sentence, aliases)
        ranking = similarity
        if memory.colour_keys is not None:
            # among the entries nearest by caption, rank by the better of caption and
            # colour + caption (outside that pool a colour cannot pull in another subject)
            pool = similarity.topk(min(self.config.colour_pool, similarity.shape[1]), dim=1)
            coloured = torch.einsum("bd,bkd->bk", sentence,
                                    memory.colour_keys[pool.indices].float())
            ranking = similarity.scatter(1, pool.indices, torch.maximum(pool.values, coloured))
        index, _ = pick_neighbours(ranking, noise, self.config.neighbours,
                                   self.config.rank_spread, self.config.rank_margin)
        if skin_tones == "varied":
            if self._tone_variants is None:
                self._tone_variants = tone_variants(self.config.memory_captions)
            index = vary_tones(index, noise, self._tone_variants).to(index.device)
        return index, similarity.gather(1, index.unsqueeze(1)).squeeze(1)

    def add_colour_keys(self, encode: Any) -> None:
        """Give the memory colour keys: ``encode(texts) -> [N, D]`` embeds each caption
        prefixed by its image's measured colour (``colour_captions``)."""
        old = self.modules["memory"]
        keys = colour_key_embeddings(old.images().cpu(), self.config.memory_captions, encode)
        self.modules["memory"] = Memory.from_png(old.png.cpu(), old.offsets.cpu(),
                                                 old.keys.cpu(), keys, old.aliases())
        self.config.colour_keys = True

    def remember(self, images: torch.Tensor, captions: list[str], encode: Any,
                 aliases: list[list[str]] | None = None) -> int:
        """Add uint8 ``images`` [N, 3, S, S] (S: the model's size) with one caption each to
        the memory, without training; returns how many were added (an image the memory
        already holds under the same caption is skipped, so remembering twice adds nothing
        more). A prompt that names one of them then starts from it, as from a training image,
        and the generator edits it as it edits any start (for a caption it never saw in
        training, how much it changes the image is measured, not trained).
        ``aliases[i]``: more names of image i (added to the image already held when it is
        skipped; see ``alias_text``). An alias names one image: one equal to a caption in the
        memory, or already another image's alias, is dropped.
        ``encode(texts) -> [n, D]`` must be the pipeline's text encoder, which made the keys
        already there. When images are added, every image is stored again as lossless WebP
        (same pixels)."""
        size = self.config.size
        if images.dim() != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
            raise ConfigError(f"remember takes uint8 images [N, 3, {size}, {size}], got "
                              f"{images.dtype} {list(images.shape)}")
        if tuple(images.shape[2:]) != (size, size):
            raise ConfigError(f"remember: images are {images.shape[3]}x{images.shape[2]}, the "
                              f"model's memory holds {size}x{size}")
        if len(captions) != len(images) or not captions:
            raise ConfigError(f"remember takes one caption per image: {len(images)} image(s), "
                              f"{len(captions)} caption(s)")
        if aliases is not None and len(aliases) != len(images):
            raise ConfigError(f"remember: {len(aliases)} alias lists for {len(images)} images")
        blank = [i for i, c in enumerate(captions) if not isinstance(c, str) or not c.strip()]
        if blank:
            raise ConfigError(f"remember: caption {blank[0]} is empty ({len(blank)} empty in "
                              "all); every image needs words a prompt can match")
        old = self.modules["memory"]
        held = old.images().cpu()
        seen: dict[str, list[tuple[int, torch.Tensor]]] = {}
        for index, (caption, image) in enumerate(zip(self.config.memory_captions, held,
                                                     strict=True)):
            seen.setdefault(caption, []).append((index, image))
        fresh, owners = [], []  # an image held under the same caption is not added again
        for row, caption in enumerate(c.strip() for c in captions):
            image = images[row].cpu()
            same = [i for i, other in seen.get(caption, []) if torch.equal(image, other)]
            if same:
                owners.append(same[0])
                continue
            owners.append(len(held) + len(fresh))
            seen.setdefault(caption, []).append((owners[-1], image))
            fresh.append(row)
        names = [*self.config.memory_captions, *(captions[row].strip() for row in fresh)]
        taken = {n.casefold() for n in [*names, *self.config.memory_aliases]}
        new_aliases, new_owners = [], []
        for row, raw in enumerate(aliases or []):
            for text in filter(None, map(alias_text, raw)):
                if text.casefold() not in taken:
                    taken.add(text.casefold())
                    new_aliases.append(text)
                    new_owners.append(owners[row])
        if not fresh and not new_aliases:
            return 0

        def embed(texts: list[str]) -> torch.Tensor:
            return torch.cat([encode(texts[i:i + 512]).float().cpu()
                              for i in range(0, len(texts), 512)])

        device = old.png.device
        keys, colour_keys = old.keys.float().cpu(), old.colour_keys
        data, offsets = old.png.cpu(), old.offsets.cpu()
        if fresh:
            images = images[fresh].cpu()
            added = names[len(held):]
            keys = torch.cat([keys, F.normalize(embed(added), dim=1)])
            if colour_keys is not None:
                colour_keys = torch.cat([colour_keys.float().cpu(),
                                         colour_key_embeddings(images, added, encode)])
            data, offsets = encode_images(torch.cat([held, images]))
        alias_keys = old.aliases()
        if new_aliases:
            extra = (F.normalize(embed(new_aliases), dim=1),
                     torch.tensor(new_owners, dtype=torch.int64))
            alias_keys = extra if alias_keys is None else (
                torch.cat([alias_keys[0], extra[0]]), torch.cat([alias_keys[1], extra[1]]))
        memory = Memory.from_png(data, offsets, keys, colour_keys, alias_keys)
        self.modules["memory"] = memory.to(device)
        self.config.memory_captions = names
        self.config.memory_aliases = [*self.config.memory_aliases, *new_aliases]
        self.config.memory_count, self.config.memory_bytes = len(names), len(memory.png)
        self._tone_variants = None
        return len(fresh)

    def compositions(self, prompts: list[str], encode: Any) -> list[Composition | None] | None:
        """Per prompt, what a collage could add (``compose.parse_prompt``: a colour word, a
        "with" accessory) with the embeddings of its subject and accessory phrases, or None
        for a plain prompt; None for all when the model does not compose. ``encode(texts)
        -> [n, D]`` is the pipeline's text encoder."""
        if not self.config.compose:
            return None
        parts = [parse_prompt(prompt) for prompt in prompts]
        phrases = sorted({t for p in parts if p.composed
                          for t in (p.subject, p.accessory) if t is not None})
        if not phrases:
            return [None] * len(prompts)
        embedded = dict(zip(phrases, encode(phrases).float().cpu(), strict=True))
        return [Composition(p, embedded[p.subject],
                            embedded[p.accessory] if p.accessory else None)
                if p.composed else None for p in parts]

    _tone_variants: dict[int, list[int]] | None = None

    def starts(self, sentence: torch.Tensor, noise: torch.Tensor,
               compositions: list[Composition | None] | None = None,
               skin_tones: str = "as-named"
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
        """What each row starts from: (uint8 images [B, 3, S, S], their caption keys [B, D],
        similarities [B], descriptions). A row with a composition whose retrieved image lacks
        its accessory or colour starts from a collage (``compose``): the subject retrieved by
        its own phrase, recoloured, with the accessory retrieved and overlaid; its key is
        then the prompt itself (the collage is what was asked). ``skin_tones``: see
        ``retrieve``."""
        memory = self.modules["memory"]
        index, similarity = self.retrieve(sentence, noise, skin_tones)
        images = memory.images()[index.to(memory.png.device)]
        keys = self._start_keys(sentence, index)
        captions = self.config.memory_captions
        described = [captions[i] for i in index.tolist()]
        if not any(c is not None for c in compositions or []):
            return images, keys, similarity, described
        images, keys = images.cpu().clone(), keys.cpu().clone()
        similarity = similarity.float().cpu().clone()
        for row, composition in enumerate(compositions or []):
            if composition is None:
                continue
            made = self._collage(composition, int(index[row]), noise[row:row + 1])
            if made is not None:
                images[row], described[row] = made
                keys[row] = F.normalize(sentence[row].float().cpu(), dim=0)
                similarity[row] = 1.0
        return images, keys, similarity, described

    def _start_keys(self, sentence: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """The name key [B, D] (float) the generator gets for each row's start: its caption's,
        or the alias of that image nearest the prompt when it is nearer than the caption (a
        prompt "coffee" starting from the image captioned "hot beverage" is the image's own
        name, not an edit away from it)."""
        memory = self.modules["memory"]
        keys = memory.keys[index].float()
        if memory.alias_keys is None:
            return keys
        _, which = self.name_similarity(F.normalize(sentence.float(), dim=1))
        alias = which.gather(1, index.view(-1, 1).to(which.device)).squeeze(1)
        named = alias >= 0
        if bool(named.any()):
            keys = keys.clone()
            keys[named] = memory.alias_keys[alias[named]].float()
        return keys

    def _collage(self, composition: Composition, index: int, noise: torch.Tensor
                 ) -> tuple[torch.Tensor, str] | None:
        """(collage, description) for one row, or None when the retrieved image already has
        what the prompt asks for (its caption names the accessory and the subject's last
        word, and its colour is the one asked for or its caption names that colour). An
        accessory is only overlaid when the memory holds an image of it alone
        (``_depicts_alone``): "with white cane" or "with open mouth" retrieve a person or a
        face, which pasted on the subject would make a worse picture than none."""
        memory, captions = self.modules["memory"], self.config.memory_captions
        parts = composition.parts
        accessory = None
        if composition.accessory is not None and not (
                _names_all(captions[index], parts.accessory or "")
                and _names_all(captions[index], parts.subject.split()[-1])):
            # by captions only: an alias can name a whole emoji after the object it shows
            # ("sunglasses" for the smiling face with sunglasses)
            found, score = self.retrieve(composition.accessory.view(1, -1).to(noise.device),
                                         torch.zeros_like(noise), aliases=False)
            if float(score) >= self.config.accessory_min_similarity and _depicts_alone(
                    captions[int(found)], parts.accessory or ""):
                accessory = int(found)
                index = int(self.retrieve(composition.subject.view(1, -1).to(noise.device),
                                          noise)[0])
        images = memory.images()
        subject = images[index].cpu()
        description = captions[index]
        changed = False
        if parts.colour in TARGET_HUES and not _names_all(description, parts.colour or "") \
                and colour_names(subject[None])[0] != parts.colour:
            subject = recolour(subject, parts.colour)
            description += f", recoloured {parts.colour}"
            changed = True
        if accessory is not None:
            worn = images[accessory].cpu()
            colour = parts.accessory_colour
            if colour is not None and colour_names(worn[None])[0] != colour:
                worn = recolour(worn, colour)
            subject = overlay(subject, worn, placement(parts.accessory or ""))
            description += f" + {captions[accessory]}"
            changed = True
        return (subject, description) if changed else None

    def interpolate(self, ends: torch.Tensor, weights: torch.Tensor, noise: torch.Tensor,
                    compositions: list[Composition | None] | None = None,
                    skin_tones: str = "as-named", **options: Any) -> torch.Tensor:
        """From one prompt's picture to the other's: each frame starts from the two prompts'
        starting images (``starts``) cross-faded by its weight, with the blended prompt,
        caption key and similarity, so the frames change step by step (blending only the
        prompts' embeddings jumps once, where the nearest training image changes).
        ``skin_tones``: as for ``generate`` (each end drawn as if its tone were named)."""
        reject_options(self.kind, options)
        images, keys, similarity, _ = self.starts(ends, noise[:2], compositions, skin_tones)
        if skin_tones == "varied":
            ends = self._as_if_named(ends, noise[:2], keys)
        device, w = noise.device, weights.to(noise.device).float().view(-1, 1)
        images, keys = images.to(device).float(), keys.to(device).float()
        start = images[0] * (1 - w.view(-1, 1, 1, 1)) + images[1] * w.view(-1, 1, 1, 1)
        key = F.normalize(keys[0] * (1 - w) + keys[1] * w, dim=1)
        similarity = similarity.to(device).float()
        blended = similarity[0] * (1 - w.flatten()) + similarity[1] * w.flatten()
        sentence = ends[0].float() * (1 - w) + ends[1].float() * w
        return self.modules["generator"](noise, sentence.to(noise.dtype),
                                         start.div(127.5).sub(1), key, blended)

    def _as_if_named(self, condition: torch.Tensor, noise: torch.Tensor, keys: torch.Tensor
                     ) -> torch.Tensor:
        """``condition`` with each row that ``skin_tones="varied"`` moved to a tone variant
        replaced by that variant's caption key (same norm): the generator then draws the
        variant as if its tone had been asked for, instead of editing the tone away (the
        prompt minus the caption would name it)."""
        plain, _ = self.retrieve(condition, noise)
        varied, _ = self.retrieve(condition, noise, "varied")
        moved = (plain != varied).to(condition.device)
        if not bool(moved.any()):
            return condition
        named = F.normalize(keys.to(condition.device).float(), dim=1) * condition.float().norm(
            dim=1, keepdim=True)
        return torch.where(moved.unsqueeze(1), named.to(condition.dtype), condition)

    def starting_captions(self, sentence: torch.Tensor, noise: torch.Tensor,
                          compositions: list[Composition | None] | None = None,
                          skin_tones: str = "as-named") -> list[str]:
        """What each row starts from, in words: the training image's caption, or the collage
        made of them (provenance)."""
        return self.starts(sentence, noise, compositions, skin_tones)[3]

    def generate(self, condition: Any, noise: torch.Tensor,
                 compositions: list[Composition | None] | None = None,
                 skin_tones: str = "as-named", **options: Any) -> torch.Tensor:
        """Find each row's starting image (``starts``: retrieved, or a collage for a
        ``compositions`` row), then ``generator(noise, sentence, start, start caption,
        similarity)``. Sampling option: ``skin_tones`` ("as-named" or "varied")."""
        reject_options(self.kind, options)
        images, keys, similarity, _ = self.starts(condition, noise, compositions, skin_tones)
        if skin_tones == "varied":
            condition = self._as_if_named(condition, noise, keys)
        device = noise.device
        start = images.to(device).float().div(127.5).sub(1)
        return self.modules["generator"](noise, condition, start, keys.to(device),
                                         similarity.to(device))


def _depicts_alone(caption: str, phrase: str) -> bool:
    """Whether a memory caption names the object of ``phrase`` alone: every word of the phrase
    (but colour words), at most one more word ("heavy dollar sign" for "dollar sign"), and
    no "with" or ":" (which join a person or face to the object in emoji names)."""
    words = re.findall(r"[a-z]+", caption.lower())
    wanted = [w for w in re.findall(r"[a-z]+", phrase.lower()) if w not in COLOUR_WORDS]
    return (_names_all(caption, phrase) and "with" not in words and ":" not in caption
            and len(words) <= len(wanted) + 1)


def _names_all(caption: str, phrase: str) -> bool:
    """Whether every word of ``phrase`` occurs in ``caption`` (a phrase of more than colour
    words: every word but the colour words)."""
    words = set(re.findall(r"[a-z]+", caption.lower()))
    wanted = re.findall(r"[a-z]+", phrase.lower())
    wanted = [w for w in wanted if w not in COLOUR_WORDS] or wanted
    return all(w in words for w in wanted)
