"""Paired translation error: a translator scored against the true target images.

Pairs are files with the same relative name (suffix ignored) in a source and a target folder.
The identity map (source image taken as its own translation) is the baseline every translator
must beat.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ganforge.data.images import parse_color
from ganforge.data.paired import load_pairs, pair_by_name
from ganforge.errors import MissingDependency
from ganforge.metrics.fid import InceptionFeatures, fid_from_features, kid_from_features
from ganforge.metrics.image import l1, psnr, ssim
from ganforge.pipelines.image_to_image import ImageToImagePipeline


@dataclass
class TranslationReport:
    """Mean paired metrics of the translation and of the identity baseline, plus FID/KID."""

    count: int
    direction: str
    translation: dict[str, float]
    identity: dict[str, float]
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "direction": self.direction,
                "translation": self.translation, "identity": self.identity, "notes": self.notes}

    def table(self) -> str:
        """A plain-text table: one row per metric, translation beside identity."""
        lines = [f"{self.count} paired images, direction {self.direction}",
                 f"{'metric':<10}{'translation':>14}{'identity':>14}"]
        for key in self.translation:
            lines.append(f"{key:<10}{self.translation[key]:>14.4f}"
                         f"{self.identity.get(key, float('nan')):>14.4f}")
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


def paired_files(source: str | Path, target: str | Path) -> list[tuple[Path, Path]]:
    """(source, target) files sharing a relative name without suffix, sorted; names on one
    side only are reported in a warning (``ganforge.data.paired.pair_by_name``)."""
    return pair_by_name(source, target).pairs


@torch.no_grad()
def evaluate_translation(pipe: ImageToImagePipeline, source: str | Path, target: str | Path,
                         direction: str = "a2b", fid_weights: str | Path | None = None,
                         batch_size: int = 32, progress: bool = True) -> TranslationReport:
    """L1, PSNR and SSIM of ``pipe``'s translation of ``source`` against ``target`` (paired),
    the same for the identity map, and FID/KID of both against the target images."""
    pairs = paired_files(source, target)
    background = parse_color(pipe.background)
    src, tgt, _ = load_pairs(pairs, pipe.size, background)
    to_unit = lambda x: x.float().div(255.0)  # noqa: E731
    fakes = []
    for chunk in tqdm(src.split(batch_size), disable=not progress, desc="translating"):
        fakes.append(pipe.translate_tensor(chunk.float().div(127.5).sub(1), direction)
                     .add(1).div(2).cpu())
    fake = torch.cat(fakes)
    real, ident = to_unit(tgt), to_unit(src)

    def paired(pred: torch.Tensor) -> dict[str, float]:
        return {"l1": float(l1(pred, real).mean()), "psnr": float(psnr(pred, real).mean()),
                "ssim": float(ssim(pred, real).mean())}

    report = TranslationReport(len(real), direction, paired(fake), paired(ident))
    try:
        features = InceptionFeatures.load(fid_weights, device=pipe.device)
    except MissingDependency as exc:
        report.notes.append(f"FID/KID not computed: {exc}")
        return report
    feats = {name: features.features_of(x, batch_size, progress)
             for name, x in (("real", real), ("fake", fake), ("identity", ident))}
    for name, side in (("fake", report.translation), ("identity", report.identity)):
        side["fid"] = fid_from_features(feats[name], feats["real"])
        side["kid"] = kid_from_features(feats[name], feats["real"])[0]
    if len(real) < 2048:
        report.notes.append(f"FID from {len(real)} images is biased upwards (2048-d features); "
                            "compare only runs scored on the same images")
    return report
