"""Detector of generated emoji, leave one family out: does it catch families it never saw?

Generated images (all without the watermark, so that the detector cannot learn the mark) come
from every generator family we have, one folder of ``--per-family`` images each:

- ``dfgan``: a DF-GAN model (``--dfgan``: the former shipped default, commit f213b57's
  ``ganforge/assets/text2image-emoji-64``), prompts = the emoji captions;
- ``ragan``: the shipped text-to-image default (retrieval-augmented: training emoji, edited),
  prompts = the emoji captions;
- ``pix2pix``: the pix2pix restyle network (flat -> 3D; ``--pix2pix``) on Twemoji;
- ``cyclegan``, ``unit``: flat -> 3D runs (``--cyclegan``, ``--unit``) on Twemoji;
- ``maskgit``: a MaskGIT run (``--maskgit``, prompts = the emoji captions);
- ``stargan``: a StarGAN v2 run (``--stargan``) on Twemoji, to every style it knows;
- ``relight``: the shipped restyle default (a procedural relight, not a network) on Twemoji;
- ``upscaler``: Twemoji / Noto 64 px upscaled x4 by the shipped ``upscale-x4-fluent3d``, then a
  random 64 px crop of the 256 px output (the upscaler's own pixels, not resized away).

Real images (composited on white): Twemoji and Noto at 64 px, Fluent Emoji 3D resized from
256 to 64 px, and random 64 px crops of Fluent 3D at 256 px (real pixels at the zoom of the
upscaler crops). Each real source is split 70 / 10 / 20 (train / threshold calibration /
test), each family 80 / 20 (train / in-distribution test).

For each family F: train without F, test F's images against the held-out real test images,
as they are and after a 0.5x resize + JPEG quality 75; report AUC and, at the threshold
calibrated on the calibration reals, as they are and resized + JPEG'd (false-positive rate
<= 1% on the two together), FPR and TPR. Then train on every family (``--ship DIR`` saves
it, threshold included).

    python benchmarks/detector_lofo.py --cache /tmp/det/data --out /tmp/det/lofo.json \\
        --ship ganforge/assets/detector-emoji-64 --ship-steps 1200
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganforge.pipelines import (
    DEFAULT_MODEL,
    DEFAULT_TRANSLATOR,
    ImageToImagePipeline,
    UpscalePipeline,
)
from ganforge.provenance.detector import (
    Augmentation,
    Detector,
    generate_fakes,
    jpeg,
    load_images,
    prepare,
    simulate_artifacts,
    train_detector,
)

#: real sources that show whole emoji (the fluent3d crops are the upscaler's counterpart)
WHOLE_EMOJI = ("twitter", "google", "fluent3d")
#: the pix2pix restyle network shipped beside the default (a relight since 2026-12-02)
PIX2PIX = DEFAULT_TRANSLATOR.parent / "restyle-3d-64-pix2pix"
FAMILIES = ("dfgan", "ragan", "pix2pix", "cyclegan", "unit", "maskgit", "stargan", "upscaler",
            "relight")


def degrade(images: list[Image.Image]) -> list[Image.Image]:
    """What sharing often does: halve the size, then save as JPEG quality 75."""
    half = Image.Resampling.BICUBIC
    return [jpeg(im.resize((im.width // 2, im.height // 2), half), 75) for im in images]


def split(images: list[Image.Image], seed: int, shares: tuple[float, ...]
          ) -> list[list[Image.Image]]:
    """A seeded split of ``images`` into parts of the given shares (the last takes the rest)."""
    order = np.random.default_rng(seed).permutation(len(images))
    parts, start = [], 0
    for share in shares[:-1]:
        end = start + round(share * len(images))
        parts.append([images[i] for i in order[start:end]])
        start = end
    parts.append([images[i] for i in order[start:]])
    return parts


def random_crops(images: list[Image.Image], seed: int, side: int = 64) -> list[Image.Image]:
    """One random ``side`` px crop per image, inside its central three quarters."""
    rng = np.random.default_rng(seed)
    out = []
    for image in images:
        margin = image.width // 8
        x, y = (int(v) for v in rng.integers(margin, image.width - margin - side + 1, size=2))
        out.append(image.crop((x, y, x + side, y + side)))
    return out


def on_white(image: Image.Image) -> Image.Image:
    """RGB composited on white, size kept."""
    rgba = image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")


def translate(model: str | Path, sources: list[Image.Image], count: int,
              targets: list[str | None]) -> list[Image.Image]:
    """``count`` translations of ``sources`` (cycled), spread over ``targets`` (directions or
    styles), without the watermark."""
    pipe = ImageToImagePipeline.from_pretrained(model)
    pipe.watermark = False
    out: list[Image.Image] = []
    per_target = -(-count // len(targets))
    for t, target in enumerate(targets):
        picked = [sources[(t * per_target + i) % len(sources)] for i in range(per_target)]
        for start in range(0, len(picked), 64):
            out += pipe(picked[start:start + 64], direction=target)
    return [prepare(im) for im in out[:count]]


def upscaled_crops(sources: list[Image.Image], count: int, seed: int) -> list[Image.Image]:
    pipe = UpscalePipeline.from_pretrained()
    pipe.watermark = False
    big = [pipe(im, tile=None)[0].convert("RGB") for im in sources[:count]]
    return random_crops(big, seed)


def make_family(name: str, args: argparse.Namespace, twemoji: list[Image.Image],
                captions: list[str]) -> list[Image.Image]:
    n, seed = args.per_family, args.seed
    makers: dict[str, Callable[[], list[Image.Image]]] = {
        "dfgan": lambda: generate_fakes(args.dfgan, n, seed, prompts=captions),
        "ragan": lambda: generate_fakes(DEFAULT_MODEL, n, seed, prompts=captions),
        "pix2pix": lambda: translate(args.pix2pix, twemoji, n, ["a2b"]),
        "cyclegan": lambda: translate(args.cyclegan, twemoji, n, ["a2b"]),
        "unit": lambda: translate(args.unit, twemoji, n, ["a2b"]),
        "maskgit": lambda: generate_fakes(args.maskgit, n, seed, prompts=captions),
        "stargan": lambda: translate(
            args.stargan, twemoji, n, list(ImageToImagePipeline.from_pretrained(
                args.stargan).styles)),
        "upscaler": lambda: upscaled_crops(twemoji[::-1], n, seed),
        "relight": lambda: translate(DEFAULT_TRANSLATOR, twemoji, n, [None]),
    }
    return [prepare(im) for im in makers[name]()]


def load_reals(emoji: Path, seed: int) -> dict[str, list[Image.Image]]:
    """The real sources, composited on white at 64 px: Twemoji, Noto, Fluent 3D (256 -> 64)
    and one random 64 px crop of every third Fluent 3D image at 256 px."""
    fluent = [on_white(Image.open(p)) for p in sorted((emoji / "fluent3d" / "256").iterdir())
              if p.suffix in (".png", ".webp")]
    return {"twitter": load_images(emoji / "twitter" / "64"),
            "google": load_images(emoji / "google" / "64"),
            "fluent3d": [prepare(im) for im in fluent],
            "fluent3d-crop": random_crops(fluent[::3], seed + 1)}


def cached(folder: Path | None, make: Callable[[], list[Image.Image]]) -> list[Image.Image]:
    """Images from ``folder`` if it holds them, else made and saved there as PNG."""
    if folder is not None and folder.is_dir() and any(folder.glob("*.png")):
        return load_images(folder)
    images = make()
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images):
            image.save(folder / f"{i:05d}.png")
    return images


def figures(detector: Detector, real_test: list[Image.Image], fake: list[Image.Image]
            ) -> dict[str, float]:
    clean = detector.evaluate(real_test, fake)
    shared = detector.evaluate(degrade(real_test), degrade(fake))
    return {"auc": clean["auc"], "fpr": clean["fpr"], "tpr": clean["tpr"],
            "auc_jpeg75_half": shared["auc"], "fpr_jpeg75_half": shared["fpr"],
            "tpr_jpeg75_half": shared["tpr"], "real": clean["real"],
            "generated": clean["generated"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="/work/shared/data")
    parser.add_argument("--sources", default="/tmp/restyle/train/a/twitter",
                        help="Twemoji that the translators and the upscaler start from")
    parser.add_argument("--cyclegan", default="/tmp/restyle/run-cyclegan")
    parser.add_argument("--unit", default="/tmp/restyle/run-unit")
    parser.add_argument("--pix2pix", default=str(PIX2PIX),
                        help="a pix2pix model (default: the shipped restyle network)")
    parser.add_argument("--maskgit", default="/tmp/det/mg")
    parser.add_argument("--dfgan", default="/tmp/det/dfgan",
                        help="a DF-GAN model, e.g. the former default: mkdir D && for f in "
                        "config.json model.safetensors; do git show f213b57:ganforge/assets/"
                        "text2image-emoji-64/$f > D/$f; done")
    parser.add_argument("--stargan", default="/tmp/det/sg")
    parser.add_argument("--per-family", type=int, default=500)
    parser.add_argument("--cache", type=Path, help="keep generated images here (PNG)")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--holdout", default="all",
                        help="families to hold out one at a time ('all', or a comma list; "
                        "'' = none)")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--ship-steps", type=int, help="steps of the shipped detector "
                        "(default: --steps)")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--highpass", action="store_true")
    parser.add_argument("--blur-p", type=float, default=Augmentation.blur_p,
                        help="share of training views blurred (Wang et al.: 0.5)")
    parser.add_argument("--resize-p", type=float, default=0.5,
                        help="share of training views resized down (32-64 px) and back")
    parser.add_argument("--max-blur", type=float, default=Augmentation.max_blur,
                        help="largest Gaussian blur sigma of the training augmentation (px)")
    parser.add_argument("--simulated", type=int, default=2000,
                        help="add this many real training images given simulated generator "
                        "traces (simulate_artifacts) to every training set as generated")
    parser.add_argument("--max-fpr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ship", help="train on every family and save the detector here")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()

    emoji = Path(args.data) / "emoji"
    captions = [json.loads(line)["caption"] for line in (emoji / "metadata.jsonl").open()]
    reals = load_reals(emoji, args.seed)
    real_parts = {name: split(images, args.seed, (0.7, 0.1, 0.2))
                  for name, images in reals.items()}
    real_train = [im for parts in real_parts.values() for im in parts[0]]
    real_calib = [im for parts in real_parts.values() for im in parts[1]]
    real_test = [im for parts in real_parts.values() for im in parts[2]]
    twemoji = load_images(args.sources, limit=args.per_family, seed=args.seed)

    families = [f for f in args.families.split(",") if f]
    fakes = {}
    for name in families:
        tick = time.perf_counter()
        fakes[name] = cached(args.cache / name if args.cache else None,
                             lambda name=name: make_family(name, args, twemoji, captions))
        print(f"{name}: {len(fakes[name])} images ({time.perf_counter() - tick:.0f} s)",
              flush=True)
    fake_parts = {name: split(images, args.seed, (0.8, 0.2)) for name, images in fakes.items()}

    rng = np.random.default_rng(args.seed + 2)
    simulated = [simulate_artifacts(real_train[int(i)], rng)
                 for i in rng.choice(len(real_train), size=args.simulated, replace=False)]

    def train(names: list[str], steps: int) -> Detector:
        fake_train = [im for n in names for im in fake_parts[n][0]] + simulated
        detector = train_detector(real_train, fake_train, steps=steps, width=args.width,
                                  highpass=args.highpass, seed=args.seed,
                                  augmentation=Augmentation(blur_p=args.blur_p,
                                                            max_blur=args.max_blur,
                                                            resize_p=args.resize_p))
        # real images as they are and as they are often shared: the verdict must not flag
        # more than --max-fpr of either
        detector.calibrate(real_calib + degrade(real_calib), args.max_fpr)
        return detector

    report: dict[str, object] = {
        "data": {"real_train": len(real_train), "real_calibration": len(real_calib),
                 "simulated": len(simulated),
                 "real_test": len(real_test), "per_family": {n: len(v) for n, v in fakes.items()},
                 "real_sources": {n: len(v) for n, v in reals.items()}},
        "settings": {k: str(v) for k, v in vars(args).items()}, "leave_one_out": {}}
    holdout = families if args.holdout == "all" else [f for f in args.holdout.split(",") if f]
    for held in holdout:
        tick = time.perf_counter()
        others = [n for n in families if n != held]
        detector = train(others, args.steps)
        row = figures(detector, real_test, fakes[held])
        seen = [im for n in others for im in fake_parts[n][1]]
        row["in_distribution_auc"] = detector.evaluate(real_test, seen)["auc"]
        row["auc_by_real_source"] = {
            name: detector.evaluate(parts[2], fakes[held])["auc"]
            for name, parts in real_parts.items()}
        whole = [im for name in WHOLE_EMOJI for im in real_parts[name][2]]
        row["auc_whole_emoji"] = detector.evaluate(whole, fakes[held])["auc"]
        row["auc_whole_emoji_jpeg75_half"] = detector.evaluate(
            degrade(whole), degrade(fakes[held]))["auc"]
        row["threshold"] = detector.threshold
        row["seconds"] = round(time.perf_counter() - tick, 1)
        report["leave_one_out"][held] = row  # type: ignore[index]
        print(f"without {held:9} AUC {row['auc']:.3f}  JPEG75+half {row['auc_jpeg75_half']:.3f}"
              f"  TPR@thr {row['tpr']:.3f} (FPR {row['fpr']:.3f})  in-dist AUC "
              f"{row['in_distribution_auc']:.3f}  ({row['seconds']} s)", flush=True)
        print(f"    whole emoji only (no crops): AUC {row['auc_whole_emoji']:.3f}, JPEG75+half "
              f"{row['auc_whole_emoji_jpeg75_half']:.3f}", flush=True)
        print("    AUC against each real source: " + ", ".join(
            f"{k} {v:.3f}" for k, v in row["auc_by_real_source"].items()), flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps(report, indent=2) + "\n")

    if args.ship:
        tick = time.perf_counter()
        detector = train(families, args.ship_steps or args.steps)
        seen = [im for n in families for im in fake_parts[n][1]]
        evaluation = {"all_families": figures(detector, real_test, seen)}
        for name in families:
            evaluation[name] = figures(detector, real_test, fake_parts[name][1])
        for name, parts in real_parts.items():
            evaluation[f"real {name}: share flagged"] = detector.evaluate(
                parts[2], fake_parts[families[0]][1])["fpr"]
        detector.metadata.update({
            "families": families, "evaluation": evaluation,
            "threshold_calibration": {"real_images": len(real_calib),
                                      "as_is_and_half_size_jpeg75": True,
                                      "max_fpr": args.max_fpr},
            "data": report["data"]})
        detector.save_pretrained(args.ship)
        report["shipped"] = {"threshold": detector.threshold, "evaluation": evaluation,
                             "seconds": round(time.perf_counter() - tick, 1)}
        overall = evaluation["all_families"]
        print(f"shipped: threshold {detector.threshold:.4f}  AUC {overall['auc']:.3f}  "
              f"FPR {overall['fpr']:.3f}  TPR {overall['tpr']:.3f}  JPEG75+half AUC "
              f"{overall['auc_jpeg75_half']:.3f}")
    report["seconds"] = round(time.perf_counter() - started, 1)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
