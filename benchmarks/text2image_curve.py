r"""Quality of a text-to-image run against CPU minutes, from its saved checkpoints.

For every checkpoint in RUN/checkpoints, the EMA generator is loaded into the run's exported
pipeline and scored with the shipped alignment scorer: R-precision (R=100) of one image per
held-out caption (``--split val``: emoji never trained on) and on as many training captions,
each at the pipeline's default noise (seed 0) and at zero noise (``truncation`` -> 0).
Minutes come from the run's logged throughput (``logs/scalars.jsonl``), so they are training
time, not evaluation time. Writes OUT/curve.json and OUT/curve.md.

    python benchmarks/text2image_curve.py --run runs/t2i-emoji/run \
        --captions runs/t2i-emoji/metadata.jsonl --out runs/t2i-curve
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ganforge.data.captions import CaptionedImages
from ganforge.metrics.alignment import DEFAULT_SCORER, ImageTextScorer, r_precision
from ganforge.pipelines import TextToImagePipeline
from ganforge.train.checkpoint import checkpoint_steps, load_checkpoint


def minutes_at(run: Path) -> dict[int, float]:
    """Training minutes at each logged step, from img/s and the batch size."""
    config = json.loads((run / "config.json").read_text())
    batch = config["train"]["batch_size"]
    elapsed, last, table = 0.0, 0, {}
    for line in (run / "logs" / "scalars.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "img_per_s" not in row:
            continue
        elapsed += (row["step"] - last) * batch / max(row["img_per_s"], 1e-9)
        last = row["step"]
        table[last] = elapsed / 60
    return table


@torch.no_grad()
def score(pipe: TextToImagePipeline, scorer: ImageTextScorer, prompts: list[str],
          truncation: float | None, r: int = 100) -> float:
    """R-precision (``r`` candidates) of one image per prompt (seed 0)."""
    noise = pipe.noise(1, 0, truncation=truncation)
    images = torch.cat([pipe.generate_tensor(pipe.encode(prompts[i:i + 128]),
                                             noise.repeat(len(prompts[i:i + 128]), 1))
                        for i in range(0, len(prompts), 128)]).clamp(-1, 1)
    return r_precision(scorer, images, prompts, r=r).mean


def curve(run: Path, captions: Path, train_captions: int = 600, every: int = 1,
          device: str | torch.device = "cpu", r: int = 100,
          from_step: int = 0) -> tuple[list[dict], int, int]:
    """One row per scored checkpoint of ``run`` (step, training minutes, R-precision on the
    held-out captions at the default and at zero noise, and on training captions); also the
    numbers of held-out and training captions scored."""
    pipe = TextToImagePipeline.from_pretrained(run, device=device)
    scorer = ImageTextScorer.from_pretrained(DEFAULT_SCORER).to(device)
    val = [caps[0] for caps in CaptionedImages.load(captions, pipe.size, split="val").captions]
    train_all = [caps[0] for caps in CaptionedImages.load(captions, pipe.size,
                                                          split="train").captions]
    stride = max(1, len(train_all) // train_captions)
    train_prompts = train_all[::stride][:train_captions]
    minutes = minutes_at(run)
    rows = []
    kept = [(step, path) for step, path in checkpoint_steps(run / "checkpoints")
            if step >= from_step]
    for step, path in kept[::every]:
        ema = load_checkpoint(path)["ema"]
        for name, net in pipe.networks.items():
            if name not in ema:  # not trained (a retrieval memory): the same at every step
                continue
            shadow = {k.removeprefix("shadow."): v for k, v in ema[name].items()
                      if k.startswith("shadow.")}
            net.load_state_dict(shadow)
        row = {"step": step, "minutes": round(minutes.get(step, float("nan")), 2),
               "val": score(pipe, scorer, val, None, r),
               "val_zero_noise": score(pipe, scorer, val, 1e-6, r),
               "train": score(pipe, scorer, train_prompts, None, r)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows, len(val), len(train_prompts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True)
    parser.add_argument("--captions", required=True, help="metadata with a split column")
    parser.add_argument("--out", required=True)
    parser.add_argument("--train-captions", type=int, default=600,
                        help="training captions scored (spread over the file)")
    parser.add_argument("--every", type=int, default=1, help="score every Nth checkpoint")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--from-step", type=int, default=0, help="score checkpoints from here")
    args = parser.parse_args()

    run, out = Path(args.run), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, val_count, train_count = curve(run, Path(args.captions), args.train_captions,
                                         args.every, args.device, from_step=args.from_step)
    (out / "curve.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [f"R-precision (R=100, shipped scorer) of {run}: {val_count} held-out captions, "
             f"{train_count} training captions; one image each, seed 0.", "",
             "| step | training minutes | held-out | held-out, zero noise | training |",
             "| ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['step']} | {r['minutes']} | {r['val']:.3f} | {r['val_zero_noise']:.3f} | "
              f"{r['train']:.3f} |" for r in rows]
    (out / "curve.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
