"""Image-to-image inference: translate images with a trained translator (CycleGAN, ...).

Networks see RGB composited onto the model's background colour; an input with transparency
gets its own alpha channel back on the translation (resized like the image), so an RGBA icon
gives an RGBA icon.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import torch
from PIL import Image

from ganforge.data.images import (
    alpha_channel,
    fit_square,
    flatten_alpha,
    open_image,
    parse_color,
    to_tensor,
)
from ganforge.errors import ConfigError
from ganforge.inference import ImageToImageModel
from ganforge.pipelines.base import Pipeline, put_alpha

ImageInput = Image.Image | str | Path

#: the restyle model trained by us (flat emoji -> Fluent Emoji 3D, 64 px) and shipped in the
#: package; ``ganforge translate`` and ``ganforge serve`` use it when no model is named
DEFAULT_TRANSLATOR = Path(__file__).resolve().parents[1] / "assets" / "restyle-3d-64"


class ImageToImagePipeline(Pipeline):
    """``pipe(images, direction="a2b") -> list[PIL.Image]`` at the model's resolution."""

    task = "image-to-image"
    model: ImageToImageModel

    @property
    def directions(self) -> list[str]:
        return list(self.model.directions)

    @property
    def styles(self) -> list[str]:
        """Target styles of a multi-style model (StarGAN v2), which has no directions."""
        return list(self.model.styles)

    @property
    def size(self) -> int:
        return self.model.size

    def preprocess(self, images: Sequence[ImageInput]) -> torch.Tensor:
        """Files or PIL images -> [B, 3, size, size] in [-1, 1] (transparency composited)."""
        return self.preprocess_with_alpha(images)[0]

    def preprocess_with_alpha(self, images: Sequence[ImageInput]
                              ) -> tuple[torch.Tensor, list[Image.Image | None]]:
        """Files or PIL images -> ([B, 3, size, size] in [-1, 1] composited onto the
        background, each input's alpha band at size x size or None when it is opaque)."""
        background = parse_color(self.background)
        tensors, alphas = [], []
        for item in images:
            im = item if isinstance(item, Image.Image) else open_image(item)
            alpha = alpha_channel(im)
            tensors.append(to_tensor(fit_square(flatten_alpha(im, background), self.size)))
            if alpha is not None:
                # a model that draws its subject smaller (pix2pix --input-scale) or reshaped
                # (a relight model's flags) fits the alpha alike, so the output's transparency
                # follows what it drew
                alpha = self.model.fit_alpha(fit_square(alpha, self.size),
                                             tensors[-1].float().div(127.5).sub(1.0))
            alphas.append(alpha)
        return torch.stack(tensors).float().div(127.5).sub(1.0), alphas

    @torch.no_grad()
    def translate_tensor(self, images: torch.Tensor, direction: str | None = None,
                         **options: Any) -> torch.Tensor:
        """[B, 3, size, size] in [-1, 1] -> translated images, same layout.

        ``direction`` None: "a2b" for a model with directions (a multi-style model takes a
        ``style`` option instead). ``options`` go to the family (e.g. a target style); see
        the model's ``translate``."""
        if direction is None:
            direction = self.model.default_direction()
        out = self.model.translate(images.to(self.device), direction, **options)
        return out.float().clamp(-1, 1)

    def _check_direction(self, direction: str | None) -> None:
        table = self.model.directions
        if table and direction is not None and direction not in table:
            raise ConfigError(f"direction {direction!r} is unknown to model {self.name}; "
                              f"known: {', '.join(table)}")

    def __call__(self, images: ImageInput | Sequence[ImageInput], direction: str | None = None,
                 batch_size: int = 16, **options: Any) -> list[Image.Image]:
        """Translate images (PIL images or file paths) in ``direction``; an input with
        transparency gives an RGBA output carrying its alpha."""
        if isinstance(images, Image.Image | str | Path):
            images = [images]
        self._check_direction(direction)
        out: list[Image.Image] = []
        for start in range(0, len(images), batch_size):
            batch, alphas = self.preprocess_with_alpha(images[start:start + batch_size])
            out += put_alpha(self.to_images(self.translate_tensor(batch, direction, **options)),
                             alphas)
        return out

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None,
                        device: str | torch.device = "cpu") -> Self:
        """Load a saved translator or run folder; ``None``: the shipped restyle model
        (:data:`DEFAULT_TRANSLATOR`)."""
        return super().from_pretrained(DEFAULT_TRANSLATOR if path is None else path, device)
