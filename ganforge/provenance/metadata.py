"""PNG text metadata naming how an image was made (prompt, seed, model, ganforge version)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

import ganforge

PREFIX = "ganforge:"


def png_info(image: Image.Image, fields: dict[str, Any]) -> PngInfo:
    """PNG text chunks: ``fields``, the ganforge version, and the ganforge fields a pipeline
    put in ``image.info`` (whether and how the image is watermarked)."""
    info = PngInfo()
    carried = {k[len(PREFIX):]: v for k, v in image.info.items()
               if isinstance(k, str) and k.startswith(PREFIX)}
    for key, value in {**carried, **fields, "version": ganforge.__version__}.items():
        if value is not None:
            info.add_itxt(f"{PREFIX}{key}", str(value))
    return info


def save_png(image: Image.Image, path: str | Path, fields: dict[str, Any]) -> Path:
    """Save ``image`` as PNG with ``fields`` as text chunks (see :func:`png_info`)."""
    info = png_info(image, fields)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", pnginfo=info)
    return path


def read_png_metadata(path: str | Path) -> dict[str, str]:
    """The ganforge fields of a PNG written by :func:`save_png` (empty when there are none)."""
    with Image.open(path) as im:
        text = getattr(im, "text", {}) or {}
    return {k[len(PREFIX):]: v for k, v in text.items() if k.startswith(PREFIX)}
