"""Super-resolution inference: images of any size in, ``scale`` times larger images out.

Large images are upscaled in overlapping tiles whose outputs are cross-faded (linear ramps
over the overlap), so memory stays bounded by the tile size while the result matches
whole-image inference up to a small error at tile seams.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Self

import torch
from PIL import Image

from ganforge.data.images import (
    alpha_channel,
    flatten_alpha,
    open_image,
    parse_color,
    to_tensor,
    uint8_to_float,
)
from ganforge.errors import ConfigError, DataError
from ganforge.inference import UpscaleModel
from ganforge.pipelines.base import Pipeline, put_alpha

ImageInput = Image.Image | str | Path

#: the x4 upscaler trained by us on Fluent Emoji 3D and shipped in the package (model card:
#: its README.md)
DEFAULT_UPSCALER = Path(__file__).resolve().parents[1] / "assets" / "upscale-x4-fluent3d"
MIN_SIDE = 8
#: largest input, in pixels (1024 x 1024: a 4096 x 4096 output at x4)
MAX_PIXELS = 1024 * 1024


def check_tiling(tile: int | None, overlap: int) -> None:
    """Refuse tile settings that cannot cover an image: non-positive, or no larger than the
    overlap (tiles would not advance)."""
    if tile is None:
        return
    if tile < 1:
        raise ConfigError(f"tile size {tile} must be positive (pixels of the input image)")
    if overlap < 0:
        raise ConfigError(f"tile overlap {overlap} must be >= 0")
    if tile <= overlap:
        raise ConfigError(f"tile size {tile} must be larger than the tile overlap {overlap}")


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile offsets along one side: a stride of ``tile - overlap``, the last flush with the end."""
    if length <= tile:
        return [0]
    return [*range(0, length - tile, tile - overlap), length - tile]


def _ramp(length: int, fade: int, fade_in: bool, fade_out: bool) -> torch.Tensor:
    """Blend weights [length] of one tile side: linear ramps of ``fade`` pixels at the sides
    that meet another tile, 1 elsewhere (never 0, so every pixel is covered)."""
    weights = torch.ones(length)
    if fade > 0:
        ramp = (torch.arange(min(fade, length)) + 0.5) / fade
        if fade_in:
            weights[:len(ramp)] = torch.minimum(weights[:len(ramp)], ramp)
        if fade_out:
            weights[-len(ramp):] = torch.minimum(weights[-len(ramp):], ramp.flip(0))
    return weights


def upscale_tiled(generator: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                  scale: int,
                  tile: int | None, overlap: int) -> torch.Tensor:
    """images [B, 3, h, w] -> generator output [B, 3, scale*h, scale*w], run on tiles of at
    most ``tile`` x ``tile`` input pixels overlapping by ``overlap`` (``tile=None``: whole
    image at once). Only the output is held whole; one tile is in the network at a time."""
    check_tiling(tile, overlap)
    _, _, h, w = images.shape
    if tile is None or (h <= tile and w <= tile):
        return generator(images).float()
    out = torch.zeros(images.shape[0], 3, h * scale, w * scale, device=images.device)
    total = torch.zeros(1, 1, h * scale, w * scale, device=images.device)
    for top in _starts(h, tile, overlap):
        for left in _starts(w, tile, overlap):
            th, tw = min(tile, h), min(tile, w)
            patch = generator(images[:, :, top:top + th, left:left + tw]).float()
            weight = torch.outer(
                _ramp(th * scale, overlap * scale, top > 0, top + th < h),
                _ramp(tw * scale, overlap * scale, left > 0, left + tw < w)).to(images.device)
            rows = slice(top * scale, (top + th) * scale)
            cols = slice(left * scale, (left + tw) * scale)
            out[:, :, rows, cols] += patch * weight
            total[:, :, rows, cols] += weight
    return out / total


class UpscalePipeline(Pipeline):
    """``pipe(images, tile=128, tile_overlap=16) -> list[PIL.Image]``, each ``scale`` x larger.

    Inputs are PIL images or file paths of any size from ``MIN_SIDE`` pixels a side to
    ``max_pixels`` pixels; transparency is composited onto the model's background colour for
    the network, and the input's alpha, upscaled bicubic, is put back on the output."""

    task = "super-resolution"
    max_pixels = MAX_PIXELS
    model: UpscaleModel

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None,
                        device: str | torch.device = "cpu") -> Self:
        """Load a saved upscaler or run folder; ``None``: the shipped default
        (:data:`DEFAULT_UPSCALER`)."""
        return super().from_pretrained(DEFAULT_UPSCALER if path is None else path, device)

    @property
    def scale(self) -> int:
        return self.model.scale

    def preprocess(self, image: ImageInput) -> torch.Tensor:
        """One file or PIL image -> [1, 3, h, w] in [-1, 1], its size checked."""
        return self.preprocess_with_alpha(image)[0]

    def preprocess_with_alpha(self, image: ImageInput) -> tuple[torch.Tensor, Image.Image | None]:
        """One file or PIL image -> ([1, 3, h, w] in [-1, 1] composited onto the background,
        its alpha band or None when it is opaque), its size checked."""
        background = parse_color(self.background)
        if isinstance(image, Image.Image):
            name, raw = "input image", image
        else:
            name, raw = f"image file {image}", open_image(image)
        im = flatten_alpha(raw, background)
        w, h = im.size
        if min(w, h) < MIN_SIDE:
            raise DataError(f"{name} is {w}x{h}, too small to upscale: expected at least "
                            f"{MIN_SIDE} pixels a side")
        if w * h > self.max_pixels:
            raise DataError(f"{name} is {w}x{h} = {w * h} pixels, more than the limit of "
                            f"{self.max_pixels} pixels for upscaling")
        return uint8_to_float(to_tensor(im).unsqueeze(0)), alpha_channel(raw)

    @torch.no_grad()
    def upscale_tensor(self, images: torch.Tensor, tile: int | None = 128,
                       tile_overlap: int = 16) -> torch.Tensor:
        """[B, 3, h, w] in [-1, 1] -> [B, 3, scale*h, scale*w] in [-1, 1]; see
        :func:`upscale_tiled` for ``tile`` and ``tile_overlap`` (input pixels)."""
        out = upscale_tiled(self.model.upscale, images.to(self.device).float(),
                            self.scale, tile, tile_overlap)
        return out.clamp(-1, 1)

    def __call__(self, images: ImageInput | Sequence[ImageInput], tile: int | None = 128,
                 tile_overlap: int = 16) -> list[Image.Image]:
        """Upscale images (PIL images or file paths, any sizes) one by one; an input with
        transparency gives an RGBA output, its alpha upscaled bicubic."""
        check_tiling(tile, tile_overlap)
        if isinstance(images, Image.Image | str | Path):
            images = [images]
        out: list[Image.Image] = []
        for image in images:
            tensor, alpha = self.preprocess_with_alpha(image)
            out += put_alpha(self.to_images(self.upscale_tensor(tensor, tile, tile_overlap)),
                             [alpha])
        return out
