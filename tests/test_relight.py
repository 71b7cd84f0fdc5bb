"""Relight: a flat icon comes out shrunk, shaded from the upper left, on white; it saves,
loads and keeps transparency like the trained translators."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from scipy import ndimage

from ganforge.errors import ConfigError
from ganforge.inference import load_model
from ganforge.inference.relight import (
    Lighting,
    RelightInferenceConfig,
    RelightModel,
)
from ganforge.pipelines import ImageToImagePipeline

YELLOW = (255, 204, 77)


def _icon(mode: str = "RGB") -> Image.Image:
    """A flat yellow disc with two dark eyes, 64 px, on white (or transparent)."""
    image = Image.new(mode, (64, 64), (255, 255, 255, 0) if mode == "RGBA" else "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((6, 6, 57, 57), fill=YELLOW)
    for x in (22, 38):
        draw.ellipse((x - 3, 22, x + 3, 30), fill=(102, 69, 0))
    return image


def test_a_flat_disc_is_shrunk_and_lit_from_the_upper_left() -> None:
    model = RelightModel(RelightInferenceConfig(), {"lighting": Lighting()})
    flat = torch.from_numpy(np.array(_icon())).permute(2, 0, 1)[None].float() / 127.5 - 1
    out = ((model.translate(flat, "a2b")[0] + 1) * 127.5).round().permute(1, 2, 0).numpy()
    assert out.shape == (64, 64, 3)
    subject = out.min(axis=2) < 240
    # drawn at 0.875 of its size: about 0.875^2 of the disc's area, centred
    assert 0.65 < subject.sum() / (np.array(_icon()).min(axis=2) < 240).sum() < 0.85
    assert (out[0] == 255).all() and (out[:, 0] == 255).all()  # white background kept
    luma = out @ [0.299, 0.587, 0.114]
    # the rim (where the inflated silhouette curves) is lit on the upper left, dark lower right
    rim = subject & ~ndimage.binary_erosion(subject, iterations=3)
    y, x = np.mgrid[:64, :64]
    upper_left, lower_right = luma[rim & (x + y < 56)].mean(), luma[rim & (x + y > 70)].mean()
    assert upper_left > lower_right + 15, (upper_left, lower_right)
    inside = luma[subject & (np.abs(out - YELLOW).sum(axis=2) < 120)]
    assert inside.std() > 8  # shaded, no longer flat
    with pytest.raises(ConfigError, match="direction 'b2a' is unknown"):
        model.translate(flat, "b2a")


def test_relight_round_trips_and_keeps_transparency(tmp_path: Path) -> None:
    values = (5.0, 2.0, 0.7, 0.4, 0.2, 16.0, -0.5, -0.7, 0.6)
    RelightModel(RelightInferenceConfig(), {"lighting": Lighting(values)}).save_pretrained(
        tmp_path / "relight")
    loaded = load_model(tmp_path / "relight")
    assert isinstance(loaded, RelightModel)
    assert loaded.modules["lighting"].settings()["radius"] == 5.0
    pipe = ImageToImagePipeline.from_pretrained(tmp_path / "relight")
    out = pipe(_icon("RGBA"))[0]
    assert out.mode == "RGBA" and out.size == (64, 64)
    alpha = np.asarray(out)[..., 3]
    assert alpha[0, 0] == 0 and alpha[32, 32] == 255
    # the alpha is shrunk like the subject: its edge moved inwards
    assert alpha[32, 7] == 0 and np.asarray(_icon("RGBA"))[32, 7, 3] == 255
    again = ImageToImagePipeline.from_pretrained(tmp_path / "relight")(_icon("RGBA"))[0]
    assert np.array_equal(np.asarray(again)[..., :3], np.asarray(out)[..., :3])
