"""UNIT beside CycleGAN: twitter -> google emoji, 64 px, scored against the true google image.

The split, the data and the step budget are those of ``benchmarks/emoji_translation.py``
(15% of base emoji held out by a stable hash; unpaired training folders; no flips). Each family
is trained with the loop (or an existing run is scored), then both are scored on the same
validation pairs: paired L1/PSNR/SSIM and FID/KID (``evaluate_translation``), training img/s
(median of the loop's logged windows), inference img/s (``translate_tensor``, batch 32, after
a warm-up), and for UNIT the mean L1 between two latent samples of the same input.

    # CPU (about 10 min; reuse the CycleGAN run emoji_translation.py wrote)
    python benchmarks/unit_vs_cyclegan.py --out /tmp/unit-vs-cyclegan --steps 600 \
        --batch-size 4 --channels 16 --device cpu --cyclegan-run /tmp/emojirun/run
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/work/shared/data/emoji")
    parser.add_argument("--out", default="runs/unit-vs-cyclegan")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--channels", type=int, default=16, help="both families' first layer")
    parser.add_argument("--unit-blocks", type=int, default=4)
    parser.add_argument("--shared-blocks", type=int, default=1)
    parser.add_argument("--cyclegan-blocks", type=int, default=6)
    parser.add_argument("--cyclegan-run", help="score this finished CycleGAN run (trained on "
                        "the same split, e.g. by emoji_translation.py) instead of training one")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fid-weights", help="InceptionV3 TorchScript (default: shipped)")
    args = parser.parse_args()

    out = Path(args.out)
    folders = split_folders(Path(args.data), out / "data")
    device = result_device(args.device)
    runs = {"unit": out / "unit", "cyclegan": Path(args.cyclegan_run or out / "cyclegan")}
    summary: dict[str, dict[str, object]] = {}
    pipes = {}
    for family, run_dir in runs.items():
        config = run_config(family, args, folders)
        started = time.perf_counter()
        if family == "unit" or not args.cyclegan_run:
            train(config, run_dir, resume=(run_dir / "config.json").exists())
        train_seconds = time.perf_counter() - started
        pipe = pipes[family] = ImageToImagePipeline.from_pretrained(run_dir, device=device)
        report = evaluate_translation(pipe, folders["val_twitter"], folders["val_google"],
                                      direction="a2b", fid_weights=args.fid_weights,
                                      progress=False)
        print(f"== {family}\n{report.table()}")
        sources = pipe.preprocess(sorted(folders["val_twitter"].glob("*.png")))
        summary[family] = {
            "run": str(run_dir), "config": json.loads((run_dir / "config.json").read_text()),
            "trained_steps": pipe.trained_steps, "train_seconds_this_call": train_seconds,
            "train_images_per_second": train_images_per_second(run_dir),
            "inference_images_per_second": inference_images_per_second(pipe, sources),
            **report.as_dict()}
        if family == "unit":
            gens = [[torch.Generator().manual_seed(s) for _ in sources[:64]] for s in (1, 2)]
            first, second = (pipe.translate_tensor(sources[:64], "a2b", generator=g)
                             for g in gens)
            summary[family]["sample_to_sample_l1"] = float((first - second).abs().mean() / 2)
            summary[family]["sampled_inference_images_per_second"] = \
                inference_images_per_second(pipe, sources[:64], batch_size=len(sources[:64]),
                                            generator=torch.Generator().manual_seed(0))

    sources = sorted(folders["val_twitter"].glob("*.png"))[:8]
    inputs = pipes["unit"].preprocess(sources)
    rows = [inputs, pipes["unit"].translate_tensor(inputs).cpu(),
            pipes["cyclegan"].translate_tensor(inputs).cpu(),
            pipes["unit"].preprocess([folders["val_google"] / s.name for s in sources])]
    image_grid(rows).save(out / "val_grid.png")
    summary["device"] = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for family in ("unit", "cyclegan"):
        s = summary[family]
        print(f"{family:<9} L1 {s['translation']['l1']:.3f}  PSNR {s['translation']['psnr']:.2f}"
              f"  SSIM {s['translation']['ssim']:.3f}  FID {s['translation'].get('fid', 0):.1f}"
              f"  train {s['train_images_per_second']:.1f} img/s"
              f"  inference {s['inference_images_per_second']:.1f} img/s")
    print(f"grid (twitter, UNIT, CycleGAN, google): {out / 'val_grid.png'}")


if __name__ == "__main__":
    main()
