"""Invisible watermark carried by every image ganforge hands out.

Why not a library: ``invisible-watermark`` (the DWT-DCT mark of SDXL) refuses images smaller
than 256x256 and pulls opencv-python and onnxruntime; our images are 64 px emoji. This is a
spread-transform dither-modulation mark (STDM, Chen & Wornell 2001) in the low/mid-frequency
DCT band of the luminance, on a fixed 64x64 working grid:

- the luminance is resized to 64x64 and transformed with an orthonormal 2-D DCT;
- ``NUM_BITS`` keyed orthonormal directions over a band of ``len(BAND)`` coefficients each carry
  one bit: the projection, divided by the band's RMS (so a brightness gain cancels out), is
  moved to the nearest point of the lattice that codes the bit (``STEP`` apart, keyed dither);
- the change is turned back into pixels (the same offset on R, G and B: colours keep their hue),
  upsampled to the image's size, and the embedding is repeated a few times on the rounded
  8-bit image so clipping and rounding do not eat the mark.

Projections onto the host are quantized, not added to it, so the image's own content does not
interfere with the bits (the weakness of additive spread spectrum on small images). Low
frequencies survive JPEG and halving the size; a crop is undone by searching the crop's scale
and position.

Payload (48 bits): 16-bit ganforge tag, 16-bit model id (from a hash of the weights), 16 check
bits (a keyed function of the id). Decoding picks the codeword with the highest soft score; an
image counts as marked when that score exceeds ``THRESHOLD`` (see ``false_positive_bound``).
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy.fft import idctn

SCHEME = "ganforge-stdm-v1"
KEY = b"ganforge-watermark-v1"
GRID = 64
NUM_BITS = 48
TAG = 0x6A7F  # the 16 bits that say "ganforge"
#: quantization step of the normalized projections (larger: more robust, more visible)
STEP = 0.18
#: mean soft agreement (in [-1, 1]) of the best codeword above which an image counts as marked
THRESHOLD = 0.7
EMBED_ITERATIONS = 6
MIN_RMS = 2.0  # a (nearly) flat image: the band's RMS is floored so that nothing divides by 0
#: crop hypotheses tried when the full image does not decode: kept fraction of each side
CROP_FRACTIONS = (0.95, 0.9)
#: brightness gains undone when an image has saturated (white) pixels
GAINS = (1.1, 1.2, 1.3)
MARGIN, RAMP = 7, 4  # the mark stays MARGIN px (of 64) away from the border
TOP_HYPOTHESES = 4
INFO_KEY = "ganforge:watermark"


def _band() -> np.ndarray:
    """DCT coefficients (row, col) that span the mark: 3 <= u + v <= 22, both < 20."""
    coords = [(u, v) for u in range(20) for v in range(20) if 3 <= u + v <= 22]
    return np.array(coords, dtype=np.int64)


BAND = _band()


def _rng(label: str) -> np.random.Generator:
    digest = hashlib.sha256(KEY + label.encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _window() -> np.ndarray:
    """[GRID, GRID] weights: 0 within ``MARGIN`` px of the border, a cosine ramp to 1 over
    ``RAMP`` px (a crop that keeps the centre keeps the whole mark)."""
    distance = np.minimum(np.arange(GRID), np.arange(GRID)[::-1]).astype(np.float64)
    ramp = np.clip((distance - MARGIN + 0.5) / RAMP, 0, 1)
    ramp = 0.5 - 0.5 * np.cos(np.pi * ramp)
    return np.outer(ramp, ramp)


@cache
def _basis() -> np.ndarray:
    """[len(BAND), GRID * GRID] orthonormal pixel patterns: the band's DCT basis images times
    the window, orthonormalized."""
    images = np.zeros((len(BAND), GRID, GRID))
    for row, (u, v) in enumerate(BAND):
        spectrum = np.zeros((GRID, GRID))
        spectrum[u, v] = 1.0
        images[row] = idctn(spectrum, norm="ortho") * _window()
    q, _ = np.linalg.qr(images.reshape(len(BAND), -1).T)
    return np.ascontiguousarray(q.T)


@cache
def _directions() -> np.ndarray:
    """[NUM_BITS, len(BAND)] orthonormal keyed directions inside the basis, one per bit."""
    gauss = _rng("directions").standard_normal((len(BAND), NUM_BITS))
    q, _ = np.linalg.qr(gauss)
    return np.ascontiguousarray(q.T)


@cache
def _dither() -> np.ndarray:
    """[NUM_BITS] keyed lattice offsets in units of STEP."""
    return _rng("dither").random(NUM_BITS)


def _check_bits(model_id: int) -> int:
    digest = hashlib.sha256(KEY + b"check" + model_id.to_bytes(2, "big")).digest()
    return int.from_bytes(digest[:2], "big")


def payload_bits(model_id: int) -> np.ndarray:
    """The 48 bits {0, 1} embedded for ``model_id`` (0..65535): tag, id, check bits."""
    if not 0 <= model_id < 1 << 16:
        raise ValueError(f"model id must be in 0..65535, got {model_id}")
    word = (TAG << 32) | (model_id << 16) | _check_bits(model_id)
    return np.array([(word >> (NUM_BITS - 1 - i)) & 1 for i in range(NUM_BITS)], dtype=np.int64)


@cache
def _codebook() -> np.ndarray:
    """[65536, 32] the id and check bits of every codeword as signs (+1 for bit 0)."""
    ids = np.arange(1 << 16, dtype=np.int64)
    checks = np.array([_check_bits(int(i)) for i in ids], dtype=np.int64)
    words = (ids << 16) | checks
    shifts = np.arange(31, -1, -1, dtype=np.int64)
    bits = (words[:, None] >> shifts) & 1
    return (1 - 2 * bits).astype(np.float32)


@cache
def _tag_signs() -> np.ndarray:
    return 1.0 - 2.0 * payload_bits(0)[:16]


def model_id_of(state: dict[str, Any]) -> int:
    """A 16-bit id of a model from its weights: the same weights always give the same id."""
    digest = hashlib.sha256()
    for key in sorted(state):
        value = state[key]
        digest.update(key.encode())
        array = value.detach().cpu().contiguous().numpy() if hasattr(value, "detach") else value
        digest.update(np.ascontiguousarray(array).tobytes())
    return int.from_bytes(digest.digest()[:2], "big")


# ---------------------------------------------------------------------------- pixels
def _luma(rgb: np.ndarray) -> np.ndarray:
    """[H, W, 3] float -> [H, W] BT.601 luma."""
    return rgb @ np.array([0.299, 0.587, 0.114])


def _resize(plane: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize a float plane with PIL's antialiasing bicubic filter."""
    if plane.shape == (height, width):
        return plane
    im = Image.fromarray(plane.astype(np.float32), mode="F")
    return np.asarray(im.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float64)


def _coefficients(luma_grid: np.ndarray) -> np.ndarray:
    """[GRID, GRID] luma -> its coordinates [len(BAND)] in the windowed band basis."""
    return _basis() @ luma_grid.reshape(-1)


def _projections(coeffs: np.ndarray) -> tuple[np.ndarray, float]:
    """Normalized projections [NUM_BITS] and the band RMS used to normalize them."""
    rms = max(float(np.sqrt(np.mean(coeffs**2))), MIN_RMS)
    return _directions() @ coeffs / rms, rms


def _soft_bits(projections: np.ndarray) -> np.ndarray:
    """Soft bits in [-1, 1]: +1 on the lattice of bit 0, -1 on that of bit 1."""
    phase = projections / STEP - _dither()
    return np.cos(2 * np.pi * phase)


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    """[H, W, 3] float RGB; transparency composited on white."""
    if image.mode in ("RGBA", "LA", "P", "PA"):
        with warnings.catch_warnings():  # palette PNGs with transparency: converted right here
            warnings.simplefilter("ignore")
            rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def embed(image: Image.Image, model_id: int) -> Image.Image:
    """``image`` with the ganforge mark for ``model_id`` (an RGB image of the same size)."""
    rgb = _to_rgb_array(image)
    height, width = rgb.shape[:2]
    bits = payload_bits(model_id)
    directions = _directions()
    target = None
    marked = np.clip(np.round(rgb), 0, 255)
    for _ in range(EMBED_ITERATIONS):
        coeffs = _coefficients(_resize(_luma(marked), GRID, GRID))
        projections, rms = _projections(coeffs)
        if target is None:  # nearest lattice point coding each bit
            offset = (_dither() + bits / 2.0) * STEP
            target = np.round((projections - offset) / STEP) * STEP + offset
        error = target - projections
        if np.abs(error).max() < 0.02 * STEP:
            break
        change = (_basis().T @ (directions.T @ (error * rms))).reshape(GRID, GRID)
        delta = _resize(change, width, height)
        marked = np.clip(np.round(marked + delta[..., None]), 0, 255)
    out = Image.fromarray(marked.astype(np.uint8), mode="RGB")
    out.info.update(image.info)
    return out


# --------------------------------------------------------------------------- reading
@dataclass
class WatermarkResult:
    """What :func:`detect` found in an image."""

    found: bool
    score: float  # mean agreement of the best codeword's soft bits, in [-1, 1]
    model_id: int | None  # the decoded id (also when not found: then it means nothing)
    bit_accuracy: float | None  # only when the expected id was given
    undone: str | None  # the edit undone to read the mark (a crop, a brightness gain)
    scheme: str = SCHEME

    def as_dict(self) -> dict[str, Any]:
        return {"found": self.found, "scheme": self.scheme, "score": round(self.score, 4),
                "threshold": THRESHOLD,
                "model_id": f"{self.model_id:04x}" if self.found and self.model_id is not None
                else None,
                "undone": self.undone}


def _hypotheses(rgb: np.ndarray) -> list[tuple[str | None, np.ndarray]]:
    """Candidate 64x64 grids, each with the edit it undoes: the image as it is; a brightness
    gain undone (saturated channels taken as 255 scaled by the gain); the image as a crop of
    the marked one at several sizes and positions (the lost border filled with the median
    border value: the mark keeps away from the border)."""
    luma = _luma(rgb)
    out: list[tuple[str | None, np.ndarray]] = [(None, _resize(luma, GRID, GRID))]
    saturated = rgb >= 254.5
    if saturated.any():
        for gain in GAINS:
            undone = _luma(np.where(saturated, 255.0 * gain, rgb))
            out.append((f"brightness x{gain:g}", _resize(undone, GRID, GRID)))
    border = np.concatenate([luma[0], luma[-1], luma[:, 0], luma[:, -1]])
    fill = float(np.median(border))
    for fraction in CROP_FRACTIONS:
        side = round(GRID * fraction)
        inner = _resize(luma, side, side)
        for top in range(GRID - side + 1):
            for left in range(GRID - side + 1):
                canvas = np.full((GRID, GRID), fill)
                canvas[top:top + side, left:left + side] = inner
                out.append((f"crop {fraction:g} at ({top / GRID:.2f}, {left / GRID:.2f})",
                            canvas))
    return out


def _best_codewords(soft: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores [K] and ids [K] of the codewords whose signs agree most with each row of
    ``soft`` [K, NUM_BITS]."""
    rest = _codebook() @ soft[:, 16:].T.astype(np.float32)  # [65536, K]
    ids = np.argmax(rest, axis=0)
    scores = (soft[:, :16] @ _tag_signs() + rest[ids, np.arange(len(ids))]) / NUM_BITS
    return scores, ids


def detect(image: Image.Image, expected_id: int | None = None,
           search_crops: bool = True) -> WatermarkResult:
    """Look for the ganforge mark in ``image`` (any size, any mode)."""
    rgb = _to_rgb_array(image)
    hypotheses = (_hypotheses(rgb) if search_crops
                  else [(None, _resize(_luma(rgb), GRID, GRID))])
    grids = np.stack([grid.reshape(-1) for _, grid in hypotheses])
    coeffs = grids @ _basis().T  # [H, len(BAND)]
    rms = np.maximum(np.sqrt(np.mean(coeffs**2, axis=1, keepdims=True)), MIN_RMS)
    soft = _soft_bits(coeffs @ _directions().T / rms)
    tag_scores = soft[:, :16] @ _tag_signs()
    order = [0, *[int(i) for i in np.argsort(-tag_scores) if i != 0][:TOP_HYPOTHESES - 1]]
    scores, ids = _best_codewords(soft[order])
    best = int(np.argmax(scores))
    score, model_id, index = float(scores[best]), int(ids[best]), order[best]
    accuracy = None
    if expected_id is not None:
        accuracy = float(np.mean((soft[index] < 0) == payload_bits(expected_id).astype(bool)))
    return WatermarkResult(found=score >= THRESHOLD, score=score, model_id=model_id,
                           bit_accuracy=accuracy, undone=hypotheses[index][0])


def bit_accuracy(image: Image.Image, model_id: int, search_crops: bool = True) -> float:
    """Share of the 48 payload bits read correctly from ``image`` marked for ``model_id``."""
    result = detect(image, expected_id=model_id, search_crops=search_crops)
    assert result.bit_accuracy is not None
    return result.bit_accuracy


def false_positive_bound(threshold: float = THRESHOLD) -> float:
    """Gaussian estimate of the chance that an unmarked image scores above ``threshold``.

    Under no mark each soft bit is cos of a uniform phase (mean 0, variance 1/2), so one
    codeword's score has standard deviation sqrt(1 / (2 * NUM_BITS)); decoding tries 65536
    codewords on every candidate grid (the image, brightness and crop hypotheses; a union
    bound, so pessimistic where the grids are correlated)."""
    sigma = math.sqrt(1 / (2 * NUM_BITS))
    tail = 0.5 * math.erfc(threshold / sigma / math.sqrt(2))
    grids = 1 + len(GAINS) + sum((GRID - round(GRID * f) + 1) ** 2 for f in CROP_FRACTIONS)
    return min(1.0, tail * (1 << 16) * grids)


def describe(model_id: int) -> str:
    """What ``image.info`` and PNG metadata record for an image marked with ``model_id``."""
    return f"{SCHEME} model={model_id:04x}"


def mark_images(images: list[Image.Image], model_id: int | None) -> list[Image.Image]:
    """Mark each image for ``model_id``, or (``None``) only record that it is unmarked."""
    out = [embed(image, model_id) if model_id is not None else image for image in images]
    for image in out:
        image.info[INFO_KEY] = describe(model_id) if model_id is not None else "none"
    return out


#: saved kinds whose outputs are watermarked (the tools beside them are not generators)
GENERATOR_KINDS = ("dfgan", "maskgit", "cyclegan", "unit", "pix2pix", "stargan", "esrgan")


@cache
def known_models() -> dict[int, str]:
    """Watermark ids of the models shipped in ``ganforge/assets`` -> their folder names
    (read as NumPy arrays: verifying an image never needs torch)."""
    from safetensors.numpy import load_file

    assets = Path(__file__).resolve().parents[1] / "assets"
    known = {}
    for weights in sorted(assets.glob("*/model.safetensors")):
        try:
            config = json.loads((weights.parent / "config.json").read_text())
            if config.get("format") == "ganforge-pipeline-v1" or (
                    config.get("format") == "ganforge-artifact"
                    and config.get("kind") in GENERATOR_KINDS):
                known[model_id_of(load_file(str(weights)))] = weights.parent.name
        except (OSError, ValueError, TypeError):
            continue
    return known
