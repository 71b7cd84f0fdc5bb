"""Relight: flat icon -> lit 3D-looking icon by inflating its silhouette and shading it.

Not a neural network: nine lighting numbers (``LIGHTING``), fitted on training pairs by
``benchmarks/restyle_relight.py --fit`` (a grid search on FID against the true 3D images). Each
image is drawn at ``input_scale`` of its size (Fluent 3D draws its subjects smaller than
Twemoji), its subject (everything but the white connected to the border) becomes a height
field rising over ``radius`` px from its edge, with a small bevel of ``edge`` px at every colour
boundary, and is lit: ambient + Lambert diffuse + Blinn-Phong specular, from ``light``,
rendered at ``supersample`` x and reduced. On the emoji validation pairs it scores a better FID
than every network we trained for the job (docs/benchmarks.md): their halos cost more than
their learnt shading gains. It runs on the CPU (SciPy distance transforms), any device in.
"""

from __future__ import annotations

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


class Lighting(nn.Module):
    """The nine lighting numbers (a parameter that no optimiser moves: saved with the model,
    hashed into its watermark id)."""

    def __init__(self, values: tuple[float, ...] = DEFAULT_LIGHTING):
        super().__init__()
        self.values = nn.Parameter(torch.tensor(values, dtype=torch.float64),
                                   requires_grad=False)

    def settings(self) -> dict[str, float]:
        return dict(zip(LIGHTING, self.values.tolist(), strict=True))


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
    """The image size and background, the scale the subject is drawn at, and the
    super-sampling of the lighting."""

    size: int = 64
    background: str = "white"
    input_scale: float = 0.875
    supersample: int = 4


class RelightModel(ImageToImageModel):
    """Relight: ``lighting`` holds the fitted numbers; a2b only, no sampling options."""

    kind = "relight"
    Config = RelightInferenceConfig

    @classmethod
    def build_modules(cls, config: RelightInferenceConfig) -> dict[str, nn.Module]:
        return {"lighting": Lighting()}

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
        lit = relight(shrink(flat, self.config.input_scale),
                      **self.modules["lighting"].settings(),
                      supersample=self.config.supersample)
        out = torch.from_numpy(lit).permute(0, 3, 1, 2).float().div(127.5).sub(1)
        return out.to(images.device)
