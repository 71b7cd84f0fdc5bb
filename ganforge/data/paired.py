"""Paired image domains: files matched by name across two folders, loaded side by side.

A pair is a file in folder A and a file in folder B with the same relative name without its
suffix (``x/heart.png`` pairs with ``x/heart.webp``; in flat folders that is the stem). Names
found on one side only are reported, never dropped in silence.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ganforge.data.datasets import spread
from ganforge.data.images import ImageFolder, list_images, uint8_to_float
from ganforge.errors import DataError

#: how many unmatched names a report spells out
EXAMPLES = 5


@dataclass
class Pairing:
    """Files of two folders matched by name: ``pairs`` and the names left on each side."""

    a_root: Path
    b_root: Path
    pairs: list[tuple[Path, Path]]
    only_a: list[str]
    only_b: list[str]

    def report(self) -> str | None:
        """One line naming counts and a few examples of unmatched names; None if all pair."""
        if not self.only_a and not self.only_b:
            return None
        parts = []
        for root, names in ((self.a_root, self.only_a), (self.b_root, self.only_b)):
            if names:
                shown = ", ".join(names[:EXAMPLES]) + (", ..." if len(names) > EXAMPLES else "")
                parts.append(f"{len(names)} file(s) only in {root} ({shown})")
        return (f"{len(self.pairs)} pairs matched by name; not paired and not used: "
                + "; ".join(parts))


def _by_name(folder: str | Path) -> dict[str, Path]:
    root = Path(folder)
    named: dict[str, Path] = {}
    for path in list_images(root):
        key = path.relative_to(root).with_suffix("").as_posix()
        if key in named:
            raise DataError(f"{named[key]} and {path} have the same name {key!r}: a pair "
                            f"must be unambiguous; keep one of them")
        named[key] = path
    return named


def pair_by_name(a_folder: str | Path, b_folder: str | Path, warn: bool = True) -> Pairing:
    """Match the images of two folders (nested folders included) by relative name without
    suffix. Raises DataError when no name is shared; warns (``warn``) about unmatched names."""
    a, b = _by_name(a_folder), _by_name(b_folder)
    common = sorted(set(a) & set(b))
    if not common:
        raise DataError(f"no paired images: {a_folder} ({len(a)} images, e.g. "
                        f"{', '.join(sorted(a)[:3])}) and {b_folder} ({len(b)} images, e.g. "
                        f"{', '.join(sorted(b)[:3])}) share no file names")
    pairing = Pairing(Path(a_folder), Path(b_folder), [(a[k], b[k]) for k in common],
                      sorted(set(a) - set(b)), sorted(set(b) - set(a)))
    message = pairing.report()
    if warn and message:
        warnings.warn(message, stacklevel=2)
    return pairing


def load_pairs(pairs: list[tuple[Path, Path]], size: int, background: tuple[int, int, int],
               allow_upscale: bool = False) -> tuple[torch.Tensor, torch.Tensor, list[Path]]:
    """Both sides as uint8 [N, 3, size, size] (transparency composited onto ``background``),
    plus the A paths kept. A pair with an unreadable side is named in a warning and left out."""
    a = ImageFolder.load(pairs[0][0].parent, size, background, allow_upscale,
                         files=[p for p, _ in pairs])
    b = ImageFolder.load(pairs[0][1].parent, size, background, allow_upscale,
                         files=[q for _, q in pairs])
    index_a = {p: i for i, p in enumerate(a.paths)}
    index_b = {q: i for i, q in enumerate(b.paths)}
    keep = [(index_a[p], index_b[q], p) for p, q in pairs if p in index_a and q in index_b]
    if len(keep) < len(pairs):
        warnings.warn(f"{len(pairs) - len(keep)} pair(s) left out: one side unreadable",
                      stacklevel=2)
    if not keep:
        raise DataError(f"none of the {len(pairs)} pairs could be read on both sides")
    ia = torch.tensor([i for i, _, _ in keep])
    ib = torch.tensor([j for _, j, _ in keep])
    return a.images[ia], b.images[ib], [p for _, _, p in keep]


class PairedImages:
    """Aligned image pairs: batch {"a": [B,3,H,W], "b": [B,3,H,W]} in [-1, 1], row i of "a"
    the input whose true translation is row i of "b".

    Augmentation keeps pairs aligned: each pair gets one random shift of up to ``jitter``
    pixels (edges replicated, as an emoji's flat background continues) and one random flip,
    applied to both sides. Randomness is the global torch RNG, which the loop checkpoints.
    """

    def __init__(self, a: torch.Tensor, b: torch.Tensor, flip: bool = True, jitter: int = 0):
        if a.shape != b.shape:
            raise DataError(f"paired images differ in shape: {tuple(a.shape)} vs "
                            f"{tuple(b.shape)}")
        self.a, self.b, self.flip, self.jitter = a, b, flip, jitter

    def __len__(self) -> int:
        return len(self.a)

    def _augment(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """a, b: uint8 [B, 3, S, S] -> the same shifts and flips applied to both."""
        size, j = a.shape[-1], self.jitter
        if j > 0:
            pairs = torch.cat([a, b], 1).float()  # [B, 6, S, S]: one shift for both sides
            padded = F.pad(pairs, (j, j, j, j), mode="replicate")
            offsets = torch.randint(2 * j + 1, (len(a), 2))
            pairs = torch.stack([padded[i, :, top:top + size, left:left + size]
                                 for i, (top, left) in enumerate(offsets.tolist())])
            a, b = pairs.to(torch.uint8).split(3, 1)
        if self.flip:
            flips = torch.rand(len(a)) < 0.5
            a, b = a.clone(), b.clone()
            a[flips], b[flips] = a[flips].flip(-1), b[flips].flip(-1)
        return a, b

    def batch(self, indices: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
        a, b = self._augment(self.a[indices], self.b[indices])
        return {"a": uint8_to_float(a), "b": uint8_to_float(b)}

    def preview(self, count: int) -> dict[str, torch.Tensor]:
        index = spread(len(self), count)
        return {"a": uint8_to_float(self.a[index]), "b": uint8_to_float(self.b[index])}
