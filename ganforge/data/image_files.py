"""Image files without tensors: finding, opening and checking them, colours, transparency.

PIL only (no torch), so commands that never run a network (``ganforge verify
--no-detector``, listing inputs) start fast; ``ganforge.data.images`` re-exports all of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageColor, UnidentifiedImageError

from ganforge.errors import ConfigError, DataError

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


def shrink_about_centre(image: Image.Image, scale: float, fill: int | tuple[int, ...] = 0
                        ) -> Image.Image:
    """``image`` drawn at ``scale`` (<= 1) of its size in the middle of a canvas of its own size
    filled with ``fill`` (bilinear; an unchanged copy at 1)."""
    if scale == 1:
        return image.copy()
    width, height = round(image.width * scale), round(image.height * scale)
    canvas = Image.new(image.mode, image.size, fill)
    canvas.paste(image.resize((width, height), Image.Resampling.BILINEAR),
                 ((image.width - width) // 2, (image.height - height) // 2))
    return canvas


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
