"""Quality and speed of a text-to-image model on held-out emoji captions.

Quality: one image per validation caption (seed 0) scored against the real validation images
(FID/KID, standard Inception features) and, when the shipped alignment scorer is available,
R-precision (R=100) of the prompt among other validation captions.
Speed: batch-1 latency on this machine (text encoding and generation reported apart, median of
--repeats) and batched generator throughput (bf16 + channels_last on CUDA, optional compile).
Grids: real vs generated for 16 validation captions, and prompts never seen in training.

    python benchmarks/text2image_eval.py --model ganforge/assets/text2image-emoji-64 \
        --captions runs/t2i-emoji/metadata.jsonl --out runs/t2i-eval --device cpu
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from ganforge.data.captions import CaptionedImages
from ganforge.data.images import image_grid, pil_to_float
from ganforge.errors import GanforgeError, MissingDependency
from ganforge.metrics.fid import InceptionFeatures, fid_from_features, kid_from_features
from ganforge.metrics.prdc import precision_recall
from ganforge.pipelines import TextToImagePipeline

UNSEEN = ["cat face with sunglasses", "dog face with sunglasses", "red heart with sunglasses",
          "green apple", "blue apple", "purple car", "smiling sun", "crying pizza"]


def timed(fn, repeats: int, device: torch.device) -> float:  # type: ignore[no-untyped-def]
    """Median milliseconds of ``fn()`` over ``repeats`` calls after a warm-up."""
    for _ in range(3):
        fn()
    samples = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def quality(pipe: TextToImagePipeline, captions: Path, split: str, out: Path,
            fid_weights: str | None, floor_split: str | None = "train",
            sampling: dict | None = None) -> dict:
    """FID/KID/precision/recall and R-precision of one image per ``split`` caption (caption
    j drawn with image j's noise of seed 0), the FID floor (as many real images of
    ``floor_split`` against the same real images), R-precision on as many training captions,
    and the grids; ``sampling``: the family's sampling settings for every image."""
    sampling = sampling or {}
    data = CaptionedImages.load(captions, pipe.size, split=split)
    other = train_prompts = None
    if floor_split:
        pool = CaptionedImages.load(captions, pipe.size, split=floor_split)
        chosen = torch.linspace(0, len(pool) - 1, min(len(data), len(pool))).round().long()
        other = pool.images[chosen].float() / 255
        train_prompts = [pool.captions[i][0] for i in chosen.tolist()]
    prompts = [caps[0] for caps in data.captions]
    real = data.images.float() / 255
    # one noise draw per caption (image j of seed 0 for caption j), as FID is usually taken
    noise = pipe.noise(len(prompts), 0)
    sentence = pipe.encode(prompts)
    fake = pipe.generate_prompts(prompts, noise, **sampling).add(1).div(2).cpu()
    result: dict = {"count": len(prompts), "split": split}
    # a retrieval-augmented model: the training images (or collages) it started from, scored
    # the same way (what the generator adds over retrieval alone) and how far it moved
    starts = None
    if hasattr(pipe.model, "starts"):
        index, _ = pipe.model.retrieve(sentence.to(pipe.device), noise.to(pipe.device),
                                       **sampling)
        made, _, _, described = pipe.model.starts(sentence.to(pipe.device),
                                                  noise.to(pipe.device),
                                                  pipe.compositions(prompts), **sampling)
        starts = made.float().div(255).cpu()
        result["collage_count"] = sum(" + " in d or ", recoloured " in d for d in described)
        result["edit_mean_abs_grey_levels"] = float((fake - starts).abs().mean() * 255)
        nearest, _ = pipe.model.retrieve(sentence.to(pipe.device),
                                         torch.zeros_like(noise).to(pipe.device))
        result["start_is_nearest_share"] = float((index == nearest).float().mean())
    try:
        features = InceptionFeatures.load(fid_weights)
        real_f, fake_f = features.features_of(real), features.features_of(fake)
        half = len(real_f) // 2
        precision, recall = precision_recall(real_f, fake_f, k=3)
        result.update(fid=fid_from_features(fake_f, real_f),
                      kid=kid_from_features(fake_f, real_f)[0],
                      precision=precision, recall=recall,
                      fid_real_halves=fid_from_features(real_f[:half], real_f[half:]))
        if starts is not None:
            start_f = features.features_of(starts)
            sp, sr = precision_recall(real_f, start_f, k=3)
            result.update(retrieval_only_fid=fid_from_features(start_f, real_f),
                          retrieval_only_kid=kid_from_features(start_f, real_f)[0],
                          retrieval_only_precision=sp, retrieval_only_recall=sr)
        if other is not None:  # the floor: as many other real images against the same set
            other_f = features.features_of(other)
            result.update(fid_floor_other_real=fid_from_features(other_f, real_f),
                          floor_count=len(other_f))
    except MissingDependency as exc:
        result["fid_note"] = str(exc)
    try:
        from ganforge.metrics.alignment import DEFAULT_SCORER, ImageTextScorer, r_precision

        scorer = ImageTextScorer.from_pretrained(DEFAULT_SCORER)
        fake_report = r_precision(scorer, fake * 2 - 1, prompts)
        real_report = r_precision(scorer, real * 2 - 1, prompts)
        result.update(r_precision=fake_report.mean, r_precision_ci=fake_report.ci,
                      r_precision_real=real_report.mean)
        if starts is not None:
            result["retrieval_only_r_precision"] = r_precision(scorer, starts * 2 - 1,
                                                               prompts).mean
        if train_prompts:
            drawn = pipe.generate_prompts(train_prompts, pipe.noise(len(train_prompts), 0),
                                          **sampling)
            result["r_precision_train_captions"] = r_precision(scorer, drawn,
                                                               train_prompts).mean
    except (ImportError, GanforgeError) as exc:
        result["r_precision_note"] = str(exc)
    show = slice(0, 16)
    image_grid([real[show] * 2 - 1, fake[show] * 2 - 1]).save(out / "val_real_vs_generated.png")
    (out / "val_prompts.txt").write_text("\n".join(prompts[show]) + "\n")
    unseen = [pil_to_float(pipe(p, num_images=6, seed=0, **sampling)) for p in UNSEEN]
    image_grid(unseen).save(out / "unseen_prompts.png")
    (out / "unseen_prompts.txt").write_text("\n".join(UNSEEN) + "\n")
    return result


def speed(pipe: TextToImagePipeline, device: torch.device, repeats: int, batch: int,
          compile_generator: bool) -> dict:
    prompt = "grinning face with sunglasses"
    fresh = iter(range(10**9))  # a new prompt every call: a frozen encoder's cache never hits
    text_ms = timed(lambda: pipe.encode(f"{prompt} {next(fresh)}"), repeats, device)
    sentence, noise = pipe.encode(prompt), pipe.noise(1, 0)
    gen_ms = timed(lambda: pipe.generate_tensor(sentence, noise), repeats, device)
    result = {"batch1_text_ms": text_ms, "batch1_generator_ms": gen_ms,
              "batch1_total_ms": text_ms + gen_ms}
    generator = pipe.networks["generator"]
    if device.type == "cuda":
        generator = generator.to(memory_format=torch.channels_last)
    if compile_generator:
        pipe.model.modules["generator"] = torch.compile(generator)
    rows = pipe.encode(prompt).repeat(batch, 1).to(device)
    z = pipe.noise(batch, 0).to(device)

    def run() -> None:
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16,
                                             enabled=device.type == "cuda"):
            pipe.model.generate(rows, z)

    batch_ms = timed(run, max(5, repeats // 10), device)
    result.update(batched_size=batch, batched_img_per_s=batch / batch_ms * 1000)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="ganforge/assets/text2image-emoji-64")
    parser.add_argument("--captions", required=True, help="metadata with a split column")
    parser.add_argument("--split", default="val")
    parser.add_argument("--out", default="runs/t2i-eval")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fid-weights")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skin-tones", help="ragan sampling setting (as-named, varied)")
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    pipe = TextToImagePipeline.from_pretrained(args.model, device=device)
    name = (torch.cuda.get_device_name() if device.type == "cuda"
            else f"cpu ({torch.get_num_threads()} threads)")
    params = sum(p.numel() for p in pipe.networks["generator"].parameters())
    result = {"model": args.model, "device": name, "parameters_generator": params,
              **speed(pipe, device, args.repeats, args.batch, args.compile)}
    if not args.skip_quality:
        sampling = {"skin_tones": args.skin_tones} if args.skin_tones else {}
        result.update(quality(pipe, Path(args.captions), args.split, out, args.fid_weights,
                              sampling=sampling), sampling=sampling)
    print(json.dumps(result, indent=2))
    (out / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "text2image_eval.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
