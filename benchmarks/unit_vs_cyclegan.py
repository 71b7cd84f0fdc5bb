"""UNIT beside CycleGAN: twitter -> google emoji, 64 px, scored against the true google image.

The split, the data and the step budget are those of ``benchmarks/emoji_translation.py``
(15% of base emoji held out by a stable hash; unpaired training folders; no flips). Each family
is trained with the loop (a finished run resumes to its end at once; ``--also-score`` adds
existing runs), then all are scored on the same validation pairs: paired L1/PSNR/SSIM
(``evaluate_translation``), FID against the true google images on the first ``--fid-images``
pairs (real features computed once), training img/s (median of the loop's logged windows),
inference img/s (``translate_tensor``, batch 32, after a warm-up), and for UNIT the mean
absolute difference (in [0, 1] units) between two latent samples of the same input.

    # CPU, in runs of <= 10 min: train each family (two processes), then score all three
    python benchmarks/unit_vs_cyclegan.py --out /tmp/uvc --steps 200 --families unit \
        --fid-images 0 --device cpu
    python benchmarks/unit_vs_cyclegan.py --out /tmp/uvc --steps 200 --families cyclegan \
        --fid-images 0 --device cpu
    python benchmarks/unit_vs_cyclegan.py --out /tmp/uvc --steps 200 --fid-images 96 \
        --also-score cyclegan-1500=/tmp/emojirun/run --device cpu
    # GPU: both families, the published widths
    python benchmarks/unit_vs_cyclegan.py --out runs/unit-vs-cyclegan --steps 6000 \
        --batch-size 16 --channels 64 --device cuda
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from emoji_translation import result_device, split_folders

from ganforge.config import RunConfig
from ganforge.data.images import image_grid
from ganforge.metrics.fid import InceptionFeatures, fid_from_features
from ganforge.metrics.translation import evaluate_translation
from ganforge.pipelines import ImageToImagePipeline
from ganforge.train.loop import train


def run_config(family: str, args: argparse.Namespace, folders: dict[str, Path]) -> RunConfig:
    """The run of ``family`` at this script's budget (CycleGAN: emoji_translation.py's)."""
    if family == "unit":
        model = {"channels": args.channels, "blocks": args.unit_blocks,
                 "shared_blocks": args.shared_blocks, "discriminator_channels": args.channels}
    else:
        model = {"generator_blocks": args.cyclegan_blocks, "generator_channels": args.channels,
                 "discriminator_channels": args.channels}
    every = max(args.steps // 10, 1)
    return RunConfig(
        family=family, model=model,
        data={"domain_a": str(folders["train_twitter"]), "domain_b": str(folders["train_google"]),
              "size": 64, "flip": False},
        train={"steps": args.steps, "batch_size": args.batch_size, "device": args.device,
               "compile": args.compile, "sample_every": every, "checkpoint_every": every,
               "log_every": 50, "progress": False, "seed": args.seed})


def trained_steps(run_dir: Path) -> int:
    """Steps of the model a run last exported (0 when it has none yet)."""
    config = run_dir / "model" / "config.json"
    return json.loads(config.read_text())["trained_steps"] if config.is_file() else 0


def train_images_per_second(run_dir: Path) -> float:
    """Median training throughput over the run's logged windows (img/s)."""
    rows = [json.loads(line) for line in (run_dir / "logs" / "scalars.jsonl").read_text()
            .splitlines() if line.strip()]
    return statistics.median(row["img_per_s"] for row in rows)


@torch.no_grad()
def inference_images_per_second(pipe: ImageToImagePipeline, images: torch.Tensor,
                                batch_size: int = 32, **options: object) -> float:
    """Translations per second of ``images`` [N, 3, 64, 64] in batches, after a warm-up."""
    images = images.to(pipe.device)
    pipe.translate_tensor(images[:batch_size], "a2b", **options)
    sync = torch.cuda.synchronize if pipe.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for chunk in images.split(batch_size):
        pipe.translate_tensor(chunk, "a2b", **options)
    sync()
    return len(images) / (time.perf_counter() - start)


def fid_to_target(features: InceptionFeatures, fakes: torch.Tensor, real_feats: object,
                  batch_size: int = 32) -> float:
    """FID of fakes [N, 3, H, W] in [-1, 1] against precomputed target features."""
    return fid_from_features(features.features_of(fakes.add(1).div(2).cpu(), batch_size,
                                                  False), real_feats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/work/shared/data/emoji")
    parser.add_argument("--out", default="runs/unit-vs-cyclegan")
    parser.add_argument("--families", default="unit,cyclegan",
                        help="families to train (if not yet trained in OUT) and score")
    parser.add_argument("--also-score", action="append", default=[], metavar="NAME=RUN",
                        help="also score this finished run (same split, e.g. the CycleGAN run "
                        "emoji_translation.py wrote)")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--channels", type=int, default=16, help="both families' first layer")
    parser.add_argument("--unit-blocks", type=int, default=4)
    parser.add_argument("--shared-blocks", type=int, default=1)
    parser.add_argument("--cyclegan-blocks", type=int, default=6)
    parser.add_argument("--fid-images", type=int, default=-1, help="FID on the first N "
                        "validation pairs (-1: all; 0: none; InceptionV3 takes ~0.7 s per "
                        "image on one busy CPU thread)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fid-weights", help="InceptionV3 TorchScript (default: shipped)")
    args = parser.parse_args()

    out = Path(args.out)
    folders = split_folders(Path(args.data), out / "data")
    device = result_device(args.device)
    runs = {family: out / family for family in args.families.split(",") if family}
    runs.update(dict(item.split("=", 1) for item in args.also_score))
    val_a = sorted(folders["val_twitter"].glob("*.png"))
    val_b = [folders["val_google"] / p.name for p in val_a]
    fid_count = len(val_a) if args.fid_images < 0 else args.fid_images
    features = InceptionFeatures.load(args.fid_weights, device=device) if fid_count else None
    real_feats = None
    summary: dict[str, dict[str, object]] = {}  # per run, plus the identity map
    pipes = {}
    for name, run_dir in runs.items():
        run_dir = Path(run_dir)
        started = time.perf_counter()
        if name in ("unit", "cyclegan") and trained_steps(run_dir) < args.steps:
            train(run_config(name, args, folders), run_dir,
                  resume=(run_dir / "config.json").exists())
        train_seconds = time.perf_counter() - started
        pipe = pipes[name] = ImageToImagePipeline.from_pretrained(run_dir, device=device)
        report = evaluate_translation(pipe, folders["val_twitter"], folders["val_google"],
                                      direction="a2b", fid_weights=out / "no-fid-here",
                                      progress=False)
        sources = pipe.preprocess(val_a)
        entry = summary[name] = {
            "run": str(run_dir), "family": pipe.family,
            "config": json.loads((run_dir / "config.json").read_text()),
            "trained_steps": pipe.trained_steps, "train_seconds_this_call": train_seconds,
            "train_images_per_second": train_images_per_second(run_dir),
            "inference_images_per_second": inference_images_per_second(pipe, sources),
            **report.as_dict()}
        report.notes = [n for n in report.notes if not n.startswith("FID/KID not computed")]
        if features is not None:
            if real_feats is None:
                real_feats = features.features_of(
                    pipe.preprocess(val_b[:fid_count]).add(1).div(2), 32, False)
                summary["identity"] = {"fid": fid_to_target(features, sources[:fid_count],
                                                            real_feats),
                                       "fid_images": fid_count, **report.identity}
            entry["translation"]["fid"] = fid_to_target(
                features, pipe.translate_tensor(sources[:fid_count]), real_feats)
            entry["fid_images"] = fid_count
        if pipe.family == "unit":
            gens = [[torch.Generator().manual_seed(s) for _ in sources[:64]] for s in (1, 2)]
            first, second = (pipe.translate_tensor(sources[:64], "a2b", generator=g)
                             for g in gens)
            entry["sample_to_sample_l1"] = float((first - second).abs().mean() / 2)
        print(f"== {name} ({pipe.trained_steps} steps)\n{report.table()}"
              + (f"\nfid ({fid_count} images) {entry['translation']['fid']:.1f}"
                 if fid_count else ""))

    inputs = next(iter(pipes.values())).preprocess(val_a[:8])
    rows = [inputs, *(pipe.translate_tensor(inputs).cpu() for pipe in pipes.values()),
            next(iter(pipes.values())).preprocess(val_b[:8])]
    image_grid(rows).save(out / "val_grid.png")
    summary["device"] = {"name": torch.cuda.get_device_name() if device.startswith("cuda")
                         else "cpu", "threads": torch.get_num_threads()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if "identity" in summary:
        print(f"identity map: FID ({fid_count} images) {summary['identity']['fid']:.1f}")
    for name, pipe in pipes.items():
        s, t = summary[name], summary[name]["translation"]
        print(f"{name:<14} steps {pipe.trained_steps:>5}  L1 {t['l1']:.3f}  PSNR "
              f"{t['psnr']:.2f}  SSIM {t['ssim']:.3f}  FID {t.get('fid', float('nan')):.1f}  "
              f"train {s['train_images_per_second']:.1f} img/s  "
              f"inference {s['inference_images_per_second']:.1f} img/s")
    print(f"grid (twitter, {', '.join(pipes)}, google): {out / 'val_grid.png'}")


if __name__ == "__main__":
    main()
