"""Real run: CycleGAN twitter -> google on the emoji data, scored against the true google image.

Holds out ~15% of base emoji (all skin-tone variants together, chosen by a stable hash) as a
validation split, trains on the rest as unpaired folders, then reports paired L1/PSNR/SSIM and
FID/KID of the translation against the identity baseline, and writes a sample grid.

    python benchmarks/emoji_translation.py --data ../shared/data/emoji --out runs/emoji \
        --steps 6000 --batch-size 16 --device cuda          # the H100 recipe (about 10 min)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

import torch

from ganforge.config import RunConfig
from ganforge.data.images import image_grid
from ganforge.metrics.translation import evaluate_translation
from ganforge.pipelines import ImageToImagePipeline
from ganforge.train.loop import train


def held_out(base_id: str, fraction: float = 0.15) -> bool:
    """Stable split by base emoji: the same ids are held out on every machine."""
    digest = hashlib.sha256(f"val:{base_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def split_folders(data: Path, work: Path) -> dict[str, Path]:
    """Symlink train/val folders of both styles under ``work``; returns the four folders."""
    folders = {f"{split}_{style}": work / split / style
               for split in ("train", "val") for style in ("twitter", "google")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    for line in (data / "metadata.jsonl").read_text().splitlines():
        row = json.loads(line)
        split = "val" if held_out(row["base_id"]) else "train"
        for style in ("twitter", "google"):
            link = folders[f"{split}_{style}"] / f"{row['id']}.png"
            if not link.exists():
                os.symlink((data / style / "64" / f"{row['id']}.png").resolve(), link)
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="../shared/data/emoji")
    parser.add_argument("--out", default="runs/emoji-cyclegan")
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate")
    parser.add_argument("--precision", default="auto", help="auto, fp32 or bf16")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    out = Path(args.out)
    folders = split_folders(Path(args.data), out / "data")
    run_dir = out / "run"
    config = RunConfig(
        family="cyclegan",
        model={"generator_blocks": args.blocks, "generator_channels": args.channels,
               "discriminator_channels": args.channels, "lr": args.lr},
        data={"domain_a": str(folders["train_twitter"]), "domain_b": str(folders["train_google"]),
              "size": 64, "flip": False},
        train={"steps": args.steps, "batch_size": args.batch_size, "device": args.device,
               "compile": args.compile, "precision": args.precision, "seed": args.seed,
               "sample_every": max(args.steps // 10, 1),
               "checkpoint_every": max(args.steps // 10, 1), "log_every": 50,
               "progress": False},
    )
    started = time.perf_counter()
    result = train(config, run_dir, resume=(run_dir / "config.json").exists())
    train_seconds = time.perf_counter() - started

    pipe = ImageToImagePipeline.from_pretrained(run_dir, device=result_device(args.device))
    report = evaluate_translation(pipe, folders["val_twitter"], folders["val_google"],
                                  direction="a2b", progress=False)
    print(report.table())
    sources = sorted(folders["val_twitter"].glob("*.png"))[:8]
    rows = [pipe.preprocess(sources),
            pipe.translate_tensor(pipe.preprocess(sources)).cpu(),
            pipe.preprocess([folders["val_google"] / s.name for s in sources])]
    image_grid(rows).save(out / "val_grid.png")
    summary = {"train_seconds": train_seconds, "steps": result.step,
               "images_per_second": result.images_per_second,
               "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
               "config": config.__dict__, **report.as_dict()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def result_device(name: str) -> str:
    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


if __name__ == "__main__":
    main()
