"""x4 super-resolution on held-out Fluent Emoji 3D images: our upscaler against bicubic.

Held-out images: the ``val`` rows of a built emoji dataset (``ganforge data emoji --styles
fluent3d``; those ids are not in the training folder) when ``--data`` has a metadata.jsonl
with a split column, else a seeded 10% of the ids of ``--data`` (exclude them from training
with ``--write-train-list``). Each 256 px image (composited on white) is bicubic-downsampled to
64 px, upscaled back x4 by bicubic and by the model, and compared with the original: PSNR and
SSIM (ganforge.metrics.image) and FID at 256 px (ganforge.metrics.fid, standard InceptionV3
features; with few images FID is biased upwards: compare the two rows, not with published
figures). Also writes crops side by side (bicubic | ours | original) and the upscaling speed.

    python benchmarks/upscale_fluent3d.py --data /tmp/emoji-build --limit 200 \\
        --figure docs/images/upscale_fluent3d.png
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from ganforge.data.images import fit_square, open_rgb, pil_to_float
from ganforge.metrics.fid import InceptionFeatures, fid_from_features
from ganforge.metrics.image import psnr, ssim
from ganforge.models.esrgan import bicubic_downscale, bicubic_upscale
from ganforge.pipelines import UpscalePipeline


def held_out(data: Path, fraction: float, seed: int) -> list[Path]:
    """Held-out fluent3d images: the val split when the dataset has one, else a seeded share."""
    folder = data / "fluent3d" / "256" if (data / "fluent3d" / "256").is_dir() else data
    files = {p.stem: p for p in sorted(folder.glob("*.webp")) + sorted(folder.glob("*.png"))}
    metadata = data / "metadata.jsonl"
    if metadata.is_file():
        rows = [json.loads(line) for line in metadata.open() if line.strip()]
        val = [files[r["id"]] for r in rows if r.get("split") == "val" and r["id"] in files]
        if val:
            return val
    ids = sorted(files)
    return [files[i] for i in sorted(random.Random(seed).sample(ids, round(fraction * len(ids))))]


def side_by_side(rows: list[tuple[Image.Image, Image.Image, Image.Image]], crop: int,
                 path: Path) -> None:
    """Centre crops of (bicubic, ours, original) per row, labelled, as one PNG."""
    pad, label = 4, 14
    canvas = Image.new("RGB", (3 * crop + 4 * pad, len(rows) * (crop + pad) + pad + label),
                       "white")
    draw = ImageDraw.Draw(canvas)
    for col, name in enumerate(("bicubic", "ours (x4 ESRGAN)", "original")):
        draw.text((pad + col * (crop + pad), 2), name, fill="black")
    for r, images in enumerate(rows):
        for col, im in enumerate(images):
            w, h = im.size
            box = ((w - crop) // 2, (h - crop) // 2, (w + crop) // 2, (h + crop) // 2)
            canvas.paste(im.crop(box), (pad + col * (crop + pad), label + pad + r * (crop + pad)))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/tmp/emoji-build",
                        help="built emoji dataset (with metadata.jsonl) or a fluent3d folder")
    parser.add_argument("--model", help="upscaler (default: the shipped one)")
    parser.add_argument("--limit", type=int, default=200, help="held-out images used (0 = all)")
    parser.add_argument("--fraction", type=float, default=0.1, help="held-out share without a "
                        "val split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--steps", type=int, default=0, help="train a fresh model for this many "
                        "steps first (on --train-images, e.g. on a GPU); 0 = use --model")
    parser.add_argument("--train-images", default="/work/shared/data/emoji/fluent3d/256")
    parser.add_argument("--figure", default="docs/images/upscale_fluent3d.png")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    model = args.model
    if args.steps:
        from ganforge.cli import main as cli

        run = Path(f"runs/upscale_bench_{args.steps}")
        cli(["train", "esrgan", "--images", args.train_images, "--out", str(run), "--steps",
             str(args.steps), "--warmup-steps", str(args.steps * 2 // 3), "--device",
             args.device, "--no-progress"])
        model = str(run)
    pipe = UpscalePipeline.from_pretrained(model, device=args.device)
    paths = held_out(Path(args.data), args.fraction, args.seed)
    if args.limit:
        paths = paths[:args.limit]
    originals = [fit_square(open_rgb(p), 256) for p in paths]  # 4 images are 256x264
    lows = [bicubic_downscale(im, 4) for im in originals]
    bicubic = [bicubic_upscale(im, 4) for im in lows]
    start = time.perf_counter()
    ours = pipe(lows, tile=args.tile)
    seconds = time.perf_counter() - start
    pipe.watermark = False  # what the network gives before the invisible watermark is added
    unmarked = pipe(lows, tile=args.tile)

    def unit(images: list[Image.Image]) -> torch.Tensor:
        return pil_to_float(images).add(1).div(2)

    target = unit(originals)
    inception = InceptionFeatures.load(device=args.device)
    real = inception.features_of(target, batch_size=25)
    figures = {"images": len(paths), "held_out": "val split" if (Path(args.data) /
               "metadata.jsonl").is_file() else f"seeded {args.fraction:.0%}",
               "model": pipe.name, "trained_steps": pipe.trained_steps,
               "seconds_per_image": seconds / len(paths)}
    for name, images in (("bicubic", bicubic), ("ours", ours), ("ours_unmarked", unmarked)):
        pred = unit(images)
        figures[name] = {"psnr": psnr(pred, target).mean().item(),
                         "ssim": ssim(pred, target).mean().item(),
                         "fid": fid_from_features(
                             inception.features_of(pred, batch_size=25), real)}
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    picks = [0, len(paths) // 3, 2 * len(paths) // 3, len(paths) - 1]
    side_by_side([(bicubic[i], ours[i], originals[i]) for i in picks], 128, Path(args.figure))
    print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
