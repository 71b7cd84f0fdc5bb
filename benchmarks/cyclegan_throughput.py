"""CycleGAN training throughput: the reference recipe as usually run vs our fast settings.

Reference: fp32, eager, NCHW, batch 1 (as the original implementation runs it).
Fast: bf16 autocast, channels_last, torch.compile, at several batch sizes.
Each mode runs the real training step of ganforge's loop on synthetic shapes at --size,
warms up, then times --steps steps with the device synchronised. FLOPs per image are counted
once with torch's FlopCounterMode on the eager step; MFU = achieved FLOP/s / --peak-tflops.

    python benchmarks/cyclegan_throughput.py --size 256 --device cuda          # H100
    python benchmarks/cyclegan_throughput.py --size 64 --device cpu --steps 5 --batches 1,4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from training_step import build_trainer, flops_per_image, measure

from ganforge.data.synthetic import write_shape_domains
from ganforge.train.loop import Trainer


def make_trainer(data: tuple[Path, Path], size: int, device: str, batch: int, fast: bool,
                 run_dir: Path, compile_networks: bool | None = None,
                 model: dict | None = None) -> Trainer:
    """A set-up CycleGAN trainer: the reference recipe (``fast`` False: fp32, NCHW, eager) or
    the fast settings (bf16, channels_last, compiled unless ``compile_networks`` is False).
    ``model``: the model options (default: the published recipe's 9-block generator)."""
    return build_trainer(
        "cyclegan", model if model is not None else {"generator_blocks": 9},
        {"domain_a": str(data[0]), "domain_b": str(data[1]), "size": size, "flip": False},
        {"batch_size": batch, "device": device, "precision": "bf16" if fast else "fp32",
         "channels_last": "on" if fast else "off",
         "compile": fast if compile_networks is None else compile_networks}, run_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batches", default="1,4,8,16,32")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="dense bf16 peak of the card (H100 SXM: 989)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="gf-bench-"))
    data = write_shape_domains(work / "data", count=64, size=args.size)
    rows = []
    ref = make_trainer(data, args.size, args.device, 1, False, work / "ref")
    flops = flops_per_image(ref)
    ref_rate = measure(ref, args.warmup, args.steps)
    rows.append({"mode": "reference fp32 eager NCHW", "batch": 1, "img_per_s": ref_rate})
    del ref
    for batch in (int(b) for b in args.batches.split(",")):
        trainer = make_trainer(data, args.size, args.device, batch, True, work / f"fast{batch}")
        rows.append({"mode": "bf16 channels_last compile", "batch": batch,
                     "img_per_s": measure(trainer, args.warmup, args.steps)})
        del trainer
    device_name = (torch.cuda.get_device_name() if args.device.startswith("cuda")
                   else f"cpu ({os.cpu_count()} cores)")
    print(f"device: {device_name}; size {args.size}; {flops / 1e9:.1f} GFLOP per image per step")
    print(f"{'mode':<30}{'batch':>6}{'img/s':>10}{'x ref':>8}{'MFU':>8}")
    for row in rows:
        row["speedup"] = row["img_per_s"] / ref_rate
        row["mfu"] = row["img_per_s"] * flops / (args.peak_tflops * 1e12)
        print(f"{row['mode']:<30}{row['batch']:>6}{row['img_per_s']:>10.1f}"
              f"{row['speedup']:>8.1f}{row['mfu']:>8.1%}")
    result = {"device": device_name, "size": args.size, "flops_per_image": flops, "rows": rows}
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "cyclegan_throughput.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
