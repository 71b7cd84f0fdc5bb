"""Several image domains (styles) for one multi-domain translator, and a synthetic set of them.

A sample is one image and the index of its domain. Each batch also carries, for a target
domain drawn at random per sample, two reference images of that domain (StarGAN v2 needs
them for reference-guided styles and for the diversity loss).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import torch

from ganforge.data.datasets import random_flip, spread
from ganforge.data.images import ImageFolder, uint8_to_float
from ganforge.data.synthetic import draw_shapes, random_layout
from ganforge.errors import ConfigError

#: (background, two shape colours) per synthetic domain: the same layout in three palettes
PALETTES: dict[str, tuple[tuple[int, int, int], list[tuple[int, int, int]]]] = {
    "warm": ((250, 230, 200), [(200, 30, 30), (240, 150, 20)]),
    "cool": ((200, 225, 250), [(20, 60, 200), (20, 160, 160)]),
    "dark": ((40, 40, 40), [(250, 250, 250), (150, 220, 60)]),
}


def domain_names(folders: Sequence[str | Path], names: Sequence[str] = ()) -> list[str]:
    """Names of the domains: ``names`` when given, else the folders' names. When those collide
    (``google/64``, ``twitter/64``) the first level up whose names all differ is used."""
    if names:
        if len(names) != len(folders):
            raise ConfigError(f"--domain-names gives {len(names)} name(s) for {len(folders)} "
                              "--domains folders; give one name per folder")
        chosen = list(names)
    else:
        paths = [Path(f).resolve() for f in folders]
        depth = min(len(p.parts) for p in paths)
        chosen = []
        for level in range(1, depth):
            candidate = [p.parts[-level] for p in paths]
            if len(set(candidate)) == len(candidate):
                chosen = candidate
                break
        if not chosen:
            raise ConfigError(f"the --domains folders {', '.join(map(str, folders))} cannot be "
                              "told apart by name; pass --domain-names")
    for name in chosen:
        if not name or not all(ch.isalnum() or ch in "-_" for ch in name):
            raise ConfigError(f"domain name {name!r} must be letters, digits, '-' or '_'")
    if len(set(chosen)) != len(chosen):
        raise ConfigError(f"domain names must differ, got {', '.join(chosen)}")
    return chosen


class MultiDomainImages:
    """Images of several domains, one index space over all of them.

    ``batch`` gives {"images": [B, 3, H, W] in [-1, 1], "domains": [B] long, "target_domains":
    [B] long, "references", "references2": [B, 3, H, W] images of each sample's target domain}.
    Target domains, references and flips come from the global torch RNG, which the loop seeds
    and checkpoints, so resuming is exact.
    """

    def __init__(self, folders: Sequence[ImageFolder], names: Sequence[str], flip: bool = True):
        if len(folders) != len(names):
            raise ConfigError(f"{len(folders)} image folders but {len(names)} domain names")
        self.folders, self.names, self.flip = list(folders), list(names), flip
        self.images = torch.cat([f.images for f in self.folders])  # uint8 [N, 3, H, W]
        self.domains = torch.cat([torch.full((len(f),), k, dtype=torch.long)
                                  for k, f in enumerate(self.folders)])
        self.offsets = torch.tensor([0, *torch.tensor([len(f) for f in self.folders])
                                     .cumsum(0).tolist()])

    def __len__(self) -> int:
        return len(self.images)

    def _references(self, domains: torch.Tensor) -> torch.Tensor:
        """One random image of each domain in ``domains`` [B] -> uint8 [B, 3, H, W]."""
        counts = (self.offsets[1:] - self.offsets[:-1])[domains]
        picks = self.offsets[domains] + (torch.rand(len(domains)) * counts).long()
        return self.images[picks]

    def _float(self, images: torch.Tensor) -> torch.Tensor:
        return uint8_to_float(random_flip(images) if self.flip else images)

    def batch(self, indices: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
        del epoch  # the sampler already shuffles per epoch
        indices = indices.long()
        target = torch.randint(len(self.folders), (len(indices),))
        return {"images": self._float(self.images[indices]), "domains": self.domains[indices],
                "target_domains": target,
                "references": self._float(self._references(target)),
                "references2": self._float(self._references(target))}

    def preview(self, count: int) -> dict[str, torch.Tensor]:
        """``count`` images spread over every domain, each with a reference of the next one."""
        per = [spread(len(f), max(1, count // len(self.folders))) for f in self.folders]
        index = torch.cat([self.offsets[k] + p for k, p in enumerate(per)])[:count]
        target = (self.domains[index] + 1) % len(self.folders)
        ref = self.offsets[target] + torch.arange(len(index)) % (self.offsets[target + 1]
                                                                  - self.offsets[target])
        return {"images": uint8_to_float(self.images[index]), "domains": self.domains[index],
                "target_domains": target, "references": uint8_to_float(self.images[ref])}


def write_palette_domains(out: str | Path, count: int = 200, size: int = 32, seed: int = 0,
                          palettes: Sequence[str] = tuple(PALETTES)) -> list[Path]:
    """Write ``count`` layouts drawn in each palette to OUT/<palette>/ (same file names, so the
    true translation of every image is known); return the folders."""
    out, rng = Path(out), random.Random(seed)
    folders = [out / name for name in palettes]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        layout = random_layout(rng, size)
        for name, folder in zip(palettes, folders, strict=True):
            draw_shapes(layout, size, name, PALETTES).save(folder / f"shape_{i:05d}.png")
    return folders
