"""Text-to-image inference: prompts in, images out, reproducible from a seed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ganforge.core.seeding import image_seed
from ganforge.data.images import fit_square, flatten_alpha, open_image, parse_color, to_tensor
from ganforge.errors import ConfigError, ImageTooSmall
from ganforge.inference import TextToImageModel
from ganforge.pipelines.base import Pipeline
from ganforge.text import TextEmbedding, TextEncoder, build_text_encoder, check_prompts

#: the model trained by us and shipped inside the package (see its README.md model card)
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "assets" / "text2image-emoji-64"
MAX_IMAGES = 1024

#: what ``encode`` gives: sentence embeddings [P, D] (DF-GAN) or token states (MaskGIT)
Condition = torch.Tensor | TextEmbedding


def take_rows(condition: Condition, rows: torch.Tensor | slice) -> Condition:
    """The chosen rows of a condition, whichever its kind."""
    if isinstance(condition, TextEmbedding):
        return TextEmbedding(condition.sentence[rows], condition.tokens[rows],
                             condition.mask[rows])
    return condition[rows]


class TextToImagePipeline(Pipeline):
    """``pipe(prompts, seed=0, num_images=4) -> list[PIL.Image]`` (prompt-major order).

    Image ``j`` of every prompt uses the same noise, drawn from ``seed`` and ``j`` only: the
    same prompt, seed and model give the same image whatever else is asked for. Byte for byte
    when the generator runs at the same batch size; across batch sizes the CPU kernels round
    differently (about 1e-6), which can move a few pixels by one grey level.

    Serves every text-to-image inference model (``ganforge.inference``): a model with a
    ``noise_dim`` (DF-GAN) gets Gaussian noise vectors and sentence embeddings; one that
    ``uses_tokens`` (MaskGIT) gets the text encoder's token states, and per-image seeds [N]
    int64 as its noise. Sampling settings (``guidance``, ``temperature``, ``decode_steps``)
    pass through to the model's ``generate`` as ``options``.
    """

    task = "text-to-image"

    def __init__(self, model: TextToImageModel, name: str | None = None):
        super().__init__(model, name)
        # a trained encoder is one of the model's networks; a frozen one comes from its package
        self.text_encoder: TextEncoder
        if "text_encoder" in model.modules:
            self.text_encoder = model.modules["text_encoder"]
        else:
            self.text_encoder = build_text_encoder(model.text_encoder_settings()).eval()
            self.text_encoder.to(model.device)

    model: TextToImageModel

    def to(self, device: str | torch.device) -> TextToImagePipeline:
        super().to(device)
        self.text_encoder.to(device)
        return self

    @property
    def size(self) -> int:
        return self.model.size

    @property
    def uses_tokens(self) -> bool:
        """Whether the model conditions on token states (else on sentence embeddings)."""
        return self.model.uses_tokens

    def noise(self, count: int, seed: int, truncation: float | None = None) -> torch.Tensor:
        """Noise [count, Z] from ``seed``; with ``truncation`` t, every value lies in [-t, t]
        (truncated normal: fewer surprises, less variety); ``None`` takes the model's own
        default (chosen at training, else none). For a family without a noise vector
        (MaskGIT): the per-image seeds [count] int64 its sampler draws from."""
        dim = self.model.noise_dim
        if truncation is None and dim is not None:
            truncation = self.model.default_truncation
        if truncation is not None and truncation <= 0:
            raise ConfigError(f"truncation must be positive, got {truncation}")
        if dim is None:
            if truncation is not None:
                raise ConfigError(f"{self.family} models have no noise vector to truncate; "
                                  "use temperature instead")
            return torch.tensor([image_seed(seed, index) for index in range(count)],
                                dtype=torch.long)
        rows = []
        for index in range(count):  # one generator per image: image j never depends on count
            gen = torch.Generator().manual_seed(image_seed(seed, index))
            if truncation is None:
                rows.append(torch.randn(dim, generator=gen))
                continue
            # inverse CDF of the normal restricted to [-t, t]: exact, and one draw per value
            # however small t is (rejection sampling would stall for t near 0)
            edge = torch.special.ndtr(torch.tensor(-float(truncation), dtype=torch.float64))
            u = edge + (1 - 2 * edge) * torch.rand(dim, generator=gen, dtype=torch.float64)
            rows.append(torch.special.ndtri(u).clamp(-truncation, truncation).float())
        return torch.stack(rows)

    @torch.no_grad()
    def encode(self, prompts: str | Sequence[str]) -> Condition:
        """Sentence embeddings [P, D] of checked prompts; for a family that reads token
        states, the whole TextEmbedding (tokens [P, T, E] float, mask [P, T])."""
        embedding = self.text_encoder.encode(check_prompts(prompts))
        if self.uses_tokens:
            return TextEmbedding(embedding.sentence.float(), embedding.tokens.float(),
                                 embedding.mask)
        return embedding.sentence.float()

    @torch.no_grad()
    def compositions(self, prompts: Sequence[str]) -> list[Any] | None:
        """What the model reads from each prompt's words beyond its embedding (a
        retrieval-augmented model: colour and "with" parts it may build a collage from), or
        None."""
        return self.model.compositions(check_prompts(prompts), self.encode)

    @torch.no_grad()
    def generate_tensor(self, sentence: Condition, noise: torch.Tensor,
                        batch_size: int = 256, compositions: list[Any] | None = None,
                        **options: Any) -> torch.Tensor:
        """Images [N, 3, S, S] in [-1, 1] for rows of conditions (``encode``) and noise
        (``noise``), with each row's ``compositions`` entry when the model reads prompts'
        words (``compositions``); ``options`` are the family's sampling settings."""
        out = []
        for start in range(0, len(noise), batch_size):
            rows = slice(start, start + batch_size)
            condition = take_rows(sentence, rows).to(self.device)
            extra = {} if compositions is None else {"compositions": compositions[rows]}
            out.append(self.model.generate(condition, noise[rows].to(self.device), **extra,
                                           **options).float().clamp(-1, 1))
        return torch.cat(out)

    def __call__(self, prompts: str | Sequence[str], num_images: int = 1, seed: int = 0,
                 truncation: float | None = None, batch_size: int = 256,
                 **options: Any) -> list[Image.Image]:
        """``num_images`` images for each prompt; ``options``: the family's sampling settings
        (MaskGIT: ``guidance``, ``temperature``, ``decode_steps``)."""
        if not 1 <= num_images <= MAX_IMAGES:
            raise ConfigError(f"number of images must be in 1..{MAX_IMAGES}, got {num_images}")
        noise = self.noise(num_images, seed, truncation)
        prompts = check_prompts(prompts)
        repeat = (len(prompts),) + (1,) * (noise.dim() - 1)
        return self.to_images(self.generate_prompts(
            [p for p in prompts for _ in range(num_images)], noise.repeat(*repeat), batch_size,
            **options))

    @torch.no_grad()
    def generate_prompts(self, prompts: Sequence[str], noise: torch.Tensor,
                         batch_size: int = 256, **options: Any) -> torch.Tensor:
        """Images [N, 3, S, S] in [-1, 1], one per prompt with noise row i: what ``__call__``
        gives, as a tensor (the prompts' embeddings and ``compositions``; a repeated prompt
        is encoded once)."""
        prompts = check_prompts(prompts)
        unique = list(dict.fromkeys(prompts))
        slot = {prompt: i for i, prompt in enumerate(unique)}
        index = torch.tensor([slot[p] for p in prompts])
        plans = self.compositions(unique)
        if plans is not None:
            plans = [plans[i] for i in index.tolist()]
        return self.generate_tensor(take_rows(self.encode(unique), index), noise, batch_size,
                                    plans, **options)

    def remember(self, images: Sequence[Image.Image | str | Path], captions: Sequence[str],
                 allow_upscale: bool = False,
                 aliases: Sequence[Sequence[str]] | None = None) -> int:
        """Add images (files or PIL images) with one caption each to a retrieval-augmented
        model's memory, without training (see ``RAGANModel.remember``); returns how many
        were added (one already held under the same caption is skipped). Each image is
        composited onto the model's background and fitted to its size, as training images
        are; one smaller than that size is refused unless ``allow_upscale``. ``aliases``: more
        names per image ("coffee" for "hot beverage"). ``save_pretrained`` then writes the
        grown model."""
        if not hasattr(self.model, "remember"):
            raise ConfigError(f"{self.family} models have no memory of images to add to: "
                              "only retrieval-augmented (ragan) models can remember images")
        background = parse_color(self.background)
        tensors = []
        for index, item in enumerate(images):
            im = item if isinstance(item, Image.Image) else open_image(item)
            if min(im.size) < self.size and not allow_upscale:
                name = f"image {index}" if isinstance(item, Image.Image) else f"image file {item}"
                raise ImageTooSmall(f"{name} is {im.size[0]}x{im.size[1]}, smaller than the "
                                    f"model's {self.size}x{self.size}; pass allow_upscale to "
                                    "enlarge it")
            tensors.append(to_tensor(fit_square(flatten_alpha(im, background), self.size)))
        if not tensors:
            raise ConfigError("remember: no images given")
        encode = self.text_encoder.encode
        return self.model.remember(torch.stack(tensors), list(captions),
                                   lambda texts: encode(texts).sentence,
                                   None if aliases is None else [list(a) for a in aliases])

    def interpolate(self, first: str, second: str, steps: int = 8, seed: int = 0,
                    truncation: float | None = None, **options: Any) -> list[Image.Image]:
        """Images along the straight line from ``first``'s embedding to ``second``'s (token
        states for MaskGIT, over the union of both prompts' tokens), with the same noise
        throughout; a model with a way of its own (``interpolate``: a retrieval model
        cross-fades its two starting images) uses it."""
        if not 2 <= steps <= MAX_IMAGES:
            raise ConfigError(f"interpolation steps must be in 2..{MAX_IMAGES}, got {steps}")
        ends = self.encode([first, second])
        weights = torch.linspace(0, 1, steps).unsqueeze(1)
        noise = self.noise(1, seed, truncation)
        noise = noise.repeat(steps, *(1,) * (noise.dim() - 1))
        own = self.model.interpolate(take_rows(ends, slice(0, 2)).to(self.device),
                                     weights.flatten().to(self.device), noise.to(self.device),
                                     self.compositions([first, second]), **options)
        if own is not None:
            return self.to_images(own.float().clamp(-1, 1))
        if isinstance(ends, TextEmbedding):
            w = weights.unsqueeze(2)
            # the ends read their own tokens only (so they are the prompts' plain images);
            # between them, a token of one prompt fades in from the other's zero padding
            mask = (ends.mask[0] | ends.mask[1]).repeat(steps, 1)
            mask[0], mask[-1] = ends.mask[0], ends.mask[1]
            rows: Condition = TextEmbedding(
                ends.sentence[0] * (1 - weights) + ends.sentence[1] * weights,
                ends.tokens[0] * (1 - w) + ends.tokens[1] * w, mask)
        else:
            rows = ends[0] * (1 - weights) + ends[1] * weights
        return self.to_images(self.generate_tensor(rows, noise, **options))
