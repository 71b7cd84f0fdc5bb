"""Relight: a flat icon comes out shrunk, shaded from the upper left, on white; a flag comes
out waving in the template measured on training flags; it saves, loads and keeps
transparency like the trained translators."""

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
    FlagTemplate,
    Lighting,
    RelightInferenceConfig,
    RelightModel,
    fit_flag_template,
    is_flag,
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


def _flag(colours: tuple[tuple[int, int, int], ...], mode: str = "RGB") -> Image.Image:
    """A flat 3:2 flag of horizontal stripes with rounded corners, 64 px wide, on white."""
    image = Image.new(mode, (64, 64), (255, 255, 255, 0) if mode == "RGBA" else "white")
    draw = ImageDraw.Draw(image)
    band = 48 / len(colours)
    for i, colour in enumerate(colours):
        draw.rectangle((0, 8 + round(i * band), 63, 8 + round((i + 1) * band) - 1),
                       fill=colour)
    corners = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(corners).rounded_rectangle((0, 8, 63, 55), radius=4, fill=255)
    background = Image.new(mode, (64, 64), (255, 255, 255, 0) if mode == "RGBA" else "white")
    return Image.composite(image, background, corners)


def _waving(flat: Image.Image, top: np.ndarray) -> np.ndarray:
    """The flag's stripes between ``top`` and ``top + 44`` in each column, the left half
    darker (x 0.8): a stand-in for a 3D flag."""
    source = np.asarray(flat.convert("RGB"), dtype=np.float64)[8:56]
    out = np.full((64, 64, 3), 255.0)
    for x in range(64):
        rows = np.arange(round(top[x]), round(top[x]) + 44)
        out[rows, x] = source[(rows - rows[0]) * 48 // 44, 32]  # square corners
    out[:, :32] *= np.where(out[:, :32] < 255, 0.8, 1.0)
    return out.round().astype(np.uint8)


def test_a_flag_template_is_measured_on_training_flags_and_waves_only_flags(
        tmp_path: Path) -> None:
    top = 10 + 2.5 * np.sin(np.arange(64) / 64 * 2 * np.pi)
    rng = np.random.default_rng(0)
    flags = [_flag(tuple(tuple(int(v) for v in rng.integers(0, 200, 3))
                         for _ in range(int(rng.integers(2, 4))))) for _ in range(10)]
    discs = [_icon() for _ in range(4)]
    flat = np.stack([np.asarray(im) for im in flags + discs])
    true3d = np.stack([_waving(im, top) for im in flags] + [np.asarray(_icon())] * 4)
    assert [is_flag(im) for im in flat] == [True] * 10 + [False] * 4
    square = np.full((64, 64, 3), 255, np.uint8)
    square[8:56, 8:56] = (40, 90, 200)  # a keycap: filled, but not a landscape rectangle
    assert not is_flag(square)
    fitted_top, fitted_bottom, shade, used = fit_flag_template(flat, true3d, smooth=1.0)
    assert used == 10
    assert np.abs(fitted_top - top.round()).max() <= 1.0
    assert np.abs(fitted_bottom - (top.round() + 43)).max() <= 1.0
    assert abs(np.median(shade[20:45, 4:28]) - 0.8) < 0.05  # the darker half is measured
    assert abs(np.median(shade[20:45, 36:60]) - 1.0) < 0.05

    template = FlagTemplate()
    for name, value in (("top", fitted_top), ("bottom", fitted_bottom), ("shade", shade)):
        getattr(template, name).data = torch.from_numpy(value.copy())
    model = RelightModel(RelightInferenceConfig(flags=True),
                         {"lighting": Lighting(), "flag": template})
    plain = RelightModel(RelightInferenceConfig(), {"lighting": Lighting()})
    new_flag = _flag(((200, 30, 40), (240, 200, 30), (30, 60, 160)))
    batch = torch.from_numpy(np.stack([np.asarray(new_flag), np.asarray(_icon())])).permute(
        0, 3, 1, 2).float() / 127.5 - 1
    out = ((model.translate(batch, "a2b") + 1) * 127.5).round().permute(0, 2, 3, 1).numpy()
    waved = out[0].min(axis=2) < 250
    edge = np.array([np.flatnonzero(waved[:, x])[0] for x in range(2, 62)])
    assert np.abs(edge - top[2:62]).max() <= 1.5, edge  # the top edge follows the wave
    assert waved[:, 1].any() and waved[:, 62].any()  # full width: not shrunk, square corners
    red = out[0][14:21, :, 0]  # rows inside the red stripe in every column
    assert 0.72 < red[:, 6:26].mean() / red[:, 38:58].mean() < 0.88  # the template's shading
    assert np.array_equal(out[1], ((plain.translate(batch[1:], "a2b")[0] + 1) * 127.5).round()
                          .permute(1, 2, 0).numpy())  # anything else is relit as before

    model.save_pretrained(tmp_path / "flags")
    pipe = ImageToImagePipeline.from_pretrained(tmp_path / "flags")
    assert np.allclose(pipe.model.modules["flag"].top.numpy(), fitted_top)
    rgba = pipe(_flag(((200, 30, 40), (30, 60, 160)), "RGBA"))[0]
    alpha = np.asarray(rgba)[..., 3]
    # the alpha is the waved cloth's: row 10 is inside the cloth where the wave rises
    # (x 48: top edge 7.5) and above it where it falls (x 16: 12.5), whose bottom is lower
    assert alpha[10, 48] > 200 and alpha[10, 16] < 50 and alpha[54, 16] > 200

    with pytest.raises(ConfigError, match="hold 4 flags; a flag template needs at least 8"):
        fit_flag_template(flat[6:], true3d[6:])
    with pytest.raises(ConfigError, match="true images of the 10 training flags are blank"):
        fit_flag_template(flat, np.full_like(true3d, 255))
