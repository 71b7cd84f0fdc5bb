"""Invisible watermark carried by every image ganforge hands out.

Why not a library: ``invisible-watermark`` (the DWT-DCT mark of SDXL) refuses images smaller
than 256x256 and pulls opencv-python and onnxruntime; our images are 64 px emoji. This is a
spread-transform dither-modulation mark (STDM, Chen & Wornell 2001), ``ganforge-stdm-v2``:

- the image is resized to a 32x32 working grid per channel, each channel is **capped** at a
  level ``cap`` (212, or 250 for pale images with too little below 212), and the capped
  channels give a luma. A pointwise level change (brightness, contrast, gamma) maps the cap to
  another level and clipping at white only touches what lay above the cap, so the decoder
  undoes such edits by trying caps (``CAP_HYPOTHESES``) instead of guessing lost pixels; a
  brightening or a contrast increase also clips white (and black) at the image's resolution,
  which blurs into the grid cells beside them, so the decoder also puts clipped pixels back
  where the edit sent them; gamma is not affine and is undone (``GAMMA_HYPOTHESES``);
- ``NUM_BITS`` keyed orthonormal directions over a windowed low/mid DCT band (orthogonal to a
  constant over the window's support: an offset never moves them) each carry one bit: the
  projection, divided by the band's RMS (floored at ``MIN_RMS``; a gain cancels out), is moved
  to the nearest point of the lattice that codes the bit (keyed dither), ``STEP`` times one of
  ``STRENGTHS`` apart;
- the change is the same offset on R, G and B (achromatic, so JPEG's chroma subsampling does
  not touch it), only where a channel lies below the cap (nothing on white backgrounds and
  saturated colours), at most ``MAX_CHANGE`` levels, solved in the bits' space for the
  smallest change and refined a few times on the rounded 8-bit image;
- the embedder **checks its own output**: it reads the mark back as the decoder will, and
  after a simulated JPEG q50, brightness +20 % and contrast +20 %, and takes the first of
  ``ATTEMPTS`` (weakest first: cap, strength, largest offset) that reads with margin. An image
  that no attempt marks readably gets the first scheme's mark, which :func:`detect` also reads;
- a **pale layer** for the images whose band mark a 20 % brightening loses (pale pictures:
  almost every pixel above the caps, clipped to white by the edit; 18 of 500 text→image
  outputs): the payload once more, in keyed directions that change from pixel to pixel on a
  64x64 grid, carried by the few pixels under the 212 cap; it survives only pointwise level
  edits, read with each brightness gain of ``PALE_GAINS`` undone (see :func:`_embed_pale`).

Working on a 32x32 grid makes halving a 64 px image (almost) lossless for the mark; a crop is
undone by searching the crop's scale and position (the mark keeps away from the border).

Payload (48 bits): 16-bit ganforge tag, 16-bit model id (from a hash of the weights), 16 check
bits (a keyed function of the id). Decoding picks the codeword with the highest soft score; an
image counts as marked when that score reaches ``THRESHOLD`` (see ``false_positive_bound``).
Images marked by the first scheme (``ganforge-stdm-v1``: one 64x64 grid, no cap) are still
read: :func:`detect` tries v2 first, then v1.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageStat
from scipy.fft import idctn

SCHEME = "ganforge-stdm-v2"
SCHEME_V1 = "ganforge-stdm-v1"
KEY = b"ganforge-watermark-v2"
KEY_V1 = b"ganforge-watermark-v1"  # also keys the check bits of the payload (both schemes)
NUM_BITS = 48
TAG = 0x6A7F  # the 16 bits that say "ganforge"
INFO_KEY = "ganforge:watermark"

GRID = 32  # the working grid of v2
#: quantization step of the normalized projections (larger: more robust, more visible)
STEP = 0.4
#: multiples of STEP the embedder chooses from per image (weakest that passes its self-test)
#: and the decoder tries
STRENGTHS = (0.8, 1.0, 1.25, 1.5)
#: mean soft agreement (in [-1, 1]) of the best codeword at which an image counts as marked
THRESHOLD = 0.74
EMBED_ITERATIONS = 8
#: floor of the band RMS that normalizes the projections: the weakest mark a flat or pale
#: image gets (below it a gain no longer cancels: the decoder tries ``GAIN_HYPOTHESES``)
MIN_RMS = 55.0
#: channel caps the embedder chooses from (212 x 1.2 < 255: a 20% brightening does not clip
#: what the mark uses; 250 for pale images with too little below 212). 212 rather than the
#: first revision's 205: Twemoji's face yellow (255, 204, 77) then marks its green channel too
#: (2026-12-02, on the crisp retrieval default: brightness +20 % 91.5 -> 96.5 %, JPEG q50
#: 97.5 -> 100 %, PSNR 37.98 -> 38.15 dB on 200 images, with MIN_MARKABLE 0.04)
ENCODE_CAPS = (212.0, 250.0)
#: share of the luma that must lie below a cap for the embedder to try it (but the last cap)
MIN_MARKABLE = 0.04
WEIGHT_RAMP = 12.0  # the mark fades out over this many levels below the cap
MAX_CHANGE = 14.0  # largest offset (levels) the mark adds to a pixel, unless escalated
#: caps the decoder tries: the encoder's, mapped by brightness, contrast and gamma edits
CAP_HYPOTHESES = tuple(sorted({*np.arange(150.0, 253.0, 3.0).tolist(), *ENCODE_CAPS}))
#: gamma edits the decoder undoes (under the encoder's caps): gamma is not affine, a cap
#: alone does not undo it
GAMMA_HYPOTHESES = (0.7, 0.8, 0.9, 1.1, 1.25, 1.4)
GAIN_HYPOTHESES = (0.8, 0.87, 0.93, 1.0, 1.07, 1.15, 1.25)
#: small rotations the decoder undoes (degrees, under the encoder's caps): a photo editor's
#: straightening or a tilted screenshot; the mark keeps away from the corners they fill
ROTATION_HYPOTHESES = (-3.0, -2.0, -1.0, 1.0, 2.0, 3.0)
#: crop hypotheses: kept fraction of each side, on a CANVAS x CANVAS reconstruction
CROP_FRACTIONS = (0.95, 0.9)
CANVAS = 64
MARGIN, RAMP = 3.5, 2.0  # the mark stays MARGIN cells (of 32) away from the border
TOP_HYPOTHESES = 8
PLAIN_HYPOTHESES = 2  # readings as is (by tag score) that are decoded first
LUMA = np.array([0.299, 0.587, 0.114])  # BT.601
#: the pale layer (see :func:`_embed_pale`): its grid, cap, lattice step (in levels of the
#: projection) and the brightness gains its decoder undoes
PALE_GRID = 64
PALE_CAP = 212.0
PALE_STEP = 2.0
PALE_MAX_CHANGE = 12.0
PALE_GAINS = tuple(round(1.0 + 0.005 * i, 3) for i in range(41))  # 1.0 .. 1.2


# ---------------------------------------------------------------------------- payload
def _check_bits(model_id: int) -> int:
    digest = hashlib.sha256(KEY_V1 + b"check" + model_id.to_bytes(2, "big")).digest()
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


# -------------------------------------------------------------------- shared helpers
def _rng(key: bytes, label: str) -> np.random.Generator:
    digest = hashlib.sha256(key + label.encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _window(size: int, margin: float, ramp: float) -> np.ndarray:
    """[size, size] weights: 0 within ``margin`` cells of the border, a cosine ramp to 1 over
    ``ramp`` cells (a crop that keeps the centre keeps the whole mark)."""
    distance = np.minimum(np.arange(size), np.arange(size)[::-1]).astype(np.float64)
    weight = np.clip((distance - margin + 0.5) / ramp, 0, 1)
    weight = 0.5 - 0.5 * np.cos(np.pi * weight)
    return np.outer(weight, weight)


def _band_images(size: int, max_index: int, max_sum: int, window: np.ndarray) -> np.ndarray:
    """[N, size * size] windowed DCT basis images with 3 <= u + v <= max_sum, u, v < max_index."""
    coords = [(u, v) for u in range(max_index) for v in range(max_index) if 3 <= u + v <= max_sum]
    images = np.zeros((len(coords), size, size))
    for row, (u, v) in enumerate(coords):
        spectrum = np.zeros((size, size))
        spectrum[u, v] = 1.0
        images[row] = idctn(spectrum, norm="ortho") * window
    return images.reshape(len(coords), -1)


@cache
def _resize_matrix(size: int, new_size: int) -> np.ndarray:
    """[new_size, size] matrix of PIL's antialiasing bicubic filter along one axis: PIL resizes
    separably, so resizing a plane is this matrix on each side (the rows of an identity image
    resized along one axis are the matrix's columns)."""
    if size == new_size:
        return np.eye(size)
    eye = Image.fromarray(np.eye(size, dtype=np.float32), mode="F")
    return np.asarray(eye.resize((new_size, size), Image.Resampling.BICUBIC), np.float64).T


def _resize(plane: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize a float plane with PIL's antialiasing bicubic filter (as matrix products: the
    embedder and decoder resize thousands of small planes, where PIL's per-call overhead
    dominated)."""
    if plane.shape == (height, width):
        return plane
    return _resize_matrix(plane.shape[0], height) @ plane @ _resize_matrix(plane.shape[1],
                                                                           width).T


def _resize_rgb(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    if rgb.shape[:2] == (height, width):
        return rgb
    rows = _resize_matrix(rgb.shape[0], height)
    cols = _resize_matrix(rgb.shape[1], width)
    tall = (rows @ rgb.reshape(rgb.shape[0], -1)).reshape(height, rgb.shape[1], 3)
    return (tall.transpose(0, 2, 1) @ cols.T).transpose(0, 2, 1)


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    """[H, W, 3] float RGB; transparency composited on white."""
    if image.mode in ("RGBA", "LA", "P", "PA"):
        with warnings.catch_warnings():  # palette PNGs with transparency: converted right here
            warnings.simplefilter("ignore")
            rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def _soft(projections: np.ndarray, step: float, dither: np.ndarray) -> np.ndarray:
    """Soft bits in [-1, 1]: +1 on the lattice of bit 0, -1 on that of bit 1."""
    return np.cos(2 * np.pi * (projections / step - dither))


def _best_codewords(soft: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores [K] and ids [K] of the codewords whose signs agree most with each row of
    ``soft`` [K, NUM_BITS]."""
    rest = _codebook() @ soft[:, 16:].T.astype(np.float32)  # [65536, K]
    ids = np.argmax(rest, axis=0)
    scores = (soft[:, :16] @ _tag_signs() + rest[ids, np.arange(len(ids))]) / NUM_BITS
    return scores, ids


# ------------------------------------------------------------------------ v2: layout
@cache
def _basis() -> np.ndarray:
    """[N, GRID * GRID] orthonormal patterns spanning the windowed band, orthogonal to a
    constant over the window's support (so an offset of the levels never moves them)."""
    window = _window(GRID, MARGIN, RAMP)
    support = (window > 0).reshape(-1, 1).astype(np.float64)
    columns = np.concatenate([support / np.linalg.norm(support),
                              _band_images(GRID, 20, 22, window).T], axis=1)
    q, _ = np.linalg.qr(columns)
    return np.ascontiguousarray(q[:, 1:].T)


@cache
def _directions() -> np.ndarray:
    """[NUM_BITS, N] orthonormal keyed directions inside the basis, one per bit."""
    q, _ = np.linalg.qr(_rng(KEY, "directions").standard_normal((len(_basis()), NUM_BITS)))
    return np.ascontiguousarray(q.T)


@cache
def _patterns() -> np.ndarray:
    """[NUM_BITS, GRID * GRID] each bit's direction as a pattern on the grid."""
    return _directions() @ _basis()


@cache
def _dither() -> np.ndarray:
    """[NUM_BITS] keyed lattice offsets in units of STEP."""
    return _rng(KEY, "dither").random(NUM_BITS)


def _signal(grid_rgb: np.ndarray, cap: float) -> np.ndarray:
    """[GRID, GRID, 3] -> [GRID, GRID] luma of the channels capped at ``cap``."""
    return np.minimum(grid_rgb, cap) @ LUMA


def _grid(rgb: np.ndarray) -> np.ndarray:
    return _resize_rgb(rgb, GRID, GRID)


@dataclass
class _Clipping:
    """An image's [GRID, GRID, 3] grid, the grids of its saturated (255) and black (0) pixels
    (None: none) and its mean grey, from which :func:`_unclipped` puts clipped pixels back."""

    grid: np.ndarray
    saturated: np.ndarray | None
    black: np.ndarray | None
    mean: float

    @classmethod
    def of(cls, rgb: np.ndarray, grid: np.ndarray | None = None) -> _Clipping:
        saturated, black = rgb >= 254.5, rgb <= 0.5
        return cls(_grid(rgb) if grid is None else grid,
                   _grid(saturated.astype(np.float64)) if saturated.any() else None,
                   _grid(black.astype(np.float64)) if black.any() else None,
                   float((rgb @ LUMA).mean()))


def _unclipped(clipping: _Clipping, cap: float) -> list[tuple[str, np.ndarray]]:
    """[GRID, GRID] signals under ``cap`` (above the encoder's lowest) with the pixels a
    raising edit clipped put back where it would have sent them: for a brightness gain
    (cap / 212) white at 255 x gain; for a contrast gain about the mean grey (the one that maps
    212 to ``cap``) white and black where that affine map sends them. Clipping at the image's
    resolution is what a cap on the grid cannot undo: a clipped white next to the mark blurs
    into the grid cells that carry it. (The resize is linear: the clipped pixels' grids are
    added to the image's.)"""
    base = ENCODE_CAPS[0]
    if cap <= base or (clipping.saturated is None and clipping.black is None):
        return []
    saturated = 0.0 if clipping.saturated is None else clipping.saturated
    black = 0.0 if clipping.black is None else clipping.black
    out = []
    if clipping.saturated is not None:
        gain = cap / base
        restored = clipping.grid + (255.0 * gain - 255.0) * saturated
        out.append((f"brightness x{gain:.2f} unclipped", _signal(restored, cap)))
    if base - clipping.mean > 20:
        gain = (cap - clipping.mean) / (base - clipping.mean)
        white, dark = cap + gain * (255.0 - base), cap - gain * base
        restored = clipping.grid + (white - 255.0) * saturated + dark * black
        out.append((f"contrast x{gain:.2f} unclipped", _signal(restored, cap)))
    return out


def _weights(rgb: np.ndarray, cap: float) -> tuple[np.ndarray, np.ndarray]:
    """Where the mark goes: [H, W] the share of the offset each pixel takes (0 where every
    channel is at or near the cap) and [H, W] how much of it reaches the capped luma."""
    share = np.clip((cap - 1 - rgb.min(axis=-1)) / WEIGHT_RAMP, 0, 1)
    return share, share * ((rgb < cap - 1) @ LUMA)


def _projections(signal: np.ndarray) -> tuple[np.ndarray, float]:
    """Projections [NUM_BITS] of a [GRID, GRID] signal, and the band RMS (floored) that
    normalizes them."""
    coeffs = _basis() @ signal.reshape(-1)
    rms = max(float(np.sqrt(np.mean(coeffs**2))), MIN_RMS)
    return _directions() @ coeffs / rms, rms


@dataclass(frozen=True)
class _Attempt:
    """One way of embedding: under ``cap``, on a lattice ``strength`` x STEP apart, offsets
    up to ``max_change`` levels; tried only when ``min_markable`` of the luma is below the cap
    (the last of ``ENCODE_CAPS`` is always tried)."""

    cap: float
    strength: float = 1.0
    max_change: float = MAX_CHANGE
    min_markable: float = MIN_MARKABLE


#: what the embedder tries, in this order (weakest, i.e. least visible, first), until one reads
#: back after its self-test: a gentler lattice, larger offsets for marks that do not fit, a
#: coarser lattice against JPEG, the pale images' cap, and a cap-212 mark crowded into very
#: pale images (whose 250-cap mark a brightening clips)
ATTEMPTS = (
    _Attempt(212.0, 0.8), _Attempt(212.0), _Attempt(212.0, max_change=24.0),
    _Attempt(212.0, 1.25), _Attempt(212.0, 1.25, 24.0), _Attempt(212.0, 1.5),
    _Attempt(212.0, 1.5, 24.0), _Attempt(250.0, 0.8), _Attempt(250.0), _Attempt(250.0, 1.25),
    _Attempt(250.0, 1.5, 24.0), _Attempt(212.0, 1.5, 24.0, min_markable=0.02))
#: the score the mark must keep as embedded (exact: the embedder reads it as the decoder does)
#: and after each simulated edit of the self-test
VERIFY_SCORE = 0.9
SELF_TEST_SCORE = 0.8
#: the lowest PSNR (dB, against the unmarked image) of an attempt taken for robustness once
#: an earlier one reads: a stronger mark must stay out of sight
#: (33 in the first revision; 32 since 2026-12-02: on the crisp retrieval default every JPEG
#: q50 miss was an image whose passing attempt cost 31.9-32.7 dB)
MIN_PSNR = 32.0


def _embed_attempt(rgb: np.ndarray, bits: np.ndarray, attempt: _Attempt) -> np.ndarray:
    """[H, W, 3] rgb (0..255 integers as floats) marked with ``bits`` as ``attempt`` says."""
    cap, step = attempt.cap, STEP * attempt.strength
    height, width = rgb.shape[:2]
    share, reach = _weights(rgb, cap)
    reach_grid = _resize(reach, GRID, GRID).reshape(-1)
    marked = np.clip(np.round(rgb), 0, 255)
    if reach_grid.max() <= 0:  # nothing below the cap (a white image): nowhere to mark
        return marked
    patterns = _patterns()
    # the bits' response to a change of the pixels' offsets, weighted by where it may go
    response = (patterns * reach_grid**2) @ patterns.T
    response += 1e-3 * np.trace(response) / NUM_BITS * np.eye(NUM_BITS)
    offset = np.zeros((height, width))
    target = None
    for _ in range(EMBED_ITERATIONS):
        projections, rms = _projections(_signal(_grid(marked), cap))
        if target is None:  # nearest lattice point coding each bit
            lattice = (_dither() + bits / 2.0) * step
            target = np.round((projections - lattice) / step) * step + lattice
        error = target - projections
        if np.abs(error).max() < 0.02 * step:
            break
        solution = np.linalg.solve(response, error * rms)
        change = ((patterns.T @ solution) * reach_grid).reshape(GRID, GRID)
        offset = np.clip(offset + _resize(change, width, height), -attempt.max_change,
                         attempt.max_change)
        marked = np.clip(np.round(rgb + (offset * share)[..., None]), 0, 255)
    return marked


def _codeword_score(rgb: np.ndarray, signs: np.ndarray, cap: float, unclip: bool = True
                    ) -> float:
    """The best score of the codeword ``signs`` [NUM_BITS] under the cap hypothesis nearest
    to ``cap`` (also with clipping undone, if ``unclip``; every strength and floor gain): what
    the decoder would find there, without search."""
    nearest = min(CAP_HYPOTHESES, key=lambda hypothesis: abs(hypothesis - cap))
    clipping = _Clipping.of(rgb)
    signals = [_signal(clipping.grid, nearest)]
    if unclip:
        signals += [signal for _, signal in _unclipped(clipping, nearest)]
    coeffs = np.stack([signal.reshape(-1) for signal in signals]) @ _basis().T
    projections, _ = _normalized(coeffs, [None] * len(signals))
    return float(np.max(_soft(projections, STEP, _dither()) @ signs) / NUM_BITS)


def _psnr(clean: np.ndarray, marked: np.ndarray) -> float:
    mse = float(np.mean((clean - marked) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _jpeg_rgb(image: Image.Image, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return _to_rgb_array(Image.open(buffer))


def _self_test(marked: np.ndarray, signs: np.ndarray, cap: float
               ) -> tuple[float, float, float]:
    """The mark's scores after JPEG q50, brightness +20 % and contrast +20 % (each read under
    the cap the edit maps ``cap`` to)."""
    image = Image.fromarray(marked.astype(np.uint8), mode="RGB")
    mean = int(ImageStat.Stat(image.convert("L")).mean[0] + 0.5)  # as PIL's contrast does
    edits = ((_jpeg_rgb(image, 50), cap),
             (_to_rgb_array(ImageEnhance.Brightness(image).enhance(1.2)), 1.2 * cap),
             (_to_rgb_array(ImageEnhance.Contrast(image).enhance(1.2)), mean + 1.2 * (cap - mean)))
    jpeg, bright, contrast = (_codeword_score(edited, signs, mapped) for edited, mapped in edits)
    return jpeg, bright, contrast


# ----------------------------------------------------------------- v2: the pale layer
@cache
def _pale_directions() -> np.ndarray:
    """[NUM_BITS, PALE_GRID ** 2] keyed orthonormal directions over every pixel of the pale
    grid, orthogonal to a constant (an offset of the levels never moves them)."""
    size = PALE_GRID * PALE_GRID
    columns = np.concatenate([np.ones((size, 1)) / math.sqrt(size),
                              _rng(KEY, "pale directions").standard_normal((size, NUM_BITS))],
                             axis=1)
    q, _ = np.linalg.qr(columns)
    return np.ascontiguousarray(q[:, 1:].T)


@cache
def _pale_dither() -> np.ndarray:
    return _rng(KEY, "pale dither").random(NUM_BITS)


def _pale_projections(rgb: np.ndarray, gains: tuple[float, ...]) -> np.ndarray:
    """[len(gains), NUM_BITS] the pale layer's projections of ``rgb`` with each brightness gain
    undone: the luma under the cap the gain maps ``PALE_CAP`` to, divided by the gain (a
    brightening scales what lies under the cap and clips only what lay above it)."""
    grid = _resize_rgb(rgb, PALE_GRID, PALE_GRID)
    signals = np.stack([_signal(grid, PALE_CAP * gain).reshape(-1) / gain for gain in gains])
    return signals @ _pale_directions().T


def _embed_pale(rgb: np.ndarray, bits: np.ndarray, band_cap: float | None = None
                ) -> np.ndarray:
    """[H, W, 3] ``rgb`` (integers as floats, marked with the band mark under ``band_cap``)
    with the pale layer added: the payload once more, in directions over *every* pixel (not a
    smooth band), moved onto a lattice by small offsets of the pixels under ``PALE_CAP``; with
    ``band_cap``, solved jointly with keeping the band mark's projections (read under that cap)
    where they are (a costlier change: the few pixels must then also hold the band still).

    Why: a pale emoji (a goose, an egg, a white sign) has almost all of its pixels above the
    caps; a brightening clips them to white, and its few darker pixels, bunched in an outline,
    cannot carry 48 smooth band directions (their restriction to the outline is nearly
    dependent). Directions that vary from pixel to pixel stay independent on any few hundred
    pixels, so the outline carries them with a change of a level or two; the price is that
    this layer survives only pointwise level edits (a resize or JPEG blurs it away), which is
    what the band mark, always there beside it, does not."""
    height, width = rgb.shape[:2]
    share, reach = _weights(rgb, PALE_CAP)
    reach_grid = _resize(reach, PALE_GRID, PALE_GRID).reshape(-1)
    if reach_grid.max() <= 0:
        return rgb
    both = _pale_directions()
    if band_cap is not None:  # and the band's patterns as seen from the pale grid
        down = _resize_matrix(PALE_GRID, GRID)
        both = np.concatenate([both, [(down.T @ pattern.reshape(GRID, GRID) @ down).reshape(-1)
                                      for pattern in _patterns()]])
    response = (both * reach_grid**2) @ both.T
    response += 1e-3 * np.trace(response) / len(both) * np.eye(len(both))
    lattice = (_pale_dither() + bits / 2.0) * PALE_STEP

    def band_coeffs(image: np.ndarray) -> np.ndarray:
        if band_cap is None:
            return np.zeros(0)
        return _patterns() @ _signal(_grid(image), band_cap).reshape(-1)

    band_target = band_coeffs(rgb)
    offset = np.zeros((height, width))
    marked, target = rgb, None
    for _ in range(2 * EMBED_ITERATIONS):
        projections = _pale_projections(marked, (1.0,))[0]
        if target is None:
            target = np.round((projections - lattice) / PALE_STEP) * PALE_STEP + lattice
        error = target - projections
        if np.abs(error).max() < 0.02 * PALE_STEP:
            break
        error = np.concatenate([error, band_target - band_coeffs(marked)])
        change = (both.T @ np.linalg.solve(response, error)) * reach_grid
        offset = np.clip(offset + _resize(change.reshape(PALE_GRID, PALE_GRID), width, height),
                         -PALE_MAX_CHANGE, PALE_MAX_CHANGE)
        marked = np.clip(np.round(rgb + (offset * share)[..., None]), 0, 255)
    return marked


def _pale_soft(rgb: np.ndarray, gains: tuple[float, ...] = PALE_GAINS) -> np.ndarray:
    return _soft(_pale_projections(rgb, gains), PALE_STEP, _pale_dither())


def _brightened(rgb: np.ndarray, gain: float) -> np.ndarray:
    image = Image.fromarray(rgb.astype(np.uint8), mode="RGB")
    return _to_rgb_array(ImageEnhance.Brightness(image).enhance(gain))


def _pale_score_brightened(layered: np.ndarray, signs: np.ndarray) -> float:
    """The pale layer's best score for the codeword ``signs`` after a 20 % brightening (the
    embedder's self-test of the layer)."""
    return float(np.max(_pale_soft(_brightened(layered, 1.2)) @ signs) / NUM_BITS)


def _pale_layered(marked: np.ndarray, model_id: int, band_cap: float
                  ) -> tuple[np.ndarray, float] | None:
    """``marked`` with the pale layer and the layer's score after a 20 % brightening, if that
    reaches ``SELF_TEST_SCORE`` and the band mark still reads as is; else None."""
    signs = 1.0 - 2.0 * payload_bits(model_id)
    for keep in (None, band_cap):  # first without holding the band still, which costs more
        layered = _embed_pale(marked, payload_bits(model_id), keep)
        score = _pale_score_brightened(layered, signs)
        if score >= SELF_TEST_SCORE and _reads_as_is(layered, model_id):
            return layered, score
    return None


def _detect_pale(rgb: np.ndarray, expected_id: int | None) -> WatermarkResult:
    soft = _pale_soft(rgb)
    names: list[str | None] = [f"pale layer, brightness x{gain:g}" for gain in PALE_GAINS]
    return _decode(soft, names, THRESHOLD, expected_id, SCHEME)


def embed(image: Image.Image, model_id: int) -> Image.Image:
    """``image`` with the ganforge mark for ``model_id`` (an RGB image of the same size).

    Tries ``ATTEMPTS`` in turn and keeps the first whose mark reads back as embedded
    (``VERIFY_SCORE``) and after the self-test's edits (``SELF_TEST_SCORE``); an attempt whose
    band mark a brightening defeats gets the pale layer, which then stands in for it, and
    among such passes the one that changes the image least is kept; else the one that
    survives them best (of those within ``MIN_PSNR``, but the first that reads); else
    (no attempt reads back) the first scheme's mark, if that reads; else the image unchanged
    (nothing to mark: a white image)."""
    rgb = np.clip(np.round(_to_rgb_array(image)), 0, 255)
    bits = payload_bits(model_id)
    signs = 1.0 - 2.0 * bits
    best: tuple[float, np.ndarray, float, bool] | None = None  # score, mark, cap, unlayered
    passing: list[tuple[float, np.ndarray]] = []  # PSNR, mark
    for attempt in ATTEMPTS:
        if (attempt.cap != ENCODE_CAPS[-1]
                and _weights(rgb, attempt.cap)[1].mean() < attempt.min_markable):
            continue
        marked = _embed_attempt(rgb, bits, attempt)
        if _codeword_score(marked, signs, attempt.cap, unclip=False) < VERIFY_SCORE:
            continue
        if best is not None and _psnr(rgb, marked) < MIN_PSNR:
            continue  # readability may cost that much; robustness alone may not
        jpeg, bright, contrast = _self_test(marked, signs, attempt.cap)
        unlayered = needs_layer = bright < SELF_TEST_SCORE
        if needs_layer and (min(jpeg, contrast) >= SELF_TEST_SCORE
                        or best is None or min(jpeg, contrast) > best[0]):
            # a brightening loses it (a pale image): the pale layer may carry that, and then
            # this attempt needs no stronger (more visible) band mark
            with_layer = _pale_layered(marked, model_id, attempt.cap)
            if with_layer is not None:
                (marked, bright), unlayered = with_layer, False
        score = min(jpeg, bright, contrast)
        if best is None or score > best[0]:
            best = (score, marked, attempt.cap, unlayered)
        if score >= SELF_TEST_SCORE:
            passing.append((_psnr(rgb, marked), marked))
            if not needs_layer:
                break  # weakest first: the first band mark that passes is the one
            # a pass thanks to the pale layer: attempts are ordered by cap first, so a later
            # one (another cap) may pass with less change; the least change is kept below
    if passing:  # (its cap is not needed: a passing mark needs no layer added)
        best = (SELF_TEST_SCORE, max(passing, key=lambda entry: entry[0])[1], 0.0, False)
    out_rgb = rgb
    if best is not None and _reads_as_is(best[1], model_id):
        out_rgb = best[1]
        if best[3]:  # a brightening loses its band mark: the pale layer, if it helps
            out_rgb = (_pale_layered(out_rgb, model_id, best[2]) or (out_rgb,))[0]
    elif _weights(rgb, ENCODE_CAPS[-1])[1].max() > 0:  # else nowhere to mark (white)
        fallback = _to_rgb_array(embed_v1(image, model_id))
        if _reads(_detect_v1(fallback, model_id, search_crops=False), model_id):
            out_rgb = fallback
            # the pale layer does not depend on the band mark: it carries a brightening here too
            layered = _embed_pale(fallback, bits)
            if (_pale_score_brightened(layered, signs) >= SELF_TEST_SCORE
                    and _reads(_detect_v1(layered, model_id, search_crops=False), model_id)):
                out_rgb = layered
    out = Image.fromarray(out_rgb.astype(np.uint8), mode="RGB")
    out.info.update(image.info)
    return out


def _reads(result: WatermarkResult, model_id: int) -> bool:
    return result.found and result.model_id == model_id


def _reads_as_is(rgb: np.ndarray, model_id: int) -> bool:
    """Whether :func:`detect` finds ``model_id`` in ``rgb`` as it is: the decoder's first
    step, whose finding no other hypothesis overrides."""
    grid = _grid(rgb)
    coeffs = np.stack([_signal(grid, cap).reshape(-1) for cap in ENCODE_CAPS]) @ _basis().T
    projections, names = _normalized(coeffs, [None] * len(ENCODE_CAPS))
    soft = _soft(projections, STEP, _dither())
    return _reads(_decode(soft, names, THRESHOLD, model_id, SCHEME), model_id)


# --------------------------------------------------------------------------- reading
@dataclass
class WatermarkResult:
    """What :func:`detect` found in an image."""

    found: bool
    score: float  # mean agreement of the best codeword's soft bits, in [-1, 1]
    model_id: int | None  # the decoded id (also when not found: then it means nothing)
    bit_accuracy: float | None  # only when the expected id was given
    undone: str | None  # the edit undone to read the mark (a crop, a level change)
    scheme: str = SCHEME

    def as_dict(self) -> dict[str, Any]:
        return {"found": self.found, "scheme": self.scheme, "score": round(self.score, 4),
                "threshold": V1_THRESHOLD if self.scheme == SCHEME_V1 else THRESHOLD,
                "model_id": f"{self.model_id:04x}" if self.found and self.model_id is not None
                else None,
                "undone": self.undone}


def _hypotheses(rgb: np.ndarray, search_crops: bool) -> list[tuple[str | None, np.ndarray]]:
    """Candidate [GRID, GRID] signals, each with the edit it undoes: the image under every
    cap a level change can have moved the encoder's to (with clipped pixels put back, for
    raising edits); under the encoder's caps with a gamma or a small rotation undone; as a
    crop of the marked one at several sizes and positions (the lost border filled with the
    median border colour: the mark keeps away from the border), under the encoder's caps."""
    grid = _grid(rgb)
    out: list[tuple[str | None, np.ndarray]] = [(None, _signal(grid, cap)) for cap in ENCODE_CAPS]
    if grid.max() > CAP_HYPOTHESES[0]:
        clipping = _Clipping.of(rgb, grid)
        for cap in CAP_HYPOTHESES:
            if cap not in ENCODE_CAPS:
                out.append((f"levels (cap {cap:g})", _signal(grid, cap)))
            out += [(f"{name} (cap {cap:g})", signal)
                    for name, signal in _unclipped(clipping, cap)]
    for gamma in GAMMA_HYPOTHESES:
        undone = _grid(255.0 * (rgb / 255.0) ** (1.0 / gamma))
        out += [(f"gamma {gamma:g} (cap {cap:g})", _signal(undone, cap)) for cap in ENCODE_CAPS]
    image = Image.fromarray(np.clip(np.round(rgb), 0, 255).astype(np.uint8), mode="RGB")
    fill = tuple(int(v) for v in np.median(_border(rgb), axis=0))
    for angle in ROTATION_HYPOTHESES:
        undone = _grid(_to_rgb_array(image.rotate(-angle, Image.Resampling.BICUBIC,
                                                  fillcolor=fill)))
        out += [(f"rotation {angle:+g} deg (cap {cap:g})", _signal(undone, cap))
                for cap in ENCODE_CAPS]
    if not search_crops:
        return out
    canvas_rgb = _resize_rgb(rgb, CANVAS, CANVAS)
    fill = np.median(_border(canvas_rgb), axis=0)
    for fraction in CROP_FRACTIONS:
        side = round(CANVAS * fraction)
        inner = _resize_rgb(canvas_rgb, side, side)
        for top in range(CANVAS - side + 1):
            for left in range(CANVAS - side + 1):
                canvas = np.empty((CANVAS, CANVAS, 3))
                canvas[:] = fill
                canvas[top:top + side, left:left + side] = inner
                cropped = _grid(canvas)
                name = f"crop {fraction:g} at ({top / CANVAS:.2f}, {left / CANVAS:.2f})"
                out += [(name, _signal(cropped, cap)) for cap in ENCODE_CAPS]
    return out


def _border(rgb: np.ndarray) -> np.ndarray:
    """[K, 3] the pixels of an image's outermost rows and columns."""
    return np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])


def _normalized(coeffs: np.ndarray, names: list[str | None]
                ) -> tuple[np.ndarray, list[str | None]]:
    """Projections [K, NUM_BITS] of band coefficients [H, N] divided by the band RMS and by
    each of ``STRENGTHS`` (the lattice is read in units of STEP); where the floor ``MIN_RMS``
    applied, a gain no longer cancels, so the floor is also tried scaled by each of
    ``GAIN_HYPOTHESES``. A row keeps its hypothesis's name at gain 1 (any strength)."""
    rms = np.sqrt(np.mean(coeffs**2, axis=1))
    projections = coeffs @ _directions().T
    rows, labels = [], []
    for row, (value, name) in enumerate(zip(rms, names, strict=True)):
        plain = max(float(value), MIN_RMS)
        norms = sorted({max(float(value), MIN_RMS * gain) for gain in GAIN_HYPOTHESES})
        for strength in STRENGTHS:
            for norm in norms:
                rows.append(projections[row] / (norm * strength))
                labels.append(name if norm == plain else
                              f"{name or 'as is'}, floor x{norm / MIN_RMS:.2f}")
    return np.array(rows), labels


def _detect_v2(rgb: np.ndarray, expected_id: int | None, search_crops: bool) -> WatermarkResult:
    hypotheses = _hypotheses(rgb, search_crops)
    signals = np.stack([signal.reshape(-1) for _, signal in hypotheses])
    projections, names = _normalized(signals @ _basis().T, [name for name, _ in hypotheses])
    soft = _soft(projections, STEP, _dither())
    return _decode(soft, names, THRESHOLD, expected_id, SCHEME)


def _decode(soft: np.ndarray, names: list[str | None], threshold: float,
            expected_id: int | None, scheme: str) -> WatermarkResult:
    """The best codeword over the few readings of the image as it is (the hypotheses named
    None: caps and strengths of the encoder) and the few other hypotheses with the best tag
    scores; as it is (its best reading) wins whenever it is found."""
    tag_scores = soft[:, :16] @ _tag_signs()
    ranked = [int(i) for i in np.argsort(-tag_scores, kind="stable")]
    plain = [i for i in ranked if names[i] is None][:PLAIN_HYPOTHESES]
    order = plain + [i for i in ranked if names[i] is not None][:TOP_HYPOTHESES - 1]
    scores, ids = _best_codewords(soft[order])
    found_plain = [i for i in range(len(plain)) if scores[i] >= threshold]
    best = (max(found_plain, key=lambda i: scores[i]) if found_plain
            else int(np.argmax(scores)))
    score, model_id, index = float(scores[best]), int(ids[best]), order[best]
    accuracy = None
    if expected_id is not None:
        accuracy = float(np.mean((soft[index] < 0) == payload_bits(expected_id).astype(bool)))
    return WatermarkResult(found=score >= threshold, score=score, model_id=model_id,
                           bit_accuracy=accuracy, undone=names[index], scheme=scheme)


def detect(image: Image.Image, expected_id: int | None = None,
           search_crops: bool = True) -> WatermarkResult:
    """Look for the ganforge mark in ``image`` (any size, any mode): the current scheme's band
    mark first, then the first scheme's (images marked before v2, and v2's fallback), then the
    pale layer."""
    rgb = _to_rgb_array(image)
    result = _detect_v2(rgb, expected_id, search_crops)
    if result.found:
        return result
    old = _detect_v1(rgb, expected_id, search_crops)
    if old.found:
        return old
    pale = _detect_pale(rgb, expected_id)  # last: it only undoes brightenings
    return pale if pale.found else result


def bit_accuracy(image: Image.Image, model_id: int, search_crops: bool = True) -> float:
    """Share of the 48 payload bits read correctly from ``image`` marked for ``model_id``."""
    result = detect(image, expected_id=model_id, search_crops=search_crops)
    assert result.bit_accuracy is not None
    return result.bit_accuracy


@cache
def _score_tail(threshold: float, num_bits: int) -> float:
    """P(mean of ``num_bits`` independent cos(2 pi U), U uniform, >= threshold): the chance
    that one codeword scores ``threshold`` on an unmarked image, by exact convolution of the
    arcsine law on 0.005-wide bins, each value rounded up (so an upper bound)."""
    width = 0.005
    edges = np.arange(-1.0, 1.0 + width / 2, width)
    cdf = 1 - np.arccos(np.clip(edges, -1, 1)) / np.pi
    single = np.diff(cdf)  # bin i holds values up to edges[i + 1] = -1 + (i + 1) * width
    size = num_bits * (len(single) - 1) + 1
    spectrum = np.fft.rfft(single, 2 ** math.ceil(math.log2(size)))
    total = np.clip(np.fft.irfft(spectrum**num_bits)[:size], 0, None)
    sums = num_bits * (-1 + width) + np.arange(size) * width  # each bin at its upper edge
    return float(total[sums >= threshold * num_bits - 1e-9].sum())


def decoding_grids(search_crops: bool = True) -> int:
    """How many normalized projections the v2 decoder scores at most (caps, caps with
    clipping undone, gammas, rotations, crops; each by floor gain and strength; and the pale
    layer's brightness gains)."""
    raised = sum(cap > ENCODE_CAPS[0] for cap in CAP_HYPOTHESES)
    grids = len(CAP_HYPOTHESES) + 2 * raised + (
        len(GAMMA_HYPOTHESES) + len(ROTATION_HYPOTHESES)) * len(ENCODE_CAPS)
    if search_crops:
        grids += len(ENCODE_CAPS) * sum((CANVAS - round(CANVAS * f) + 1) ** 2
                                        for f in CROP_FRACTIONS)
    return grids * len(GAIN_HYPOTHESES) * len(STRENGTHS) + len(PALE_GAINS)


def false_positive_bound(threshold: float = THRESHOLD) -> float:
    """Upper bound on the chance that an unmarked image is reported as marked.

    Under no mark each soft bit is cos of a uniform phase (the projections of real images
    spread over many lattice steps; the bits' directions are orthonormal, taken as
    independent), so one codeword's score follows the mean of ``NUM_BITS`` arcsine variables
    (:func:`_score_tail`, exact up to binning). Decoding tries 65536 codewords on every
    candidate projection (:func:`decoding_grids`; a union bound, so pessimistic where they are
    correlated), and the v1 decoder runs when v2 finds nothing (its own bound is added). The
    pale layer's readings count as grids too; a flat image projects to exactly zero in its
    directions, which gives one fixed score (0.41, tested) rather than a random one."""
    v2 = _score_tail(round(threshold, 6), NUM_BITS) * (1 << 16) * decoding_grids()
    return min(1.0, v2 + _false_positive_bound_v1())


def describe(model_id: int) -> str:
    """What ``image.info`` and PNG metadata record for an image marked with ``model_id``."""
    return f"{SCHEME} model={model_id:04x}"


def mark_images(images: list[Image.Image], model_id: int | None) -> list[Image.Image]:
    """Mark each image for ``model_id``, or (``None``) only record that it is unmarked."""
    out = [embed(image, model_id) if model_id is not None else image for image in images]
    for image in out:
        image.info[INFO_KEY] = describe(model_id) if model_id is not None else "none"
    return out


# ------------------------------------------------- v1: still read, no longer embedded
V1_GRID = 64
V1_STEP = 0.18
V1_THRESHOLD = 0.7
V1_MIN_RMS = 2.0
V1_GAINS = (1.1, 1.2, 1.3)  # brightness gains undone when an image has saturated pixels
V1_CROP_FRACTIONS = (0.95, 0.9)


@cache
def _v1_basis() -> np.ndarray:
    """[N, 64 * 64] v1's orthonormalized windowed band (3 <= u + v <= 22, both < 20)."""
    q, _ = np.linalg.qr(_band_images(V1_GRID, 20, 22, _window(V1_GRID, 7, 4)).T)
    return np.ascontiguousarray(q.T)


@cache
def _v1_directions() -> np.ndarray:
    gauss = _rng(KEY_V1, "directions").standard_normal((len(_v1_basis()), NUM_BITS))
    q, _ = np.linalg.qr(gauss)
    return np.ascontiguousarray(q.T)


@cache
def _v1_dither() -> np.ndarray:
    return _rng(KEY_V1, "dither").random(NUM_BITS)


def embed_v1(image: Image.Image, model_id: int) -> Image.Image:
    """``image`` marked with the first scheme (kept to check that such images still read)."""
    rgb = _to_rgb_array(image)
    height, width = rgb.shape[:2]
    bits = payload_bits(model_id)
    target = None
    marked = np.clip(np.round(rgb), 0, 255)
    for _ in range(6):
        coeffs = _v1_basis() @ _resize(marked @ LUMA, V1_GRID, V1_GRID).reshape(-1)
        rms = max(float(np.sqrt(np.mean(coeffs**2))), V1_MIN_RMS)
        projections = _v1_directions() @ coeffs / rms
        if target is None:
            lattice = (_v1_dither() + bits / 2.0) * V1_STEP
            target = np.round((projections - lattice) / V1_STEP) * V1_STEP + lattice
        error = target - projections
        if np.abs(error).max() < 0.02 * V1_STEP:
            break
        change = (_v1_basis().T @ (_v1_directions().T @ (error * rms))).reshape(V1_GRID, V1_GRID)
        marked = np.clip(np.round(marked + _resize(change, width, height)[..., None]), 0, 255)
    out = Image.fromarray(marked.astype(np.uint8), mode="RGB")
    out.info.update(image.info)
    return out


def _v1_hypotheses(rgb: np.ndarray, search_crops: bool) -> list[tuple[str | None, np.ndarray]]:
    """v1's candidate 64x64 luma grids: as is; brightness gains undone on saturated
    channels; crops at several sizes and positions."""
    luma = rgb @ LUMA
    out: list[tuple[str | None, np.ndarray]] = [(None, _resize(luma, V1_GRID, V1_GRID))]
    if not search_crops:
        return out
    saturated = rgb >= 254.5
    if saturated.any():
        for gain in V1_GAINS:
            undone = np.where(saturated, 255.0 * gain, rgb) @ LUMA
            out.append((f"brightness x{gain:g}", _resize(undone, V1_GRID, V1_GRID)))
    fill = float(np.median(np.concatenate([luma[0], luma[-1], luma[:, 0], luma[:, -1]])))
    for fraction in V1_CROP_FRACTIONS:
        side = round(V1_GRID * fraction)
        inner = _resize(luma, side, side)
        for top in range(V1_GRID - side + 1):
            for left in range(V1_GRID - side + 1):
                canvas = np.full((V1_GRID, V1_GRID), fill)
                canvas[top:top + side, left:left + side] = inner
                out.append((f"crop {fraction:g} at ({top / V1_GRID:.2f}, "
                            f"{left / V1_GRID:.2f})", canvas))
    return out


def _detect_v1(rgb: np.ndarray, expected_id: int | None, search_crops: bool) -> WatermarkResult:
    hypotheses = _v1_hypotheses(rgb, search_crops)
    coeffs = np.stack([grid.reshape(-1) for _, grid in hypotheses]) @ _v1_basis().T
    rms = np.maximum(np.sqrt(np.mean(coeffs**2, axis=1, keepdims=True)), V1_MIN_RMS)
    soft = _soft(coeffs @ _v1_directions().T / rms, V1_STEP, _v1_dither())
    return _decode(soft, [name for name, _ in hypotheses], V1_THRESHOLD, expected_id, SCHEME_V1)


def _false_positive_bound_v1() -> float:
    grids = 1 + len(V1_GAINS) + sum((V1_GRID - round(V1_GRID * f) + 1) ** 2
                                    for f in V1_CROP_FRACTIONS)
    return _score_tail(V1_THRESHOLD, NUM_BITS) * (1 << 16) * grids


#: saved kinds whose outputs are watermarked (the tools beside them are not generators)
GENERATOR_KINDS = ("dfgan", "ragan", "maskgit", "cyclegan", "unit", "pix2pix", "stargan", "esrgan")


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
