"""Image-to-image inference: translate images with a trained translator (CycleGAN, ...)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from ganforge.data.images import fit_square, flatten_alpha, open_rgb, parse_color, to_pil, to_tensor
from ganforge.errors import ConfigError
from ganforge.pipelines.base import Pipeline

ImageInput = Image.Image | str | Path


class ImageToImagePipeline(Pipeline):
    """``pipe(images, direction="a2b") -> list[PIL.Image]`` at the model's resolution."""

    task = "image-to-image"

    @property
    def directions(self) -> list[str]:
        return list(self.info.get("directions", {}))

    @property
    def size(self) -> int:
        return int(self.info["size"])

    def preprocess(self, images: Sequence[ImageInput]) -> torch.Tensor:
        """Files or PIL images -> [B, 3, size, size] in [-1, 1] (transparency composited)."""
        background = parse_color(self.info.get("background", "white"))
        tensors = []
        for item in images:
            if isinstance(item, Image.Image):
                im = flatten_alpha(item, background)
            else:
                im = open_rgb(item, background)
            tensors.append(to_tensor(fit_square(im, self.size)))
        return torch.stack(tensors).float().div(127.5).sub(1.0)

    @torch.no_grad()
    def translate_tensor(self, images: torch.Tensor, direction: str = "a2b") -> torch.Tensor:
        """[B, 3, size, size] in [-1, 1] -> translated images, same layout."""
        network = self.networks[self._network_for(direction)]
        return network(images.to(self.device)).float().clamp(-1, 1)

    def _network_for(self, direction: str) -> str:
        table = self.info.get("directions", {})
        if direction not in table:
            raise ConfigError(f"direction {direction!r} is unknown to model {self.name}; "
                              f"known: {', '.join(table)}")
        return table[direction]

    def __call__(self, images: ImageInput | Sequence[ImageInput], direction: str = "a2b",
                 batch_size: int = 16) -> list[Image.Image]:
        """Translate images (PIL images or file paths) in ``direction``."""
        if isinstance(images, Image.Image | str | Path):
            images = [images]
        self._network_for(direction)
        out: list[Image.Image] = []
        for start in range(0, len(images), batch_size):
            batch = self.preprocess(images[start:start + batch_size])
            out += to_pil(self.translate_tensor(batch, direction))
        return out
