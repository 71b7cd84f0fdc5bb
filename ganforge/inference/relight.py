"""Relight: flat icon -> lit 3D-looking icon by inflating its silhouette and shading it.

Not a neural network: nine lighting numbers (``LIGHTING``), fitted on training pairs by
``benchmarks/restyle_relight.py --fit`` (coordinate descent on FID against the true 3D images),
and optionally a flag template (``FlagTemplate``) measured on the training pairs' flags. Each
image is drawn at ``input_scale`` of its size (Fluent 3D draws its subjects smaller than
Twemoji), its subject (everything but the white connected to the border) becomes a height
field rising over ``radius`` px from its edge, with a small bevel of ``edge`` px at every colour
boundary, and is lit: ambient + Lambert diffuse + Blinn-Phong specular, from ``light``,
rendered at ``supersample`` x and reduced. On the emoji validation pairs it scores a better FID
than every network we trained for the job (docs/benchmarks.md): their halos cost more than
their learnt shading gains. It runs on the CPU (SciPy distance transforms), any device in.

Flags: the 3D set draws every flag as cloth waving in the wind, filling the canvas's width,
where the flat sets draw a rectangle. A model with a flag template (``config.flags``) finds the
flags among its inputs (``is_flag``: a subject whose bounding box is a filled landscape
rectangle) and draws each one in the template instead of relighting it (``wave_flag``): square
corners, each column stretched between the template's top and bottom edges, times the
template's shading. ``fit_flag_template`` measures the template on training pairs: the median
edges of the true 3D images of the inputs that are flags, and the median brightness ratio of
true 3D over waved flat.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from torch import nn

from ganforge.data.image_files import shrink_about_centre
from ganforge.errors import ConfigError
from ganforge.inference.base import ImageToImageModel, reject_options
from ganforge.inference.compose import subject_mask

#: the fitted numbers, in the order of ``Lighting.values``
LIGHTING = ("radius", "edge", "ambient", "diffuse", "specular", "shininess",
            "light_x", "light_y", "light_z")
#: hand-set starting values (light from the upper left, towards the viewer)
DEFAULT_LIGHTING = (4.0, 2.5, 0.72, 0.38, 0.3, 18.0, -0.5, -0.7, 0.6)
#: a flag: the subject's bounding box is this many times as wide as tall (Twemoji's flags
#: measure 1.33-1.39; not the square keycaps) ...
FLAG_ASPECT = (1.3, 1.4)
#: ... and the subject fills at least this share of it (rounded corners allowed)
FLAG_FILL = 0.93
#: training flags ``fit_flag_template`` needs before it trusts its medians
MIN_FLAGS = 8


class Lighting(nn.Module):
    """The nine lighting numbers (a parameter that no optimiser moves: saved with the model,
    hashed into its watermark id)."""

    def __init__(self, values: tuple[float, ...] = DEFAULT_LIGHTING):
        super().__init__()
        self.values = nn.Parameter(torch.tensor(values, dtype=torch.float64),
                                   requires_grad=False)

    def settings(self) -> dict[str, float]:
        return dict(zip(LIGHTING, self.values.tolist(), strict=True))


class FlagTemplate(nn.Module):
    """Where a waving flag's top and bottom edges are in each column (px, ``size`` columns) and
    the brightness factor at each pixel (``size`` x ``size``); fitted, no optimiser moves it."""

    def __init__(self, size: int = 64):
        super().__init__()
        self.top = nn.Parameter(torch.full((size,), size * 0.15, dtype=torch.float64),
                                requires_grad=False)
        self.bottom = nn.Parameter(torch.full((size,), size * 0.85, dtype=torch.float64),
                                   requires_grad=False)
        self.shade = nn.Parameter(torch.ones(size, size, dtype=torch.float64),
                                  requires_grad=False)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.top.numpy(), self.bottom.numpy(), self.shade.numpy()


def _box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right), inclusive, of a bool mask's True pixels; None if none."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    return rows[0], rows[-1], cols[0], cols[-1]


def is_flag(image: np.ndarray) -> bool:
    """Whether an RGB array [S, S, 3] (0-255, on white) draws a flag: its subject's bounding box
    is ``FLAG_ASPECT`` times as wide as tall and at least ``FLAG_FILL`` filled."""
    mask = subject_mask(np.asarray(image, dtype=np.float64))
    box = _box(mask)
    if box is None:
        return False
    height, width = box[1] - box[0] + 1, box[3] - box[2] + 1
    return (FLAG_ASPECT[0] <= width / height <= FLAG_ASPECT[1]
            and mask.sum() >= FLAG_FILL * width * height)


def wave_flag(image: np.ndarray, top: np.ndarray, bottom: np.ndarray,
              shade: np.ndarray | None = None, supersample: int = 4
              ) -> tuple[np.ndarray, np.ndarray]:
    """A flag (RGB uint8 [S, S, 3] on white) drawn waving: its subject cropped with square
    corners, each column stretched between ``top`` and ``bottom`` (px, [S] each), times
    ``shade`` ([S, S]) if given. Returns (uint8 [S, S, 3] on white, coverage [S, S] in [0, 1])."""
    size = image.shape[0]
    mask = subject_mask(np.asarray(image, dtype=np.float64))
    box = _box(mask)
    if box is None:
        raise ValueError("wave_flag: the image has no subject")
    y0, y1, x0, x1 = box
    crop = np.asarray(image[y0:y1 + 1, x0:x1 + 1], dtype=np.uint8)
    inside = mask[y0:y1 + 1, x0:x1 + 1]
    # square corners: each background pixel of the box takes its nearest subject pixel
    _, (rows, cols) = ndimage.distance_transform_edt(~inside, return_indices=True)
    crop = crop[rows, cols]
    big = size * supersample
    cloth = np.asarray(Image.fromarray(crop).resize((big, big), Image.Resampling.BICUBIC),
                       dtype=np.float64)
    centres = (np.arange(big) + 0.5) / supersample - 0.5
    upper = np.interp(centres, np.arange(size), top) * supersample
    lower = (np.interp(centres, np.arange(size), bottom) + 1) * supersample
    ys = np.arange(big, dtype=np.float64)[:, None]
    covered = (ys >= upper) & (ys < lower)
    # where each output row of a column reads the cloth: 0 at the top edge, big at the bottom
    source = (ys - upper) / np.maximum(lower - upper, 1e-6) * big
    out = np.full((big, big, 3), 255.0)
    for channel in range(3):
        column_read = np.stack([np.interp(source[:, x], np.arange(big), cloth[:, x, channel])
                                for x in range(big)], axis=1)
        out[..., channel] = np.where(covered, column_read, 255.0)
    small = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8)).resize(
        (size, size), Image.Resampling.LANCZOS)
    coverage = covered.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    waved = np.asarray(small, dtype=np.float64)
    if shade is not None:
        waved = np.where(coverage[..., None] > 0, waved * shade[..., None], waved)
    return np.clip(waved, 0, 255).round().astype(np.uint8), coverage


def fit_flag_template(flat: np.ndarray, true3d: np.ndarray, smooth: float = 3.0
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Measure a flag template on training pairs (uint8 [N, S, S, 3] each, on white): among the
    inputs that are flags (``is_flag``), the median top and bottom edge of their true 3D
    images in each column (smoothed, Gaussian ``smooth`` px), then the median ratio of true 3D
    over waved-flat brightness at each pixel. Returns (top, bottom, shade, flags used)."""
    flags = [i for i, image in enumerate(flat) if is_flag(image)]
    if len(flags) < MIN_FLAGS:
        raise ConfigError(f"the training pairs hold {len(flags)} flags; a flag template "
                          f"needs at least {MIN_FLAGS}")
    size = flat.shape[1]
    tops, bottoms = [], []
    for i in flags:
        mask = subject_mask(true3d[i].astype(np.float64))
        filled = mask.any(axis=0)
        rows = np.arange(size)[:, None]
        tops.append(np.where(filled, np.where(mask, rows, size).min(axis=0), np.nan))
        bottoms.append(np.where(filled, np.where(mask, rows, -1).max(axis=0), np.nan))
    if np.isnan(np.stack(tops)).all():
        raise ConfigError(f"the true images of the {len(flags)} training flags are blank "
                          "(white): no flag template can be measured")
    edges = []
    for values in (tops, bottoms):
        median = np.nanmedian(np.stack(values), axis=0)  # nan: no flag covers that column
        known = ~np.isnan(median)
        median = np.interp(np.arange(size), np.flatnonzero(known), median[known])
        edges.append(ndimage.gaussian_filter1d(median, smooth, mode="nearest"))
    top, bottom = edges
    ratios = []
    for i in flags:
        waved, coverage = wave_flag(flat[i], top, bottom)
        ratio = (true3d[i].astype(np.float64).mean(-1) + 8) / (waved.mean(-1) + 8)
        ratios.append(np.where(coverage > 0.99, ratio, np.nan))
    with warnings.catch_warnings():  # a pixel no flag covers has no median: factor 1
        warnings.simplefilter("ignore", RuntimeWarning)
        shade = np.nan_to_num(np.nanmedian(np.stack(ratios), axis=0), nan=1.0)
    return top, bottom, ndimage.gaussian_filter(shade, 1.0), len(flags)


def shrink(images: np.ndarray, scale: float) -> np.ndarray:
    """uint8 [N, S, S, 3]: each image drawn at ``scale`` of its size in the middle of a white
    canvas (``shrink_about_centre``)."""
    return np.stack([np.asarray(shrink_about_centre(Image.fromarray(image), scale,
                                                    (255, 255, 255))) for image in images])


def relight(images: np.ndarray, radius: float = 4.0, edge: float = 2.5, ambient: float = 0.72,
            diffuse: float = 0.38, specular: float = 0.3, shininess: float = 18.0,
            light_x: float = -0.5, light_y: float = -0.7, light_z: float = 0.6,
            supersample: int = 4) -> np.ndarray:
    """Inflate and light flat images on white: uint8 [N, S, S, 3] -> the same layout."""
    light = np.array([light_x, light_y, light_z])
    light /= np.linalg.norm(light)
    half = light + np.array([0.0, 0.0, 1.0])
    half /= np.linalg.norm(half)
    out = []
    for image in images:
        size = image.shape[0] * supersample
        big = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC),
                         dtype=np.float64)
        subject = subject_mask(big)
        rise = np.clip(ndimage.distance_transform_edt(subject) / supersample / radius, 0, 1)
        height = np.sqrt(1 - (1 - rise) ** 2) * radius * 0.6
        contrast = sum(np.abs(ndimage.sobel(big[..., c], axis)) for c in range(3)
                       for axis in (0, 1))
        from_edge = ndimage.distance_transform_edt(contrast <= 120) / supersample
        height = height + np.clip(from_edge / edge, 0, 1) ** 0.5 * edge * 0.5
        height = ndimage.gaussian_filter(height, supersample * 0.7)
        gy, gx = np.gradient(height * supersample)
        normal = np.stack([-gx, -gy, np.ones_like(height)], -1)
        normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
        shade = ambient + diffuse * np.clip(normal @ light, 0, 1)
        shine = specular * np.clip(normal @ half, 0, 1) ** shininess
        lit = np.where(subject[..., None], big * shade[..., None] + 255 * shine[..., None], 255)
        small = Image.fromarray(np.clip(lit, 0, 255).astype(np.uint8))
        out.append(np.asarray(small.resize(image.shape[:2][::-1], Image.Resampling.LANCZOS)))
    return np.stack(out)


@dataclass
class RelightInferenceConfig:
    """The image size and background, the scale the subject is drawn at, the
    super-sampling of the lighting, and whether flags are drawn in a fitted flag template."""

    size: int = 64
    background: str = "white"
    input_scale: float = 0.875
    supersample: int = 4
    flags: bool = False


class RelightModel(ImageToImageModel):
    """Relight: ``lighting`` holds the fitted numbers (and ``flag``, with ``config.flags``, the
    flag template); a2b only, no sampling options."""

    kind = "relight"
    Config = RelightInferenceConfig

    @classmethod
    def build_modules(cls, config: RelightInferenceConfig) -> dict[str, nn.Module]:
        modules: dict[str, nn.Module] = {"lighting": Lighting()}
        if config.flags:
            modules["flag"] = FlagTemplate(config.size)
        return modules

    @property
    def directions(self) -> dict[str, str]:
        return {"a2b": "lighting"}

    @property
    def subject_scale(self) -> float:
        return self.config.input_scale

    def translate(self, images: torch.Tensor, direction: str | None = None,
                  **options: Any) -> torch.Tensor:
        """Images [B, 3, S, S] in [-1, 1] shrunk and relit, same layout and device."""
        if direction != "a2b":
            raise ConfigError(f"direction {direction!r} is unknown to this model; known: a2b")
        reject_options(self.kind, options)
        flat = images.detach().float().cpu().add(1).mul(127.5).round().clamp(0, 255)
        flat = flat.to(torch.uint8).permute(0, 2, 3, 1).numpy()
        flags = self._flags(flat)
        out = np.empty_like(flat)
        if (~flags).any():
            out[~flags] = relight(shrink(flat[~flags], self.config.input_scale),
                                  **self.modules["lighting"].settings(),
                                  supersample=self.config.supersample)
        for i in np.flatnonzero(flags):
            out[i] = wave_flag(flat[i], *self.modules["flag"].arrays(),
                               supersample=self.config.supersample)[0]
        return torch.from_numpy(out).permute(0, 3, 1, 2).float().div(127.5).sub(1).to(
            images.device)

    def _flags(self, flat: np.ndarray) -> np.ndarray:
        """Bool [N]: which of the uint8 images [N, S, S, 3] this model draws as flags."""
        if "flag" not in self.modules:
            return np.zeros(len(flat), dtype=bool)
        return np.array([is_flag(image) for image in flat], dtype=bool)

    def fit_alpha(self, alpha: Image.Image, image: torch.Tensor) -> Image.Image:
        """A flag's alpha is the waved cloth's coverage; any other subject's is shrunk."""
        flat = image.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)
        flat = flat.permute(1, 2, 0).numpy()
        if not self._flags(flat[None])[0]:
            return super().fit_alpha(alpha, image)
        top, bottom, _ = self.modules["flag"].arrays()
        coverage = wave_flag(flat, top, bottom, supersample=self.config.supersample)[1]
        return Image.fromarray((coverage * 255).round().astype(np.uint8), "L")
