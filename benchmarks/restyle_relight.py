"""How far does a procedural "inflate and light" get towards Fluent 3D, beside our trained restyle?

Each flat emoji is shrunk to 0.875 of its size (Fluent 3D draws its
subjects smaller), its silhouette is inflated (a height field rising over ``radius`` px from the
edge, plus a small bevel at every colour boundary), and it is lit (ambient + Lambert diffuse +
Blinn-Phong specular, light from the upper left), rendered at 4x and reduced. Scored like the
shipped restyle model on the validation pairs (FID against the true 3D images, L1 and SSIM).
``--fit`` picks the lighting on training pairs (coordinate descent on FID from the first
fit's grid-search best: each number in turn is stepped up, then down, while FID falls by more
than 0.2; two rounds, the steps halved in the second) and saves it as a ``relight`` model
(``ganforge.inference.relight``); ``--lighting`` saves given values instead. Before the
lighting, ``--fit`` measures a flag template on every training pair whose input is a flag
(``fit_flag_template``; ``--no-flags``: none), and the lighting is then scored with the flags
drawn in it, as the model draws them.

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
    FlagTemplate,
    Lighting,
    RelightInferenceConfig,
    RelightModel,
    fit_flag_template,
    is_flag,
    relight,
    shrink,
    wave_flag,
)
from ganforge.metrics.fid import InceptionFeatures, fid_from_features
from ganforge.metrics.image import l1, ssim

#: the first step of each number the fit moves, in this order (light_z stays: the light
#: direction is normalised, two of its numbers suffice)
STEPS = {"radius": 1.0, "edge": 1.0, "ambient": 0.06, "diffuse": 0.08, "specular": 0.1,
         "shininess": 8.0, "light_x": 0.25, "light_y": 0.25}
#: numbers that must stay above 0.3 (sizes and the exponent)
POSITIVE = ("radius", "edge", "shininess")
#: where the fit starts: the best of the first fit's 12-point grid (radius 3, specular 0.2;
#: the rest hand-set), in the order of ``LIGHTING``
START = (3.0, 2.5, 0.72, 0.38, 0.2, 18.0, -0.5, -0.7, 0.6)


def fit(pairs: Path, count: int, net: InceptionFeatures, seed: int = 0, rounds: int = 2,
        min_gain: float = 0.2, flag: FlagTemplate | None = None,
        start: tuple[float, ...] = START) -> tuple[tuple[float, ...], list[dict]]:
    """Coordinate descent on FID of ``count`` training inputs (seeded pick) relit against
    their true 3D images, from ``start``: each of ``STEPS`` in turn is stepped up
    (then down) while FID falls by more than ``min_gain``; ``rounds`` rounds, the steps halved
    each round. Returns the best values and every setting scored. ``pairs``: a/ and b/, or
    a/twitter and b/twitter (``restyle_emoji.py``'s training split). With ``flag``, the
    inputs that are flags are drawn in it (the lighting does not touch them)."""
    a, b = pair_folders(pairs)
    names = sorted(p.name for p in a.iterdir())
    pick = sorted(np.random.default_rng(seed).choice(len(names), min(count, len(names)),
                                                     replace=False))
    flat = load_files([a / names[i] for i in pick])
    true3d = load_files([b / names[i] for i in pick])
    reference = net.features_of(tensor(true3d))
    flags = np.zeros(len(flat), dtype=bool)
    features = np.empty((len(flat), reference.shape[1]))
    if flag is not None:
        flags = np.array([is_flag(image) for image in flat], dtype=bool)
        if flags.any():
            features[flags] = net.features_of(tensor(np.stack(
                [wave_flag(image, *flag.arrays())[0] for image in flat[flags]])))
    shrunk = shrink(flat[~flags], RelightInferenceConfig.input_scale)
    tried: list[dict] = []

    def score(values: dict[str, float]) -> float:
        features[~flags] = net.features_of(tensor(relight(shrunk, **values)))
        tried.append({"values": [values[k] for k in LIGHTING],
                      "fid": fid_from_features(features, reference)})
        print(f"{len(tried):3d} {values}: FID {tried[-1]['fid']:.2f}", flush=True)
        return tried[-1]["fid"]

    best_values = dict(zip(LIGHTING, start, strict=True))
    best = score(best_values)
    for round_ in range(rounds):
        for name, first in STEPS.items():
            step = first / 2**round_
            for sign in (1, -1):
                while True:
                    values = {**best_values, name: best_values[name] + sign * step}
                    if name in POSITIVE and values[name] <= 0.3:
                        break
                    fid = score(values)
                    if fid >= best - min_gain:
                        break
                    best, best_values = fid, values
    return tuple(best_values[k] for k in LIGHTING), tried


def named_values(text: str, defaults: tuple[float, ...], option: str) -> list[float]:
    """``NAME=VALUE,...`` over ``defaults`` (in ``LIGHTING``'s order)."""
    given = dict(item.split("=") for item in text.split(","))
    unknown = set(given) - set(LIGHTING)
    if unknown:
        raise SystemExit(f"{option}: unknown {', '.join(sorted(unknown))}; known: "
                         f"{', '.join(LIGHTING)}")
    values = {**dict(zip(LIGHTING, defaults, strict=True)),
              **{k: float(v) for k, v in given.items()}}
    return [values[k] for k in LIGHTING]


def pair_folders(pairs: Path) -> tuple[Path, Path]:
    """a/ and b/ of a pairs folder, or a/twitter and b/twitter where those exist."""
    a, b = pairs / "a", pairs / "b"
    if (a / "twitter").is_dir():
        a, b = a / "twitter", b / "twitter"
    return a, b


def fitted_flag_template(pairs: Path) -> tuple[FlagTemplate, int]:
    """``fit_flag_template`` on every pair of ``pairs`` (the training split)."""
    a, b = pair_folders(pairs)
    names = sorted(p.name for p in a.iterdir())
    top, bottom, shade, used = fit_flag_template(load_files([a / n for n in names]),
                                                 load_files([b / n for n in names]))
    template = FlagTemplate(len(top))
    for name, value in (("top", top), ("bottom", bottom), ("shade", shade)):
        getattr(template, name).data = torch.from_numpy(np.ascontiguousarray(value))
    return template, used


def restyle(model: RelightModel, flat: np.ndarray) -> np.ndarray:
    """uint8 [N, S, S, 3] through ``model.translate``, the same layout out."""
    out = model.translate(tensor(flat) * 2 - 1, "a2b")
    return out.add(1).mul(127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


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
    parser.add_argument("--fit", type=Path, metavar="OUT", help="measure the flag template and fit "
                        "the lighting (coordinate descent on FID) on --train, and save the "
                        "relight model here")
    parser.add_argument("--train", type=Path, help="training pairs (a/, b/) for --fit")
    parser.add_argument("--fit-count", type=int, default=400,
                        help="training pairs the fit scores")
    parser.add_argument("--fit-rounds", type=int, default=2, help="coordinate-descent rounds")
    parser.add_argument("--fit-start", metavar="NAME=VALUE,...",
                        help="start the coordinate descent here (the rest from the first "
                        "fit's grid best)")
    parser.add_argument("--no-flags", action="store_true",
                        help="no flag template: flags are relit like everything else")
    parser.add_argument("--lighting", metavar="NAME=VALUE,...",
                        help="with --fit OUT: save these lighting numbers (the rest hand-set) "
                        "instead of fitting them")
    parser.add_argument("--grid", type=Path, help="write input / model / relit / true 3D here")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    flat, true3d = load(args.pairs / "a"), load(args.pairs / "b")
    net = InceptionFeatures.load()
    reference = net.features_of(tensor(true3d))
    lighting = DEFAULT_LIGHTING
    record: dict = {}
    if args.fit and args.train is None:
        raise SystemExit("--fit needs --train PAIRS")
    flag = None
    if args.fit and not args.no_flags:
        flag, used = fitted_flag_template(args.train)
        record["flag_template"] = f"median of the {used} flags among the inputs of {args.train}"
        print(f"flag template measured on {used} training flags", flush=True)
    if args.fit and args.lighting:
        lighting = tuple(named_values(args.lighting, DEFAULT_LIGHTING, "--lighting"))
        record["lighting_given"] = args.lighting
    elif args.fit:
        start = tuple(named_values(args.fit_start, START, "--fit-start")
                      if args.fit_start else START)
        lighting, tried = fit(args.train, args.fit_count, net, rounds=args.fit_rounds,
                              flag=flag, start=start)
        record.update({
            "fitted_on": f"{args.fit_count} seeded training pairs of {args.train}, coordinate "
                         f"descent on FID from {dict(zip(LIGHTING, start, strict=True))}, "
                         f"{args.fit_rounds} rounds" + (", flags in the template" if flag
                                                        else ""),
            "tried": tried})
    model = None
    if args.fit:
        modules = {"lighting": Lighting(lighting)} | ({"flag": flag} if flag else {})
        model = RelightModel(RelightInferenceConfig(flags=flag is not None), modules, record)
        model.save_pretrained(args.fit)
        print(f"relight model written to {args.fit}: {dict(zip(LIGHTING, lighting, strict=True))}")
    settings = dict(zip(LIGHTING, lighting, strict=True))
    shrunk = shrink(flat, RelightInferenceConfig.input_scale)
    candidates = {"identity": flat, "identity shrunk to 0.875": shrunk,
                  "relit, hand-set lighting": relight(shrunk)}
    if args.fit:
        candidates["relit, fitted lighting"] = relight(shrunk, **settings)
    if flag is not None:
        candidates["relit, fitted lighting, flags in the template"] = restyle(model, flat)
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
        ours = restyle(model, flat[pick]) if model else relight(shrunk[pick], **settings)
        rows = [flat[pick]] + ([candidates["model"][pick]] if args.model else []) + [
            ours, true3d[pick]]
        grid = np.concatenate([np.concatenate(list(row), 1) for row in rows], 0)
        Image.fromarray(grid).quantize(256).save(args.grid, optimize=True)
    if args.out:
        args.out.write_text(json.dumps({"figures": figures, **record}, indent=2) + "\n")


if __name__ == "__main__":
    main()
