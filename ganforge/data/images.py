"""Reading image files and folders into tensors, with checks that name what is wrong
(the PIL-only helpers live in ``ganforge.data.image_files`` and are re-exported here)."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganforge.data.image_files import (  # re-exported: the PIL-only half of this module
    IMAGE_SUFFIXES,
    MAX_SIZE,
    MIN_SIZE,
    alpha_channel,
    check_size,
    fit_square,
    flatten_alpha,
    has_transparency,
    list_images,
    open_image,
    open_rgb,
    parse_color,
    shrink_about_centre,
)
from ganforge.errors import DataError, ImageTooSmall

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_SIZE",
    "MIN_SIZE",
    "ImageFolder",
    "alpha_channel",
    "check_size",
    "fit_square",
    "flatten_alpha",
    "has_transparency",
    "image_grid",
    "list_images",
    "load_image",
    "open_image",
    "open_rgb",
    "parse_color",
    "pil_to_float",
    "shrink_about_centre",
    "to_pil",
    "to_tensor",
    "uint8_to_float",
]


def to_tensor(im: Image.Image) -> torch.Tensor:
    """PIL RGB image -> uint8 tensor [3, H, W]."""
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """Float images [B, 3, H, W] in [-1, 1] -> list of PIL RGB images."""
    arr = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(a.permute(1, 2, 0).cpu().numpy()) for a in arr]


def pil_to_float(images: Sequence[Image.Image]) -> torch.Tensor:
    """PIL RGB images of one size -> float [B, 3, H, W] in [-1, 1]."""
    return uint8_to_float(torch.stack([to_tensor(im.convert("RGB")) for im in images]))


def uint8_to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images [B, 3, H, W] -> float [B, 3, H, W] in [-1, 1]."""
    return images.float().div(127.5).sub(1.0)


def load_image(
    path: str | Path,
    size: int,
    background: tuple[int, int, int] = (255, 255, 255),
    allow_upscale: bool = False,
) -> torch.Tensor:
    """Load one image file as uint8 [3, size, size]; smaller images are refused unless allowed."""
    im = open_rgb(path, background)
    if min(im.size) < size and not allow_upscale:
        raise ImageTooSmall(
            f"image file {path} is {im.size[0]}x{im.size[1]}, smaller than the training size "
            f"{size}; use a smaller --size or pass --allow-upscale"
        )
    return to_tensor(fit_square(im, size))


@dataclass
class ImageFolder:
    """Every usable image of a folder, decoded once into a uint8 tensor [N, 3, size, size].

    Corrupt files are named in a warning and skipped; ``skipped`` lists them.
    """

    root: Path
    images: torch.Tensor
    paths: list[Path]
    skipped: list[Path] = field(default_factory=list)

    @classmethod
    def load(
        cls,
        root: str | Path,
        size: int,
        background: tuple[int, int, int] = (255, 255, 255),
        allow_upscale: bool = False,
        files: Iterable[Path] | None = None,
    ) -> ImageFolder:
        """Read and check all images under ``root`` (or the given ``files``)."""
        check_size(size)
        root = Path(root)
        candidates = list(files) if files is not None else list_images(root)
        tensors, kept, skipped = [], [], []
        for path in candidates:
            try:
                tensors.append(load_image(path, size, background, allow_upscale))
                kept.append(path)
            except ImageTooSmall:
                raise
            except DataError as exc:
                warnings.warn(f"skipping {exc}", stacklevel=2)
                skipped.append(path)
        if not tensors:
            raise DataError(
                f"image folder {root}: none of its {len(candidates)} image files could be read"
            )
        if skipped:
            warnings.warn(
                f"{root}: skipped {len(skipped)} unreadable image file(s) of {len(candidates)}",
                stacklevel=2,
            )
        return cls(root=root, images=torch.stack(tensors), paths=kept, skipped=skipped)

    def __len__(self) -> int:
        return len(self.paths)


def image_grid(rows: Sequence[torch.Tensor], pad: int = 2) -> Image.Image:
    """Rows of images, each [B, 3, H, W] in [-1, 1] (same B, H, W), as one PIL grid."""
    grid = torch.stack([r.detach().float().cpu() for r in rows])  # [R, B, 3, H, W]
    n_rows, n_cols, _, h, w = grid.shape
    canvas = torch.ones(3, n_rows * (h + pad) + pad, n_cols * (w + pad) + pad)
    for r in range(n_rows):
        for c in range(n_cols):
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            canvas[:, y:y + h, x:x + w] = grid[r, c]
    return to_pil(canvas.unsqueeze(0))[0]
