"""Real run: one multi-domain translator (StarGAN v2 school) over three emoji styles.

Trains ``ganforge train stargan`` on google, twitter and fluent3d emoji (fluent3d's 256 px
images resized to the training size) with ~15% of base emoji held out (all skin tones of a base
together, by a stable hash; the same split as benchmarks/emoji_translation.py). The emoji ids
are paired across styles, so every held-out translation source -> target style is scored
against the true image of that emoji in the target style: L1, PSNR and SSIM per target style,
beside the identity baseline (the source image itself), and inference speed in img/s.

    python benchmarks/multistyle_emoji.py --out runs/multistyle                  # CPU, ~10 min
    python benchmarks/multistyle_emoji.py --out runs/multistyle-gpu --device cuda \
        --size 64 --steps 20000 --batch-size 16 --channels 64 --lr 1e-4 \
        --diversity-weight 1                                                     # a GPU run
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from ganforge.config import RunConfig
from ganforge.data.images import ImageFolder, image_grid, uint8_to_float
from ganforge.metrics.image import l1, psnr, ssim
from ganforge.pipelines import ImageToImagePipeline
from ganforge.train.loop import train

STYLES = {"google": "google/64/{id}.png", "twitter": "twitter/64/{id}.png",
          "fluent3d": "fluent3d/256/{id}.webp"}


def held_out(base_id: str, fraction: float = 0.15) -> bool:
    """Stable split by base emoji (as benchmarks/emoji_translation.py)."""
    import hashlib

    digest = hashlib.sha256(f"val:{base_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def split_folders(data: Path, work: Path) -> dict[tuple[str, str], Path]:
    """Symlink (split, style) folders under ``work`` for the ids that have that style."""
    folders = {(split, style): work / split / style for split in ("train", "val")
               for style in STYLES}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    for line in (data / "metadata.jsonl").read_text().splitlines():
        row = json.loads(line)
        split = "val" if held_out(row["base_id"]) else "train"
        for style, template in STYLES.items():
            source = data / template.format(id=row["id"])
            link = folders[(split, style)] / source.name
            if source.is_file() and not link.exists():
                os.symlink(source.resolve(), link)
    return folders


def paired(folders: dict[tuple[str, str], Path], source: str, target: str, size: int,
           limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Held-out images of the ids present in both styles: (source, target) uint8 [N, 3, S, S]."""
    def stems(style: str) -> dict[str, Path]:
        return {p.stem: p for p in sorted(folders[("val", style)].iterdir())}

    a, b = stems(source), stems(target)
    ids = sorted(set(a) & set(b))[:limit]
    return (ImageFolder.load(folders[("val", source)], size, files=[a[i] for i in ids]).images,
            ImageFolder.load(folders[("val", target)], size, files=[b[i] for i in ids]).images)


def scores(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Mean L1, PSNR, SSIM of images in [0, 1]."""
    return {"l1": float(l1(pred, target).mean()), "psnr": float(psnr(pred, target).mean()),
            "ssim": float(ssim(pred, target).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/work/shared/data/emoji")
    parser.add_argument("--out", default="runs/multistyle-emoji")
    parser.add_argument("--size", type=int, default=32, help="training size (CPU default 32)")
    parser.add_argument("--steps", type=int, default=400, help="CPU default: about 8 min")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--max-channels", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3, help="generator/critic Adam rate "
                        "(the paper's 1e-4 suits long GPU runs)")
    parser.add_argument("--diversity-weight", type=float, default=0.1,
                        help="initial style-diversification weight (paper: 1 or 2)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--eval-images", type=int, default=200,
                        help="held-out pairs per (source, target) style pair")
    args = parser.parse_args()

    out = Path(args.out)
    folders = split_folders(Path(args.data), out / "data")
    run_dir = out / "run"
    config = RunConfig(
        family="stargan",
        model={"num_domains": 3, "size": args.size, "channels": args.channels,
               "max_channels": args.max_channels, "downsamplings": 2, "bottleneck_blocks": 2,
               "style_dim": 32, "latent_dim": 16, "mapping_channels": 128,
               "diversity_weight": args.diversity_weight, "diversity_decay_steps": args.steps,
               "lr": args.lr, "mapping_lr": args.lr / 10},
        data={"domains": ",".join(str(folders[("train", s)]) for s in STYLES), "flip": False},
        train={"steps": args.steps, "batch_size": args.batch_size, "device": args.device,
               "sample_every": max(args.steps // 5, 1), "checkpoint_every": args.steps,
               "log_every": 50, "ema_decay": 0.99 if args.steps < 10000 else 0.999,
               "progress": False},
    )
    started = time.perf_counter()
    result = train(config, run_dir, resume=(run_dir / "config.json").exists())
    train_seconds = time.perf_counter() - started

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" \
        else args.device
    pipe = ImageToImagePipeline.from_pretrained(run_dir, device=device)
    report: dict[str, dict] = {}
    translated, seconds = 0, 0.0
    grid_rows = []
    for target in STYLES:
        per_source = {}
        for source in STYLES:
            if source == target:
                continue
            src, tgt = paired(folders, source, target, args.size, args.eval_images)
            tic = time.perf_counter()
            fake = torch.cat([pipe.translate_tensor(uint8_to_float(chunk), style=target).cpu()
                              for chunk in src.split(64)])
            seconds += time.perf_counter() - tic
            translated += len(src)
            fake01, src01, tgt01 = (fake + 1) / 2, src.float() / 255, tgt.float() / 255
            per_source[source] = {"count": len(src), "translation": scores(fake01, tgt01),
                                  "identity": scores(src01, tgt01)}
            if source == "twitter" or (target == "twitter" and source == "google"):
                grid_rows += [uint8_to_float(src[:8]), fake[:8], uint8_to_float(tgt[:8])]
        count = sum(v["count"] for v in per_source.values())
        report[target] = {
            kind: {m: sum(v[kind][m] * v["count"] for v in per_source.values()) / count
                   for m in ("l1", "psnr", "ssim")} for kind in ("translation", "identity")}
        report[target]["count"] = count
        report[target]["per_source"] = per_source
    image_grid(grid_rows).save(out / "val_grid.png")

    print(f"trained {result.step} steps in {train_seconds:.0f} s "
          f"({result.images_per_second:.1f} img/s training); translation "
          f"{translated / seconds:.1f} img/s on {device}")
    print(f"{'target style':<12} {'pairs':>5}  {'L1 (id.)':>15}  {'PSNR dB (id.)':>15}  "
          f"{'SSIM (id.)':>15}")
    for target, r in report.items():
        t, i = r["translation"], r["identity"]
        print(f"{target:<12} {r['count']:>5}  {t['l1']:>6.3f} ({i['l1']:.3f})  "
              f"{t['psnr']:>7.2f} ({i['psnr']:.2f})  {t['ssim']:>6.3f} ({i['ssim']:.3f})")
    summary = {"train_seconds": train_seconds, "steps": result.step,
               "train_images_per_second": result.images_per_second,
               "translate_images_per_second": translated / seconds, "device": device,
               "torch_threads": torch.get_num_threads(), "config": config.__dict__,
               "per_target_style": report}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
