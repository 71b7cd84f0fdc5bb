"""A built-in synthetic domain pair: the same shapes drawn in two colour schemes.

Because every shape is drawn in both schemes, the true translation of each image is known,
which makes it a learning test and a demo that needs no downloaded data.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

# (background, shape colours) per domain; shape k of domain A maps to shape k of domain B.
SCHEMES = {
    "a": ((245, 245, 245), [(200, 30, 30), (30, 30, 30)]),
    "b": ((250, 220, 80), [(20, 60, 200), (250, 250, 250)]),
}
SHAPES = ("circle", "square", "triangle")
Layout = list[tuple[str, int, tuple[int, int, int, int]]]


def draw_shapes(layout: Layout, size: int, domain: str,
                schemes: dict[str, Any] | None = None) -> Image.Image:
    """Render a layout (shape, colour index, box) in one domain's colour scheme: a
    (background, colours) entry of ``schemes`` (default: the two-domain ``SCHEMES``)."""
    background, colours = (SCHEMES if schemes is None else schemes)[domain]
    im = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(im)
    for shape, colour, box in layout:
        draw_shape(draw, shape, box, colours[colour])
    return im


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int],
               fill: tuple[int, int, int]) -> None:
    """Draw a circle, square or (upward) triangle filling ``box``."""
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=fill)


def random_layout(rng: random.Random, size: int) -> Layout:
    """One or two shapes at random places and sizes."""
    layout = []
    for _ in range(rng.randint(1, 2)):
        extent = rng.randint(size // 4, size // 2)
        x0, y0 = rng.randint(0, size - extent), rng.randint(0, size - extent)
        layout.append((rng.choice(SHAPES), rng.randrange(2), (x0, y0, x0 + extent, y0 + extent)))
    return layout


def write_shape_domains(out: str | Path, count: int = 200, size: int = 32, seed: int = 0
                        ) -> tuple[Path, Path]:
    """Write ``count`` paired images to OUT/a and OUT/b (same file names); return both folders.

    Train on the folders as unpaired data; the shared names let ``evaluate translation`` score
    the result against the true answer.
    """
    out = Path(out)
    rng = random.Random(seed)
    folders = (out / "a", out / "b")
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        layout = random_layout(rng, size)
        for domain, folder in zip("ab", folders, strict=True):
            draw_shapes(layout, size, domain).save(folder / f"shape_{i:05d}.png")
    return folders


CAPTION_COLOURS = {"red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 220),
                   "yellow": (240, 200, 20)}


def write_captioned_shapes(out: str | Path, count: int = 200, size: int = 16, seed: int = 0
                           ) -> Path:
    """Write ``count`` images of one coloured shape on white with captions such as
    "a red circle" to OUT/images and OUT/captions.jsonl; return the captions file."""
    import json

    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        colour, shape = rng.choice(list(CAPTION_COLOURS)), rng.choice(SHAPES)
        extent = rng.randint(size // 2, size * 3 // 4)
        x0, y0 = rng.randint(0, size - extent), rng.randint(0, size - extent)
        im = Image.new("RGB", (size, size), (255, 255, 255))
        draw_shape(ImageDraw.Draw(im), shape, (x0, y0, x0 + extent - 1, y0 + extent - 1),
                   CAPTION_COLOURS[colour])
        name = f"images/{i:05d}.png"
        im.save(out / name)
        rows.append({"image": name, "caption": f"a {colour} {shape}"})
    captions = out / "captions.jsonl"
    captions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return captions
