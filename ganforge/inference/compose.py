"""Composition by collage for retrieval-augmented text-to-image: what the memory lacks, built
from what it has.

A retrieval model can only start from images it holds; "grinning face with sunglasses" or
"blue apple" name an image it does not hold but parts it does. ``parse_prompt`` reads two
patterns from a prompt, a leading colour word and a "with / wearing" accessory; the model
then retrieves the subject and the accessory separately, ``recolour``s what has the wrong
colour and ``overlay``s the accessory where such things go (eyewear on the eye line,
headwear on top, anything else beside the subject), and its generator edits the collage as it
edits any starting image. The school: Collage Diffusion (Sarukkai et al. 2023) and
layout-to-image models harmonise pasted layers; here the layers are retrieved training
images and the placement is a rule, stated in ``overlay``. Pure functions on uint8 tensors
[3, H, W] of images on a white background (what the memory holds).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

#: hue (degrees) a colour word recolours to; saturation 0 words are not recoloured to
TARGET_HUES = {"red": 0.0, "orange": 28.0, "yellow": 52.0, "green": 120.0, "blue": 215.0,
               "purple": 275.0, "pink": 325.0, "brown": 28.0}
COLOUR_WORDS = (*TARGET_HUES, "black", "white", "grey", "gray")
EYEWEAR = ("glasses", "sunglasses", "eyeglasses", "goggles", "monocle", "shades")
HEADWEAR = ("hat", "cap", "crown", "helmet", "tiara", "beret", "headphone", "headphones",
            "bow", "halo")
_ARTICLE = re.compile(r"^(?:a|an|the|some|a pair of|pair of)\s+")
_ACCESSORY = re.compile(r"\s+(?:with|wearing)\s+")


@dataclass(frozen=True)
class PromptParts:
    """What ``parse_prompt`` read: the subject phrase (colour word included), its colour
    word, the accessory phrase and its colour word (None where the prompt has none)."""

    subject: str
    colour: str | None = None
    accessory: str | None = None
    accessory_colour: str | None = None

    @property
    def composed(self) -> bool:
        """Whether the prompt names anything a collage could add (a colour or accessory)."""
        return self.colour is not None or self.accessory is not None


def _leading_colour(phrase: str) -> str | None:
    first = phrase.split(" ", 1)[0]
    return ("grey" if first == "gray" else first) if first in COLOUR_WORDS else None


def parse_prompt(prompt: str) -> PromptParts:
    """The subject, accessory and colour words of a prompt: "a blue apple" -> (subject "blue
    apple", colour "blue"); "grinning face with sunglasses" -> (subject "grinning face",
    accessory "sunglasses"). Only the first "with"/"wearing" splits."""
    text = " ".join(prompt.lower().split())
    parts = _ACCESSORY.split(text, maxsplit=1)
    subject = _ARTICLE.sub("", parts[0])
    accessory = _ARTICLE.sub("", parts[1]) if len(parts) == 2 and parts[1] else None
    return PromptParts(subject, _leading_colour(subject), accessory,
                       _leading_colour(accessory) if accessory else None)


def placement(accessory: str) -> str:
    """Where an accessory goes: "eyes" (eyewear), "head" (headwear) or "side"."""
    words = set(re.findall(r"[a-z]+", accessory.lower()))
    if words & set(EYEWEAR):
        return "eyes"
    if words & set(HEADWEAR):
        return "head"
    return "side"


def subject_mask(rgb: np.ndarray) -> np.ndarray:
    """Bool mask [H, W] of the subject of an RGB array [H, W, 3] (0-255) on white: everything
    but the near-white pixels connected to the border (white inside the subject stays)."""
    labels, _ = ndimage.label(rgb.min(axis=2) > 240)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return ~np.isin(labels, border[border > 0])


def foreground(image: torch.Tensor) -> torch.Tensor:
    """``subject_mask`` of a uint8 image [3, H, W], as a tensor."""
    return torch.from_numpy(subject_mask(image.permute(1, 2, 0).numpy()))


def hsv(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(hue in degrees, saturation, value in [0, 1]) of uint8 images [..., 3, H, W], each
    [..., H, W]."""
    x = images.float() / 255
    high, low = x.max(dim=-3).values, x.min(dim=-3).values
    chroma = (high - low).clamp(min=1e-6)
    r, g, b = x.unbind(-3)
    hue = torch.where(high == r, ((g - b) / chroma) % 6,
                      torch.where(high == g, (b - r) / chroma + 2, (r - g) / chroma + 4)) * 60
    return hue, (high - low) / high.clamp(min=1e-6), high


def _rgb(hue: torch.Tensor, saturation: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    h = (hue % 360) / 60
    k = torch.stack([(5 + h) % 6, (3 + h) % 6, (1 + h) % 6])
    weight = torch.clamp(torch.minimum(k, 4 - k), 0, 1)
    return (value - value * saturation * weight).mul(255).round().clamp(0, 255).to(torch.uint8)


def recolour(image: torch.Tensor, colour: str) -> torch.Tensor:
    """``image`` with its main colour turned to ``colour`` (a ``TARGET_HUES`` name; others
    return it unchanged): the subject's saturated pixels whose hue lies within 20 degrees of
    its dominant hue get the new hue, keeping their saturation and value (so shading and
    outlines survive); a subject without saturated pixels is tinted."""
    if colour not in TARGET_HUES:
        return image.clone()
    hue, saturation, value = hsv(image)
    subject = foreground(image)
    chromatic = subject & (saturation > 0.25) & (value > 0.2)
    target = torch.full_like(hue, TARGET_HUES[colour])
    if colour == "brown":
        value = torch.where(chromatic, value * 0.6, value)
    if chromatic.sum() < 8:  # greys and whites: tint the subject's pale pixels
        tinted = subject & (value > 0.35)
        return torch.where(tinted, _rgb(target, torch.full_like(hue, 0.65), value), image)
    counts = torch.histc(hue[chromatic], bins=36, min=0, max=360)
    dominant = float(counts.argmax()) * 10 + 5
    distance = (hue - dominant).abs()
    distance = torch.minimum(distance, 360 - distance)
    chosen = chromatic & (distance <= 20)
    # keep each pixel's offset from the dominant hue (a gradient stays a gradient)
    offset = ((hue - dominant + 180) % 360) - 180
    return torch.where(chosen, _rgb(target + offset * 0.5, saturation, value), image)


def _box(mask: torch.Tensor) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of a mask's true pixels, bottom/right exclusive."""
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def eye_line(image: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    """(row, column) where eyewear goes on a subject: the row of most dark feature pixels
    between 20 % and 60 % of the subject's height (eyes of a face), centred on those pixels;
    without dark features, 40 % down the middle."""
    top, bottom, left, right = _box(mask)
    height = bottom - top
    dark = mask & (image.float().max(dim=0).values < 110)
    low, high = top + int(0.2 * height), top + int(0.6 * height) + 1
    profile = dark[low:high].sum(dim=1).float()
    if profile.sum() < 4:
        return top + 0.4 * height, (left + right) / 2
    smooth = F.conv1d(profile.view(1, 1, -1), torch.ones(1, 1, 3) / 3, padding=1).flatten()
    row = low + int(smooth.argmax())
    band = dark[max(row - 3, 0):row + 4]
    cols = torch.nonzero(band.any(dim=0)).flatten().float()
    return float(row), float(cols.mean()) if len(cols) else (left + right) / 2


def _resized(patch: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return F.interpolate(patch.unsqueeze(0), size=(max(height, 1), max(width, 1)),
                         mode="bilinear", antialias=True, align_corners=False)[0]


def overlay(subject: torch.Tensor, accessory: torch.Tensor, place: str) -> torch.Tensor:
    """``accessory``'s foreground drawn onto ``subject`` (both uint8 [3, S, S] on white) where
    ``place`` says: "eyes" — 0.9 of the subject's width, centred on its ``eye_line``; "head" —
    0.75 of its width, its lower quarter over the subject's top; "side" — 0.5 of its size over
    the lower right corner. The collage is then re-framed so the subject keeps its margin."""
    size = subject.shape[-1]
    mask_s, mask_a = foreground(subject), foreground(accessory)
    if not mask_s.any() or not mask_a.any():
        return subject.clone()
    top, bottom, left, right = _box(mask_s)
    a_top, a_bottom, a_left, a_right = _box(mask_a)
    patch = torch.cat([accessory.float(), mask_a.float().unsqueeze(0) * 255])
    patch = patch[:, a_top:a_bottom, a_left:a_right]
    aspect = patch.shape[1] / patch.shape[2]
    width_s, height_s = right - left, bottom - top
    if place == "eyes":
        width = round(0.9 * width_s)
        row, col = eye_line(subject, mask_s)
        height = round(width * aspect)
        y, x = row - height / 2, col - width / 2
    elif place == "head":
        width = round(0.75 * width_s)
        height = round(width * aspect)
        y, x = top - 0.75 * height, (left + right) / 2 - width / 2
    else:
        scale = 0.5 * max(width_s, height_s) / max(patch.shape[1], patch.shape[2])
        width, height = round(patch.shape[2] * scale), round(patch.shape[1] * scale)
        y, x = bottom - 0.7 * height, right - 0.7 * width
    patch = _resized(patch, height, width)
    # a canvas three times the size holds any placement; the subject sits in its middle
    canvas = torch.full((4, 3 * size, 3 * size), 255.0)
    canvas[3] = 0
    canvas[:3, size:2 * size, size:2 * size] = subject.float()
    canvas[3, size:2 * size, size:2 * size] = mask_s.float() * 255
    y0, x0 = size + round(y), size + round(x)
    h, w = patch.shape[1:]
    y0, x0 = min(max(y0, 0), 3 * size - h), min(max(x0, 0), 3 * size - w)
    alpha = patch[3:] / 255
    region = canvas[:, y0:y0 + h, x0:x0 + w]
    region[:3] = region[:3] * (1 - alpha) + patch[:3] * alpha
    region[3:] = torch.maximum(region[3:], patch[3:])
    # re-frame: the union of subject and accessory, with the subject's own margin
    c_top, c_bottom, c_left, c_right = _box(canvas[3] > 127)
    margin = min(top, left, size - bottom, size - right)
    side = max(c_bottom - c_top, c_right - c_left) + 2 * margin
    cy, cx = (c_top + c_bottom) / 2, (c_left + c_right) / 2
    y1, x1 = round(cy - side / 2), round(cx - side / 2)
    pad = torch.full((3, 5 * size, 5 * size), 255.0)
    pad[:, size:4 * size, size:4 * size] = canvas[:3]
    framed = pad[:, size + y1:size + y1 + side, size + x1:size + x1 + side]
    if side != size:
        framed = _resized(framed, size, size)
    return framed.round().clamp(0, 255).to(torch.uint8)
