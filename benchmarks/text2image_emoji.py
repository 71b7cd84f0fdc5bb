"""Train the text-to-image GAN on the emoji data (twitter style, 64 px) with a held-out split.

Writes OUT/metadata.jsonl: the prepared emoji captions with absolute image paths and our own
validation split (15% of base emoji, `emoji_split(..., seed=1)`), then trains into OUT/run.
The shipped default model (ganforge/assets/text2image-emoji-64) was made by this script.

    python benchmarks/text2image_emoji.py --data ../shared/data/emoji --out runs/t2i-emoji \
        --steps 2400 --batch-size 32 --channels 16 --device cpu
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from ganforge.config import RunConfig
from ganforge.data.emoji import emoji_split
from ganforge.train.loop import train


def write_split_metadata(data: Path, out: Path, style: str = "twitter") -> Path:
    """The emoji metadata with an `image` path per row and our train/val split."""
    out.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in (data / "metadata.jsonl").read_text().splitlines()]
    target = out / "metadata.jsonl"
    with open(target, "w") as fh:
        for row in rows:
            row = {**row, "image": str((data / style / "64" / f"{row['id']}.png").resolve()),
                   "split": emoji_split(row["base_id"], 0.15, seed=1)}
            fh.write(json.dumps(row) + "\n")
    return target


def main(argv: list[str] | None = None) -> None:
    """Train with the command-line options ``argv`` (default: ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="../shared/data/emoji")
    parser.add_argument("--out", default="runs/t2i-emoji")
    parser.add_argument("--steps", type=int, default=2400)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--text-encoder", default="minilm", choices=["minilm", "tiny"])
    parser.add_argument("--family", default="dfgan", choices=["dfgan", "ragan"],
                        help="dfgan, or ragan: the retrieval-augmented GAN (never retrieves an "
                             "emoji's own skin-tone variants in training: base_id groups)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (0 = torch's default: all cores)")
    parser.add_argument("--ema-decay", type=float, default=0.999)
    parser.add_argument("--checkpoint-every", type=int, default=200)
    parser.add_argument("--keep-checkpoints", type=int, default=2)
    parser.add_argument("--eval-every", type=int, default=0,
                        help="steps between the loop's quality checks (quality/* in "
                             "logs/scalars.jsonl; 0 = off)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="the loop's precision (the shipped model was trained in fp32)")
    parser.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                        help="a model option, e.g. recon_weight=5 (JSON value)")
    parser.add_argument("--ship", type=Path,
                        help="after training, copy the exported model (config.json and "
                             "model.safetensors) into this folder (its model card stays)")
    parser.add_argument("--balance-by", default="",
                        help="draw training images balanced over this attribute (e.g. "
                             "skin-tone), as `ganforge train --balance-by`")
    parser.add_argument("--sample-set", action="append", default=[], metavar="OPTION=VALUE",
                        help="a sampling setting written into the shipped config.json, e.g. "
                             "rank_margin=0.05 (JSON value)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model_options = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.set)}

    out = Path(args.out)
    captions = write_split_metadata(Path(args.data), out)
    data = {"captions": str(captions), "split": "train", "balance_by": args.balance_by}
    if args.family == "ragan":
        data["retrieval_group"] = "base_id"
    config = RunConfig(
        family=args.family,
        model={"size": 64, "generator_channels": args.channels,
               "discriminator_channels": args.channels, "text_encoder": args.text_encoder,
               "text_dim": 128, "text_layers": 2, "max_tokens": 96, **model_options},
        data=data,
        train={"steps": args.steps, "batch_size": args.batch_size, "device": args.device,
               "lr_decay_start": 1.0, "ema_decay": args.ema_decay,
               "sample_every": args.checkpoint_every, "checkpoint_every": args.checkpoint_every,
               "keep_checkpoints": args.keep_checkpoints, "log_every": 50, "num_samples": 8,
               "eval_every": args.eval_every, "precision": args.precision},
    )
    train(config, out / "run", resume=(out / "run" / "config.json").exists())
    if args.ship:
        ship(out / "run" / "model", args.ship,
             {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.sample_set)})


def ship(model: Path, target: Path, sampling: dict) -> None:
    """Copy the exported model into ``target`` with ``sampling`` settings in its config."""
    header = json.loads((model / "config.json").read_text())
    unknown = sorted(set(sampling) - set(header["config"]))
    if unknown:
        raise SystemExit(f"--sample-set: {', '.join(unknown)} not in the model's config")
    header["config"].update(sampling)
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(model / "model.safetensors", target / "model.safetensors")
    (target / "config.json").write_text(json.dumps(header, indent=2) + "\n")


if __name__ == "__main__":
    main()
