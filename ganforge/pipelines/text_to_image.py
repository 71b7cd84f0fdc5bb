"""Text-to-image inference: prompts in, images out, reproducible from a seed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ganforge.errors import ConfigError
from ganforge.pipelines.base import Pipeline
from ganforge.text import TextEncoder, build_text_encoder, check_prompts

#: the model trained by us and shipped inside the package (see its README.md model card)
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "assets" / "text2image-emoji-64"
MAX_IMAGES = 1024


class TextToImagePipeline(Pipeline):
    """``pipe(prompts, seed=0, num_images=4) -> list[PIL.Image]`` (prompt-major order).

    Image ``j`` of every prompt uses the same noise, drawn from ``seed``: the same prompt,
    seed and model always give the same image, whatever else is in the batch.
    """

    task = "text-to-image"

    def __init__(self, family: str, model_config: dict[str, Any], info: dict[str, Any],
                 networks: dict[str, torch.nn.Module], trained_steps: int = 0):
        super().__init__(family, model_config, info, networks, trained_steps)
        self.text_encoder: TextEncoder = networks.get("text_encoder") or self._frozen_encoder()

    def _frozen_encoder(self) -> TextEncoder:
        from ganforge.config import from_dict
        from ganforge.models import get_family

        family = get_family(self.family)
        config = from_dict(family.ModelConfig, self.model_config)
        return build_text_encoder(config.text_encoder_config()).eval()

    def to(self, device: str | torch.device) -> TextToImagePipeline:
        super().to(device)
        self.text_encoder.to(device)
        return self

    @property
    def size(self) -> int:
        return int(self.info["size"])

    def noise(self, count: int, seed: int, truncation: float | None = None) -> torch.Tensor:
        """Noise [count, Z] from ``seed``; with ``truncation`` t, every value lies in [-t, t]
        (truncated normal: fewer surprises, less variety)."""
        if truncation is not None and truncation <= 0:
            raise ConfigError(f"truncation must be positive, got {truncation}")
        rows = []
        for index in range(count):  # one generator per image: image j never depends on count
            gen = torch.Generator().manual_seed(seed * 1_000_003 + index)
            z = torch.randn(int(self.info["noise_dim"]), generator=gen)
            if truncation is not None:
                outside = z.abs() > truncation
                while outside.any():
                    z[outside] = torch.randn(int(outside.sum()), generator=gen)
                    outside = z.abs() > truncation
            rows.append(z)
        return torch.stack(rows)

    @torch.no_grad()
    def encode(self, prompts: str | Sequence[str]) -> torch.Tensor:
        """Sentence embeddings [P, D] of checked prompts."""
        return self.text_encoder.encode(check_prompts(prompts)).sentence.float()

    @torch.no_grad()
    def generate_tensor(self, sentence: torch.Tensor, noise: torch.Tensor,
                        batch_size: int = 256) -> torch.Tensor:
        """Images [N, 3, S, S] in [-1, 1] for rows of sentence embeddings and noise."""
        generator = self.networks["generator"]
        out = [generator(z.to(self.device), s.to(self.device)).float().clamp(-1, 1)
               for z, s in zip(noise.split(batch_size), sentence.split(batch_size), strict=True)]
        return torch.cat(out)

    def __call__(self, prompts: str | Sequence[str], num_images: int = 1, seed: int = 0,
                 truncation: float | None = None, batch_size: int = 256) -> list[Image.Image]:
        """``num_images`` images for each prompt."""
        if not 1 <= num_images <= MAX_IMAGES:
            raise ConfigError(f"number of images must be in 1..{MAX_IMAGES}, got {num_images}")
        sentence = self.encode(prompts)
        noise = self.noise(num_images, seed, truncation)
        rows = sentence.repeat_interleave(num_images, dim=0)
        return self.to_images(self.generate_tensor(rows, noise.repeat(len(sentence), 1),
                                                   batch_size))

    def interpolate(self, first: str, second: str, steps: int = 8, seed: int = 0,
                    truncation: float | None = None) -> list[Image.Image]:
        """Images along the straight line from ``first``'s embedding to ``second``'s, with
        the same noise throughout."""
        if not 2 <= steps <= MAX_IMAGES:
            raise ConfigError(f"interpolation steps must be in 2..{MAX_IMAGES}, got {steps}")
        ends = self.encode([first, second])
        weights = torch.linspace(0, 1, steps).unsqueeze(1)
        rows = ends[0] * (1 - weights) + ends[1] * weights
        return self.to_images(self.generate_tensor(rows, self.noise(1, seed, truncation)
                                                   .repeat(steps, 1)))
