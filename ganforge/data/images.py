"""Reading image files and folders into tensors, with checks that name what is wrong."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageColor, UnidentifiedImageError

from ganforge.errors import ConfigError, DataError, ImageTooSmall

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MIN_SIZE, MAX_SIZE = 8, 4096


def parse_color(value: str | Sequence[int]) -> tuple[int, int, int]:
    """Turn a colour name, '#rrggbb' or an (r, g, b) triple into an RGB triple."""
    if isinstance(value, str):
        try:
            return ImageColor.getrgb(value)[:3]
        except ValueError:
            raise ConfigError(
                f"background colour {value!r} is not a colour name or '#rrggbb'"
            ) from None
    rgb = tuple(int(v) for v in value)
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise ConfigError(f"background colour {value!r} must be three values in 0..255")
    return rgb  # type: ignore[return-value]


def check_size(size: int) -> int:
    """Reject image sizes the networks cannot use (too small, too large, not a multiple of 4)."""
    if not MIN_SIZE <= size <= MAX_SIZE or size % 4:
        raise ConfigError(
            f"image size {size} is not usable: expected a multiple of 4 in {MIN_SIZE}..{MAX_SIZE}"
        )
    return size


def list_images(folder: str | Path) -> list[Path]:
    """All image files under ``folder`` (nested folders included), sorted for a stable order."""
    root = Path(folder)
    if not root.exists():
        raise DataError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder of images")
    files = sorted(
        p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    if not files:
        raise DataError(
            f"image folder {root} holds no images (looked for {', '.join(IMAGE_SUFFIXES)})"
        )
    return files


def flatten_alpha(im: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Any PIL image as RGB, transparent pixels composited onto ``background``."""
    if im.mode == "P" or has_transparency(im):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return im.convert("RGB")


def has_transparency(im: Image.Image) -> bool:
    """Whether a PIL image's mode or palette can hold transparent pixels."""
    return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info


def alpha_channel(im: Image.Image) -> Image.Image | None:
    """The alpha band (mode L) of an image with some transparent pixel; None when opaque."""
    if not has_transparency(im):
        return None
    alpha = im.convert("RGBA").getchannel("A")
    return None if alpha.getextrema()[0] == 255 else alpha


def open_image(path: str | Path) -> Image.Image:
    """Open and decode an image file as it is stored (any mode).

    Raises DataError naming the file when it is missing, truncated or not an image.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except FileNotFoundError:
        raise DataError(f"image file {path} does not exist") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"image file {path} is corrupt or not an image ({exc})") from None


def open_rgb(path: str | Path, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Open an image file as RGB, compositing any transparency onto ``background``.

    Raises DataError naming the file when it is missing, truncated or not an image.
    """
    return flatten_alpha(open_image(path), background)


def fit_square(im: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` (Lanczos) and centre-crop to ``size`` x ``size``."""
    w, h = im.size
    scale = size / min(w, h)
    if (w, h) != (size, size):
        im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.LANCZOS)
        w, h = im.size
        left, top = (w - size) // 2, (h - size) // 2
        im = im.crop((left, top, left + size, top + size))
    return im


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
