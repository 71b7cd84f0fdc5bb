"""Real run: the shipped restyle model, flat emoji (Twemoji and Noto) -> Fluent Emoji 3D, 64 px.

Builds paired folders under OUT from ../shared/data/emoji (see its README): inputs Twemoji and
Noto 64 px, targets Fluent Emoji 3D 256 px downscaled to 64 px (alpha kept, premultiplied
resize). About 15% of base emoji (all skin tones of a base together) are held out by
``emoji_split(base_id, 0.15, seed=1)``, the split of the text-to-image benchmarks; they never
enter training. Then trains ``ganforge train pix2pix`` (resuming OUT/run if it exists) and scores
the held-out pairs with ``ganforge evaluate translation``: the model, the identity map, and the
real-vs-real floor (as many *other* real 3D images, from the training split, as there are
validation pairs, scored against the validation targets).

    OMP_NUM_THREADS=2 python benchmarks/restyle_emoji.py --out runs/restyle \
        --grid docs/images/restyle_3d_val.png --ship ganforge/assets/restyle-3d-64-pix2pix
    python benchmarks/restyle_emoji.py --out runs/restyle --prepare-only   # folders only

Layout under OUT: train/a/{twitter,google}/<id>.png paired with train/b/{twitter,google}/<id>.png
(the same 3D target under both input styles), val/a/<id>.png (Twemoji) with val/b/<id>.png,
val/a_google/<id>.png (Noto) with val/b, val/floor/<id>.png (another emoji's 3D image, from
train) with val/b; run/ is the training run, eval/pix2pix-{twitter,floor}.json the figures
(the floor's figures are its "identity" column).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "emoji"
INPUT_STYLES = ("twitter", "google")
#: the shipped model's recipe (measured on 2 CPU cores, 1 torch thread: see its model card)
TRAIN_ARGS = ["--size", "64", "--generator-channels", "40", "--generator-max-channels", "160",
              "--generator-depth", "6", "--upsample", "resize", "--residual",
              "--residual-blur", "4",
              "--discriminator-channels", "64", "--discriminator-layers", "3",
              "--gan-loss", "lsgan", "--l1-weight", "10", "--feature-matching-weight", "10",
              "--dropout", "0", "--jitter", "4",
              "--batch-size", "16", "--lr", "2e-4", "--lr-decay-start", "0.6",
              "--log-every", "50", "--sample-every", "1000", "--checkpoint-every", "1000",
              "--keep-checkpoints", "2", "--seed", "0",
              # what precision=auto chose on the CPU it was trained on (AMX): pinned so the
              # command reproduces the shipped weights on any device
              "--precision", "bf16"]
#: the unpaired families beside it, trained on the same folders read as unpaired (short CPU
#: runs: the recipes of benchmarks/unit_vs_cyclegan.py, 16 channels, batch 4)
UNPAIRED_ARGS = {
    "cyclegan": ["--size", "64", "--generator-channels", "16", "--generator-blocks", "6",
                 "--discriminator-channels", "16", "--batch-size", "4", "--log-every", "20",
                 "--sample-every", "250", "--checkpoint-every", "250", "--seed", "0"],
    "unit": ["--size", "64", "--channels", "16", "--blocks", "4", "--shared-blocks", "1",
             "--discriminator-channels", "16", "--batch-size", "4", "--log-every", "20",
             "--sample-every", "250", "--checkpoint-every", "250", "--seed", "0"],
}


def rgba(path: Path, size: int) -> Image.Image:
    """An image as RGBA at ``size`` px: premultiplied resize, so that transparent pixels'
    hidden colours do not bleed into the edges."""
    with Image.open(path) as im:
        im = im.convert("RGBA")
        if im.size != (size, size):
            side = min(im.size)
            left, top = (im.width - side) // 2, (im.height - side) // 2
            im = im.crop((left, top, left + side, top + side))
            im = im.convert("RGBa").resize((size, size), Image.LANCZOS).convert("RGBA")
        return im


def prepare(data: Path, out: Path, size: int = 64, seed: int = 0) -> dict[str, int]:
    """Write the paired train/val folders under ``out`` (skipped when already there)."""
    from ganforge.data.emoji import emoji_split

    done = out / "prepared.json"
    if done.exists():
        return json.loads(done.read_text())
    rows = [json.loads(line) for line in (data / "metadata.jsonl").read_text().splitlines()]
    rows = [r for r in rows if (data / "fluent3d" / "256" / f"{r['id']}.webp").is_file()]
    counts = {"train": 0, "val": 0}
    train_ids, val_ids = [], []
    for row in rows:
        split = emoji_split(row["base_id"], 0.15, seed=1)
        target = rgba(data / "fluent3d" / "256" / f"{row['id']}.webp", size)
        if split == "train":
            for style in INPUT_STYLES:
                for side, image in (("a", rgba(data / style / "64" / f"{row['id']}.png", size)),
                                    ("b", target)):
                    path = out / "train" / side / style / f"{row['id']}.png"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    image.save(path)
            train_ids.append(row["id"])
        else:
            for folder, image in (("a", rgba(data / "twitter" / "64" / f"{row['id']}.png", size)),
                                  ("a_google", rgba(data / "google" / "64" / f"{row['id']}.png",
                                                    size)),
                                  ("b", target)):
                path = out / "val" / folder / f"{row['id']}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                image.save(path)
            val_ids.append(row["id"])
        counts[split] += 1
    # the floor: as many other real 3D images (training emoji) as validation pairs, each
    # named after a validation emoji so that evaluate translation pairs it with that target
    others = random.Random(seed).sample(sorted(train_ids), len(val_ids))
    (out / "val" / "floor").mkdir(parents=True, exist_ok=True)
    for val_id, other in zip(sorted(val_ids), others, strict=True):
        rgba(data / "fluent3d" / "256" / f"{other}.webp", size).save(
            out / "val" / "floor" / f"{val_id}.png")
    done.write_text(json.dumps(counts) + "\n")
    return counts


def alpha_iou(source: Path, target: Path, scale: float = 1.0) -> float:
    """Overlap (intersection over union) of two RGBA images' opaque pixels (alpha > 127), the
    source first shrunk by ``scale`` about its centre (as pix2pix's --input-scale does)."""
    with Image.open(source) as im:
        im = im.convert("RGBA")
        if scale != 1:
            side = round(im.width * scale)
            small = im.convert("RGBa").resize((side, side), Image.LANCZOS).convert("RGBA")
            im = Image.new("RGBA", im.size, (0, 0, 0, 0))
            im.paste(small, ((im.width - side) // 2, (im.height - side) // 2))
        a = torch.from_numpy(np.asarray(im)[..., 3] > 127)
    with Image.open(target) as im:
        b = torch.from_numpy(np.asarray(im.convert("RGBA"))[..., 3] > 127)
    return float((a & b).sum() / max(int((a | b).sum()), 1))


def aligned_pairs(out: Path, min_iou: float, scale: float) -> Path:
    """OUT/train_aligned: links to the training pairs whose silhouettes overlap by at least
    ``min_iou`` once the input is shrunk by ``scale`` (Fluent 3D draws some emoji in another
    pose or view than Twemoji/Noto: a pixel-aligned loss on those pairs teaches smears). The
    validation pairs are not filtered. Returns the folder; prints what it kept."""
    folder = out / f"train_aligned_{min_iou:g}_{scale:g}"
    if (folder / "kept.json").exists():
        return folder
    kept = dropped = 0
    for source in sorted((out / "train" / "a").rglob("*.png")):
        relative = source.relative_to(out / "train" / "a")
        target = out / "train" / "b" / relative
        if alpha_iou(source, target, scale) < min_iou:
            dropped += 1
            continue
        kept += 1
        for side, path in (("a", source), ("b", target)):
            link = folder / side / relative
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(path.resolve())
    (folder / "kept.json").write_text(json.dumps({"kept": kept, "dropped": dropped}) + "\n")
    print(f"aligned pairs (IoU >= {min_iou} at input scale {scale}): kept {kept}, "
          f"dropped {dropped}")
    return folder


def is_skin_tone_variant(emoji_id: str) -> bool:
    """Whether an emoji id carries a skin-tone modifier (U+1F3FB..U+1F3FF)."""
    return any(tone in emoji_id.split("-") for tone in ("1f3fb", "1f3fc", "1f3fd", "1f3fe",
                                                         "1f3ff"))


def finetune_without_skin_tones(out: Path, run: Path, steps: int) -> Path:
    """Stage 2: continue ``run`` (copied to OUT/run-clean) to ``steps`` on the training pairs
    without skin-tone variants, whose Fluent 3D images do not match their ids' skin tones in
    this data (``docs/benchmarks.md``, restyle section). Data options cannot change on a CLI
    resume, so this stage goes through the Python API."""
    from ganforge.config import RunConfig
    from ganforge.train.loop import train

    clean = out / "train_clean"
    for side in ("a", "b"):
        for path in sorted((out / "train" / side).rglob("*.png")):
            if not is_skin_tone_variant(path.stem):
                link = clean / side / path.relative_to(out / "train" / side)
                link.parent.mkdir(parents=True, exist_ok=True)
                if not link.exists():
                    link.symlink_to(path.resolve())
    target = out / "run-clean"
    if not target.exists():
        shutil.copytree(run, target)
        config = RunConfig.load(target / "config.json")
        config.data.update(domain_a=str(clean / "a"), domain_b=str(clean / "b"))
    else:
        config = RunConfig.load(target / "config.json")
    config.train["steps"] = steps
    train(config, target, resume=True)
    return target


def trained_steps(run: Path) -> int:
    """Steps of the model a run exported (0 before its first checkpoint)."""
    config = run / "model" / "config.json"
    return json.loads(config.read_text())["trained_steps"] if config.exists() else 0


def ganforge(*args: str) -> str:
    """Run the ganforge CLI; its output, also echoed."""
    result = subprocess.run([sys.executable, "-m", "ganforge.cli", *args], check=True,
                            capture_output=True, text=True)
    print(result.stdout, end="")
    return result.stdout


def evaluate(out: Path, model: Path, label: str = "pix2pix", google: bool = False
             ) -> dict[str, dict]:
    """evaluate translation of the validation pairs (Twemoji inputs; Noto too with
    ``google``) and the floor, each written to OUT/eval/LABEL-NAME.json."""
    figures = {}
    (out / "eval").mkdir(exist_ok=True)
    sources = [("twitter", "a"), ("floor", "floor")] + ([("google", "a_google")] if google
                                                        else [])
    for name, source in sources:
        target = out / "eval" / f"{label}-{name}.json"
        ganforge("evaluate", "translation", "--model", str(model), "--a",
                 str(out / "val" / source), "--b", str(out / "val" / "b"), "--device", "cpu",
                 "--no-progress", "--json", str(target))
        figures[name] = json.loads(target.read_text())
    return figures


def grid(out: Path, model: Path, path: Path, count: int = 10, seed: int = 0) -> None:
    """Rows: Twemoji input, translation, true 3D image, for ``count`` validation emoji."""
    from ganforge.data.images import image_grid
    from ganforge.pipelines import ImageToImagePipeline

    pipe = ImageToImagePipeline.from_pretrained(model)
    names = sorted(p.name for p in (out / "val" / "a").glob("*.png"))
    names = sorted(random.Random(seed).sample(names, count))
    sources = pipe.preprocess([out / "val" / "a" / n for n in names])
    targets = pipe.preprocess([out / "val" / "b" / n for n in names])
    image_grid([sources, pipe.translate_tensor(sources), targets]).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--steps", type=int, default=7000)
    parser.add_argument("--min-iou", type=float, default=0.6,
                        help="pix2pix trains only on pairs whose silhouettes overlap by this "
                        "much (IoU of alpha > 127, input shrunk by --input-scale); 0 = all")
    parser.add_argument("--input-scale", type=float, default=0.875,
                        help="the recipe's --input-scale (also used by --min-iou; 1 = off)")
    parser.add_argument("--clean-steps", type=int, default=0,
                        help="pix2pix stage 2 (tried, not shipped: 18200): continue into "
                        "OUT/run-clean to this step on the pairs without skin-tone variants "
                        "(default 0: no stage 2)")
    parser.add_argument("--family", default="pix2pix", choices=["pix2pix", *UNPAIRED_ARGS],
                        help="pix2pix (the shipped model), or an unpaired family beside it "
                        "(trained into OUT/run-FAMILY; give it --steps)")
    parser.add_argument("--prepare-only", action="store_true")
    parser.add_argument("--grid", type=Path, help="also write the validation grid here")
    parser.add_argument("--google", action="store_true",
                        help="also score Noto (google) inputs of the validation emoji")
    parser.add_argument("--ship", type=Path, help="copy the exported model (config.json, "
                        "model.safetensors) into this folder, e.g. "
                        "ganforge/assets/restyle-3d-64-pix2pix")
    args = parser.parse_args()
    torch.set_num_threads(1)

    start = time.perf_counter()
    print("pairs (emoji):", prepare(args.data, args.out))
    if args.prepare_only:
        return
    run = args.out / ("run" if args.family == "pix2pix" else f"run-{args.family}")
    recipe = TRAIN_ARGS if args.family == "pix2pix" else UNPAIRED_ARGS[args.family]
    train_folder = args.out / "train"
    if args.family == "pix2pix":
        if args.input_scale != 1:
            recipe = [*recipe, "--input-scale", str(args.input_scale)]
        if args.min_iou > 0:
            train_folder = aligned_pairs(args.out, args.min_iou, args.input_scale)
    if trained_steps(run) >= args.steps:
        pass  # trained already
    elif (run / "config.json").exists():
        ganforge("train", args.family, "--resume", str(run), "--steps", str(args.steps))
    else:
        ganforge("train", args.family, "--domain-a", str(train_folder / "a"),
                 "--domain-b", str(train_folder / "b"), "--out", str(run),
                 "--steps", str(args.steps), *recipe)
    figures = evaluate(args.out, run, args.family, google=args.google)
    if args.grid:
        grid(args.out, run, args.grid)
    if args.ship:
        args.ship.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "model.safetensors"):
            shutil.copyfile(run / "model" / name, args.ship / name)
    if args.family == "pix2pix" and args.clean_steps > args.steps:
        clean = finetune_without_skin_tones(args.out, run, args.clean_steps)
        figures["clean"] = evaluate(args.out, clean, "pix2pix-clean")
    print(json.dumps(figures, indent=2))
    print(f"wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
