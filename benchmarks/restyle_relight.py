"""How far does a procedural "inflate and light" get towards Fluent 3D, beside our trained restyle?

A measurement, not a model: each flat emoji is shrunk to 0.875 of its size (Fluent 3D draws its
subjects smaller), its silhouette is inflated (a height field rising over ``radius`` px from the
edge, plus a small bevel at every colour boundary), and it is lit (ambient + Lambert diffuse +
Blinn-Phong specular, light from the upper left), rendered at 4x and reduced. Scored like the
shipped restyle model on the validation pairs (FID against the true 3D images, L1 and SSIM).

    OMP_NUM_THREADS=2 python benchmarks/restyle_relight.py --pairs /tmp/restyle/val \
        --model ganforge/assets/restyle-3d-64 --grid docs/images/restyle_relight_experiment.png

``--pairs`` is a folder with ``a/`` (flat inputs) and ``b/`` (true 3D, same file names), as
``benchmarks/restyle_emoji.py`` writes them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from ganforge.metrics.fid import InceptionFeatures, fid_from_features
from ganforge.metrics.image import l1, ssim

#: light direction (x right, y down, z towards the viewer): from the upper left
LIGHT = np.array([-0.5, -0.7, 0.6])


def load(folder: Path) -> np.ndarray:
    """uint8 [N, 64, 64, 3] of every image in ``folder`` (sorted), composited on white."""
    out = []
    for path in sorted(folder.iterdir()):
        image = Image.open(path).convert("RGBA")
        white = Image.new("RGBA", image.size, "white")
        flat = Image.alpha_composite(white, image).convert("RGB")
        out.append(np.asarray(flat.resize((64, 64), Image.Resampling.BICUBIC)))
    return np.stack(out)


def shrink(images: np.ndarray, scale: float = 0.875) -> np.ndarray:
    """Each image drawn at ``scale`` of its size in the middle of a white canvas."""
    out = []
    for image in images:
        canvas = Image.new("RGB", (64, 64), "white")
        side = round(64 * scale)
        canvas.paste(Image.fromarray(image).resize((side, side), Image.Resampling.BILINEAR),
                     ((64 - side) // 2, (64 - side) // 2))
        out.append(np.asarray(canvas))
    return np.stack(out)


def relight(images: np.ndarray, radius: float = 4.0, edge: float = 2.5, ambient: float = 0.72,
            diffuse: float = 0.38, specular: float = 0.3, shininess: float = 18.0,
            supersample: int = 4) -> np.ndarray:
    """Inflate and light each flat image (uint8 [N, 64, 64, 3] on white)."""
    light = LIGHT / np.linalg.norm(LIGHT)
    half = light + np.array([0.0, 0.0, 1.0])
    half /= np.linalg.norm(half)
    out = []
    for image in images:
        size = image.shape[0] * supersample
        big = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC),
                         dtype=np.float64)
        labels, _ = ndimage.label(big.min(axis=2) > 240)
        border = np.unique(np.r_[labels[0], labels[-1], labels[:, 0], labels[:, -1]])
        subject = ~np.isin(labels, border[border > 0])
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=Path, required=True)
    parser.add_argument("--model", help="also score this restyle model (an exported folder)")
    parser.add_argument("--grid", type=Path, help="write input / model / relit / true 3D here")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    flat, true3d = load(args.pairs / "a"), load(args.pairs / "b")
    net = InceptionFeatures.load()

    def tensor(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255

    reference = net.features_of(tensor(true3d))
    candidates = {"identity": flat, "identity shrunk to 0.875": shrink(flat),
                  "relit (radius 6, ambient 0.7, diffuse 0.4, specular 0.45)":
                      relight(shrink(flat), radius=6, ambient=0.7, diffuse=0.4, specular=0.45),
                  "relit (radius 4, ambient 0.72, diffuse 0.38, specular 0.3)":
                      relight(shrink(flat))}
    if args.model:
        from ganforge.pipelines import ImageToImagePipeline

        pipe = ImageToImagePipeline.from_pretrained(args.model)
        pipe.watermark = False
        outputs = pipe(sorted((args.pairs / "a").iterdir()), direction="a2b")
        candidates["model"] = np.stack([np.asarray(o.convert("RGB").resize((64, 64)))
                                        for o in outputs])
    figures = {}
    for name, images in candidates.items():
        figures[name] = {
            "fid": fid_from_features(net.features_of(tensor(images)), reference),
            "l1": float(l1(tensor(images), tensor(true3d)).mean()),
            "ssim": float(ssim(tensor(images), tensor(true3d)).mean())}
        print(name, {k: round(v, 4) for k, v in figures[name].items()}, flush=True)
    if args.grid:
        pick = list(range(0, len(flat), max(1, len(flat) // 12)))[:12]
        rows = [flat[pick]] + ([candidates["model"][pick]] if args.model else []) + [
            relight(shrink(flat[pick])), true3d[pick]]
        grid = np.concatenate([np.concatenate(list(row), 1) for row in rows], 0)
        Image.fromarray(grid).save(args.grid, optimize=True)
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
