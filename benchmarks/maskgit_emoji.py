"""Image tokenizer + MaskGIT on the emoji data (twitter style, 64 px), side by side with the GAN.

Same data and split as ``benchmarks/text2image_emoji.py`` (15% of base emoji held out by
``emoji_split(base_id, 0.15, seed=1)``). Trains the tokenizer, then the masked transformer on
its codes, then measures on the held-out captions:

- tokenizer: reconstruction PSNR and FID of the validation images, codebook use (perplexity of
  the validation codes, share of codes used);
- maskgit and the GAN (default: the shipped ``ganforge/assets/text2image-emoji-64``): FID/KID
  of one image per validation caption (seed 0) against the real validation images,
  R-precision (R=100) with the shipped alignment scorer, batch-1 latency and batched ms/image,
  parameters; a grid of the same prompts from both families.

CPU (about 10 min per training on this machine: an 8x8 token grid, small transformer)::

    OMP_NUM_THREADS=1 python benchmarks/maskgit_emoji.py --out /tmp/maskgit-emoji \
        --tokenizer-steps 400 --maskgit-steps 500 --device cpu

GPU (the 16x16 grid the method is meant for, longer)::

    python benchmarks/maskgit_emoji.py --out runs/maskgit-emoji --device cuda --downsample 2 \
        --channels 64 --dim 512 --layers 8 --tokenizer-steps 20000 --maskgit-steps 30000 \
        --batch-size 64
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from text2image_emoji import write_split_metadata

from ganforge.config import RunConfig
from ganforge.data.captions import CaptionedImages
from ganforge.data.images import image_grid, pil_to_float
from ganforge.errors import GanforgeError, MissingDependency
from ganforge.inference.vqgan import ImageTokenizer
from ganforge.metrics.fid import (
    InceptionFeatures,
    fid_from_features,
    kid_from_features,
)
from ganforge.pipelines import DEFAULT_MODEL, TextToImagePipeline
from ganforge.train.loop import train

PROMPTS = ["grinning face", "red heart", "thumbs up", "cat face", "fire", "rocket",
           "green apple", "purple car"]


def _fid(features: InceptionFeatures | None, fake: torch.Tensor, real_features: torch.Tensor
         ) -> dict:
    """FID and KID of images [N, 3, S, S] in [0, 1] against real features."""
    if features is None:
        return {}
    fake_features = features.features_of(fake)
    return {"fid": fid_from_features(fake_features, real_features),
            "kid": kid_from_features(fake_features, real_features)[0]}


def tokenizer_figures(path: Path, val: CaptionedImages, features: InceptionFeatures | None,
                      real_features: torch.Tensor | None) -> dict:
    """Reconstruction PSNR/FID and codebook use of the tokenizer on the validation images."""
    tokenizer = ImageTokenizer.from_pretrained(path)
    images = val.images.float() / 127.5 - 1
    codes = tokenizer.encode(images)
    recon = tokenizer.decode(codes).cpu()
    mse = ((recon - images) / 2).pow(2).flatten(1).mean(1)
    counts = torch.bincount(codes.flatten().cpu(), minlength=tokenizer.codebook_size).float()
    share = counts / counts.sum()
    result = {"grid": tokenizer.grid, "codebook_size": tokenizer.codebook_size,
              "psnr": float((10 * torch.log10(1 / mse.clamp_min(1e-10))).mean()),
              "perplexity": float(torch.exp(-(share * share.clamp_min(1e-10).log()).sum())),
              "codes_used": float((counts > 0).float().mean()),
              "parameters": sum(p.numel() for p in tokenizer.modules.parameters())}
    if real_features is not None:
        result["recon_fid"] = _fid(features, (recon + 1) / 2, real_features)["fid"]
    return result


def model_figures(pipe: TextToImagePipeline, prompts: list[str],
                  features: InceptionFeatures | None, real_features: torch.Tensor | None,
                  real: torch.Tensor, repeats: int) -> dict:
    """FID/KID, R-precision, latency and size of a text-to-image pipeline."""
    start = time.perf_counter()
    fake = pipe.generate_tensor(pipe.encode(prompts), pipe.noise(len(prompts), 0), 64)
    batched_ms = (time.perf_counter() - start) * 1000 / len(prompts)
    fake = fake.cpu()
    result: dict = {"parameters": sum(p.numel() for p in pipe.networks.parameters()),
                    "batched_ms_per_image": batched_ms}
    if real_features is not None:
        result.update(_fid(features, (fake + 1) / 2, real_features))
    try:
        from ganforge.metrics.alignment import DEFAULT_SCORER, ImageTextScorer, r_precision

        scorer = ImageTextScorer.from_pretrained(DEFAULT_SCORER)
        report = r_precision(scorer, fake, prompts)
        result.update(r_precision=report.mean, r_precision_ci=list(report.ci))
        result["r_precision_real"] = r_precision(scorer, real, prompts).mean
    except (ImportError, GanforgeError) as exc:
        result["r_precision_note"] = str(exc)
    times = []
    for i in range(repeats + 2):
        begin = time.perf_counter()
        pipe(PROMPTS[i % len(PROMPTS)], num_images=1, seed=i)
        times.append((time.perf_counter() - begin) * 1000)
    result["batch1_ms"] = statistics.median(times[2:])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/emoji")
    parser.add_argument("--out", default="runs/maskgit-emoji")
    parser.add_argument("--gan", default=str(DEFAULT_MODEL), help="the GAN to compare with")
    parser.add_argument("--tokenizer-steps", type=int, default=400)
    parser.add_argument("--maskgit-steps", "--steps", dest="maskgit_steps", type=int,
                        default=500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--downsample", type=int, default=3, help="3: 8x8 tokens, 2: 16x16")
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--codebook-size", type=int, default=512)
    parser.add_argument("--dim", type=int, default=192)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--text-encoder", default="minilm", choices=["minilm", "tiny"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=10, help="batch-1 latency samples")
    parser.add_argument("--grid", help="where to write the side-by-side grid PNG")
    args = parser.parse_args()

    out = Path(args.out)
    captions = write_split_metadata(Path(args.data), out)
    timings = {}
    tokenizer_run = out / "tokenizer"
    begin = time.perf_counter()
    train(RunConfig(
        family="tokenizer",
        model={"size": 64, "downsample": args.downsample, "channels": args.channels,
               "codebook_size": args.codebook_size, "discriminator_channels": args.channels,
               "adversarial_start": args.tokenizer_steps // 2},
        data={"captions": str(captions), "split": "train"},
        train={"steps": args.tokenizer_steps, "batch_size": args.batch_size // 2,
               "device": args.device, "lr_decay_start": 0.8, "ema_decay": 0.0,
               "sample_every": 100, "checkpoint_every": 100, "log_every": 20,
               "num_samples": 8}),
        tokenizer_run, resume=(tokenizer_run / "config.json").exists())
    timings["tokenizer_train_s"] = time.perf_counter() - begin
    maskgit_run = out / "maskgit"
    begin = time.perf_counter()
    train(RunConfig(
        family="maskgit",
        model={"tokenizer": str(tokenizer_run), "dim": args.dim, "layers": args.layers,
               "heads": 4, "text_encoder": args.text_encoder, "text_dim": 128,
               "text_layers": 2, "max_tokens": 96},
        data={"captions": str(captions), "split": "train"},
        train={"steps": args.maskgit_steps, "batch_size": args.batch_size,
               "device": args.device, "lr_decay_start": 0.8, "ema_decay": 0.99,
               "sample_every": 100, "checkpoint_every": 100, "log_every": 20,
               "num_samples": 8}),
        maskgit_run, resume=(maskgit_run / "config.json").exists())
    timings["maskgit_train_s"] = time.perf_counter() - begin

    val = CaptionedImages.load(captions, 64, split="val")
    prompts = [caps[0] for caps in val.captions]
    real = val.images.float() / 127.5 - 1
    try:
        features: InceptionFeatures | None = InceptionFeatures.load(None)
        real_features = features.features_of((real + 1) / 2)
    except MissingDependency:
        features, real_features = None, None
    results = {"val_images": len(prompts), **timings,
               "tokenizer": tokenizer_figures(tokenizer_run, val, features, real_features)}
    families = {"maskgit": TextToImagePipeline.from_pretrained(maskgit_run, args.device),
                "gan": TextToImagePipeline.from_pretrained(args.gan, args.device)}
    rows = []
    for name, pipe in families.items():
        results[name] = model_figures(pipe, prompts, features, real_features, real,
                                      args.repeats)
        rows.append(pil_to_float(pipe(PROMPTS, num_images=1, seed=0)))
    print(json.dumps(results, indent=2))
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    grid = Path(args.grid) if args.grid else out / "maskgit_vs_gan.png"
    image_grid(rows).save(grid)
    print(f"grid (rows: maskgit, gan; prompts {PROMPTS}): {grid}")


if __name__ == "__main__":
    main()
