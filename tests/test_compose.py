"""Composition by collage: prompts are parsed, colours changed and accessories placed where
the rule says, on small drawn images."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from ganforge.inference.compose import (
    PromptParts,
    foreground,
    overlay,
    parse_prompt,
    placement,
    recolour,
)
from ganforge.inference.ragan import colour_names

EYE = (102, 69, 0)
LENS = (41, 47, 51)
SIZE = 48


def _tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()


def _face(eye_row: int = 20) -> torch.Tensor:
    """A yellow disc with two dark eyes on ``eye_row`` and a dark mouth lower down."""
    image = Image.new("RGB", (SIZE, SIZE), "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((4, 4, 43, 43), fill=(255, 204, 77))
    for x in (15, 29):
        draw.ellipse((x, eye_row - 3, x + 4, eye_row + 3), fill=EYE)
    draw.rectangle((16, 32, 32, 35), fill=EYE)
    return _tensor(image)


def _sunglasses() -> torch.Tensor:
    image = Image.new("RGB", (SIZE, SIZE), "white")
    ImageDraw.Draw(image).rectangle((6, 20, 41, 28), fill=LENS)
    return _tensor(image)


def _apple() -> torch.Tensor:
    """A red disc with a brown stem and a dark outline."""
    image = Image.new("RGB", (SIZE, SIZE), "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((8, 12, 40, 44), fill=(221, 46, 68), outline=(40, 20, 20), width=2)
    draw.rectangle((22, 4, 25, 13), fill=(110, 60, 30))
    return _tensor(image)


def _matches(image: torch.Tensor, rgb: tuple[int, int, int], tol: int = 12) -> torch.Tensor:
    return (image.int() - torch.tensor(rgb).view(3, 1, 1)).abs().max(dim=0).values <= tol


def test_prompts_are_read_into_subject_colour_and_accessory() -> None:
    assert parse_prompt("Grinning face with  sunglasses") == PromptParts(
        "grinning face", None, "sunglasses", None)
    assert parse_prompt("a blue apple") == PromptParts("blue apple", "blue")
    assert parse_prompt("cat wearing a red hat") == PromptParts("cat", None, "red hat", "red")
    assert parse_prompt("Gray heart") == PromptParts("gray heart", "grey")
    assert not parse_prompt("rocket").composed
    assert placement("dark sunglasses") == "eyes" and placement("top hat") == "head"
    assert placement("balloon") == "side"


def test_foreground_keeps_white_inside_the_subject() -> None:
    image = Image.new("RGB", (SIZE, SIZE), "white")
    ImageDraw.Draw(image).ellipse((8, 8, 40, 40), outline=(0, 0, 0), width=3)
    mask = foreground(_tensor(image))
    assert mask[24, 24] and not mask[2, 2]  # the ring's white inside is subject


def test_recolour_turns_the_main_colour_and_keeps_stem_outline_and_background() -> None:
    apple = _apple()
    blue = recolour(apple, "blue")
    assert colour_names(apple[None]) == ["red"] and colour_names(blue[None]) == ["blue"]
    stem, outline = _matches(apple, (110, 60, 30)), _matches(apple, (40, 20, 20))
    assert stem.sum() > 10 and outline.sum() > 10
    unchanged = (blue == apple).all(dim=0)
    assert unchanged[stem].all() and unchanged[outline].all()
    assert unchanged[~foreground(apple)].all()
    # value (shading) is kept: the recoloured body is as bright as the red one
    body = _matches(apple, (221, 46, 68))
    assert abs(int(blue.max(dim=0).values[body].float().mean()) - 221) <= 2
    assert torch.equal(recolour(apple, "white"), apple)  # no hue to turn to
    grey = Image.new("RGB", (SIZE, SIZE), "white")
    ImageDraw.Draw(grey).ellipse((8, 8, 40, 40), fill=(150, 155, 160))
    assert colour_names(recolour(_tensor(grey), "red")[None]) == ["red"]  # greys are tinted


def test_eyewear_covers_the_eyes_wherever_they_are() -> None:
    for eye_row in (17, 23):
        face = _face(eye_row)
        worn = overlay(face, _sunglasses(), "eyes")
        assert worn.shape == face.shape
        lens = _matches(worn, LENS)
        assert lens.sum() > 150
        rows = torch.nonzero(lens.any(dim=1)).flatten().float()
        assert abs(float(rows.mean()) - eye_row) <= 1.5, (eye_row, rows)
        assert _matches(worn, EYE)[eye_row - 2:eye_row + 3].sum() == 0  # eyes hidden
        assert _matches(worn, EYE)[30:].sum() > 20  # the mouth is still there


def test_headwear_sits_on_top_and_the_collage_is_reframed() -> None:
    face, hat = _face(), _sunglasses()  # the bar drawn as a "hat"
    worn = overlay(face, hat, "head")
    assert worn.shape == face.shape
    hat_rows = torch.nonzero(_matches(worn, LENS).any(dim=1)).flatten()
    face_rows = torch.nonzero(_matches(worn, (255, 204, 77)).any(dim=1)).flatten()
    assert hat_rows.float().mean() < face_rows.float().min() + 4  # above the face
    assert hat_rows.min() >= 1  # nothing cut off: the collage was shrunk to fit
    assert foreground(worn).sum() < foreground(face).sum() + foreground(hat).sum()
    beside = overlay(face, _apple(), "side")
    assert colour_names(beside[None]) == ["yellow"]  # the subject stays the larger part
    assert _matches(beside, (221, 46, 68)).sum() > 20
