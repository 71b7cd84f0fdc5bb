"""How far does a procedural "inflate and light" get towards Fluent 3D, beside our trained restyle?

Each flat emoji is shrunk to 0.875 of its size (Fluent 3D draws its
subjects smaller), its silhouette is inflated (a height field rising over ``radius`` px from the
edge, plus a small bevel at every colour boundary), and it is lit (ambient + Lambert diffuse +
Blinn-Phong specular, light from the upper left), rendered at 4x and reduced. Scored like the
shipped restyle model on the validation pairs (FID against the true 3D images, L1 and SSIM).
``--fit`` picks the lighting on training pairs (a small grid, by FID) and saves it as a
``relight`` model (``ganforge.inference.relight``).

    OMP_NUM_THREADS=2 python benchmarks/restyle_relight.py --pairs /tmp/restyle/val \
        --model ganforge/assets/restyle-3d-64 --grid docs/images/restyle_relight_experiment.png
    # fit the lighting on training pairs and save a relight model (ganforge.inference.relight)
    OMP_NUM_THREADS=2 python benchmarks/restyle_relight.py --pairs /tmp/restyle/val \
        --train /tmp/restyle/train --fit runs/relight

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

from ganforge.inference.relight import (
    DEFAULT_LIGHTING,
    LIGHTING,
    Lighting,
    RelightInferenceConfig,
    RelightModel,
    relight,
    shrink,
)
from ganforge.metrics.fid import InceptionFeatures, fid_from_features
from ganforge.metrics.image import l1, ssim

#: the fitting grid: silhouette radius, (ambient, diffuse), specular
GRID = [(radius, shading, specular) for radius in (3.0, 4.0, 6.0)
        for shading in ((0.72, 0.38), (0.65, 0.45)) for specular in (0.2, 0.35)]


def fit(pairs: Path, count: int, net: InceptionFeatures, seed: int = 0
        ) -> tuple[tuple[float, ...], list[dict]]:
    """The grid point with the lowest FID of ``count`` training inputs (seeded pick) relit
    against their true 3D images, and every point's figures. ``pairs``: a/ and b/, or a/twitter
    and b/twitter (``restyle_emoji.py``'s training split)."""
    a, b = pairs / "a", pairs / "b"
    if (a / "twitter").is_dir():
        a, b = a / "twitter", b / "twitter"
    names = sorted(p.name for p in a.iterdir())
    pick = sorted(np.random.default_rng(seed).choice(len(names), min(count, len(names)),
                                                     replace=False))
    flat = load_files([a / names[i] for i in pick])
    true3d = load_files([b / names[i] for i in pick])
    reference = net.features_of(tensor(true3d))
    shrunk = shrink(flat, RelightInferenceConfig.input_scale)
    tried = []
    for radius, (ambient, diffuse), specular in GRID:
        values = list(DEFAULT_LIGHTING)
        values[:5] = [radius, values[1], ambient, diffuse, specular]
        lit = relight(shrunk, **dict(zip(LIGHTING, values, strict=True)))
        tried.append({"values": values,
                      "fid": fid_from_features(net.features_of(tensor(lit)), reference)})
        print(f"radius {radius} ambient {ambient} diffuse {diffuse} specular {specular}: "
              f"FID {tried[-1]['fid']:.1f}", flush=True)
    best = min(tried, key=lambda row: row["fid"])
    return tuple(best["values"]), tried


def tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255

def load(folder: Path) -> np.ndarray:
    """uint8 [N, 64, 64, 3] of every image in ``folder`` (sorted), composited on white."""
    return load_files(sorted(folder.iterdir()))


def load_files(paths: list[Path]) -> np.ndarray:
    """uint8 [N, 64, 64, 3] of ``paths``, composited on white."""
    out = []
    for path in paths:
        image = Image.open(path).convert("RGBA")
        white = Image.new("RGBA", image.size, "white")
        flat = Image.alpha_composite(white, image).convert("RGB")
        out.append(np.asarray(flat.resize((64, 64), Image.Resampling.BICUBIC)))
    return np.stack(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=Path, required=True, help="validation pairs (a/, b/)")
    parser.add_argument("--model", help="also score this restyle model (an exported folder)")
    parser.add_argument("--fit", type=Path, metavar="OUT", help="fit the lighting on --train "
                        "(grid search on FID) and save the relight model here")
    parser.add_argument("--train", type=Path, help="training pairs (a/, b/) for --fit")
    parser.add_argument("--fit-count", type=int, default=400,
                        help="training pairs the grid search scores")
    parser.add_argument("--grid", type=Path, help="write input / model / relit / true 3D here")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    flat, true3d = load(args.pairs / "a"), load(args.pairs / "b")
    net = InceptionFeatures.load()
    reference = net.features_of(tensor(true3d))
    lighting = DEFAULT_LIGHTING
    record: dict = {}
    if args.fit:
        if args.train is None:
            raise SystemExit("--fit needs --train PAIRS")
        lighting, tried = fit(args.train, args.fit_count, net)
        record = {"fitted_on": f"{args.fit_count} pairs of {args.train}", "grid": tried}
        RelightModel(RelightInferenceConfig(), {"lighting": Lighting(lighting)},
                     record).save_pretrained(args.fit)
        print(f"relight model written to {args.fit}: {dict(zip(LIGHTING, lighting, strict=True))}")
    settings = dict(zip(LIGHTING, lighting, strict=True))
    shrunk = shrink(flat, RelightInferenceConfig.input_scale)
    candidates = {"identity": flat, "identity shrunk to 0.875": shrunk,
                  "relit, hand-set lighting": relight(shrunk)}
    if args.fit:
        candidates["relit, fitted lighting"] = relight(shrunk, **settings)
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
            relight(shrunk[pick], **settings), true3d[pick]]
        grid = np.concatenate([np.concatenate(list(row), 1) for row in rows], 0)
        Image.fromarray(grid).quantize(256).save(args.grid, optimize=True)
    if args.out:
        args.out.write_text(json.dumps({"figures": figures, **record}, indent=2) + "\n")


if __name__ == "__main__":
    main()
