"""Image-to-image inference: translate images with a trained translator (CycleGAN, ...)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ganforge.data.images import fit_square, flatten_alpha, open_rgb, parse_color, to_tensor
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
    def styles(self) -> list[str]:
        """Target styles of a multi-style model (StarGAN v2), which has no directions."""
        return list(self.info.get("styles", []))

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
    def translate_tensor(self, images: torch.Tensor, direction: str | None = None,
                         **options: Any) -> torch.Tensor:
        """[B, 3, size, size] in [-1, 1] -> translated images, same layout.

        ``direction`` None: "a2b" for a model with directions (a multi-style model takes a
        ``style`` option instead). ``options`` go to the family (e.g. a target style); see
        ``Family.translate``."""
        from ganforge.models import get_family

        if direction is None and "directions" in self.info:
            direction = "a2b"

        family = get_family(self.family)
        out = family.translate(self.networks, self.info, images.to(self.device), direction,
                               **options)
        return out.float().clamp(-1, 1)

    def _check_direction(self, direction: str | None) -> None:
        table = self.info.get("directions")
        if table is not None and direction is not None and direction not in table:
            raise ConfigError(f"direction {direction!r} is unknown to model {self.name}; "
                              f"known: {', '.join(table)}")

    def __call__(self, images: ImageInput | Sequence[ImageInput], direction: str | None = None,
                 batch_size: int = 16, **options: Any) -> list[Image.Image]:
        """Translate images (PIL images or file paths) in ``direction``."""
        if isinstance(images, Image.Image | str | Path):
            images = [images]
        self._check_direction(direction)
        out: list[Image.Image] = []
        for start in range(0, len(images), batch_size):
            batch = self.preprocess(images[start:start + batch_size])
            out += self.to_images(self.translate_tensor(batch, direction, **options))
        return out
