"""How well the ganforge watermark survives common edits, how often it fires on real images,
and what it costs in image quality.

Marked images: ``--num-images`` images of the shipped default text-to-image model (emoji
captions from the real data's metadata, seed 0), marked exactly as ``Pipeline.to_images`` does.
Edits: none, JPEG quality 75 and 50, resize to 0.5x, a 10% crop (90% of each side kept at a
random position, not resized back), brightness x1.2 and x0.8 (PIL ImageEnhance). False
positives: real emoji (twitter and google 64 px, fluent3d 256 px) and the photos bundled with
scikit-image (resized to 64 px and cut into random 64/128/256 px crops).

    python benchmarks/watermark_robustness.py --num-images 500 --out /tmp/wm-bench.json

Needs the real data folder (``--data``) and, for the photos, ``pip install scikit-image``
(the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import io
import json
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from ganforge.pipelines import DEFAULT_MODEL, TextToImagePipeline
from ganforge.provenance import watermark

Edit = Callable[[Image.Image, np.random.Generator], Image.Image]


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    """Re-encode as JPEG at ``quality``."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def crop(image: Image.Image, rng: np.random.Generator, keep: float = 0.9) -> Image.Image:
    """Keep ``keep`` of each side at a random position (no resize back)."""
    side_w, side_h = round(image.width * keep), round(image.height * keep)
    left = int(rng.integers(0, image.width - side_w + 1))
    top = int(rng.integers(0, image.height - side_h + 1))
    return image.crop((left, top, left + side_w, top + side_h))


EDITS: dict[str, Edit] = {
    "none": lambda im, rng: im,
    "jpeg-75": lambda im, rng: jpeg(im, 75),
    "jpeg-50": lambda im, rng: jpeg(im, 50),
    "resize-0.5x": lambda im, rng: im.resize((im.width // 2, im.height // 2),
                                             Image.Resampling.BICUBIC),
    "crop-10%": crop,
    "brightness+20%": lambda im, rng: ImageEnhance.Brightness(im).enhance(1.2),
    "brightness-20%": lambda im, rng: ImageEnhance.Brightness(im).enhance(0.8),
}


def psnr(a: Image.Image, b: Image.Image) -> float:
    """PSNR in dB between two RGB images of one size."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def real_images(data: Path, per_style: int, seed: int) -> dict[str, list[Image.Image]]:
    """Unmarked real images by source: emoji styles and scikit-image photos (+ crops)."""
    rng = random.Random(seed)
    sets: dict[str, list[Image.Image]] = {}
    for style, size, pattern in (("twitter", 64, "*.png"), ("google", 64, "*.png"),
                                 ("fluent3d", 256, "*.webp")):
        files = sorted((data / "emoji" / style / str(size)).glob(pattern))
        if not files:
            continue
        picked = rng.sample(files, min(per_style, len(files)))
        images = []
        for path in picked:
            with Image.open(path) as im:
                rgba = im.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            images.append(Image.alpha_composite(white, rgba).convert("RGB"))
        sets[f"emoji-{style}-{size}"] = images
    try:
        import skimage.data
    except ImportError:
        print("scikit-image not installed: no photos (pip install scikit-image)")
        return sets
    photos = []
    for name in ("astronaut", "camera", "coffee", "chelsea", "rocket", "cat", "brick", "grass",
                 "gravel", "retina", "moon", "page", "text", "horse", "clock", "coins",
                 "hubble_deep_field", "immunohistochemistry", "colorwheel", "logo", "cell",
                 "microaneurysms", "checkerboard", "shepp_logan_phantom"):
        try:
            array = getattr(skimage.data, name)()
        except Exception:  # photos that would need a download are skipped
            continue
        if array.dtype != np.uint8:
            array = array.astype(np.float64)
            array = (255 * (array - array.min()) / max(float(np.ptp(array)), 1e-9)).astype(np.uint8)
        photo = Image.fromarray(array).convert("RGB")
        photos.append(photo.resize((64, 64), Image.Resampling.BICUBIC))
        for _ in range(6):
            side = rng.choice([64, 128, 256])
            side = min(side, photo.width, photo.height)
            left = rng.randrange(photo.width - side + 1)
            top = rng.randrange(photo.height - side + 1)
            photos.append(photo.crop((left, top, left + side, top + side)))
    sets["skimage-photos"] = photos
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-images", type=int, default=500)
    parser.add_argument("--real-per-style", type=int, default=600,
                        help="real emoji per style for the false-positive rate")
    parser.add_argument("--data", default="/work/shared/data")
    parser.add_argument("--device", default="cpu", help="generation device (cpu, cuda)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-robustness", action="store_true",
                        help="only the quality cost and the false-positive rates")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()

    data = Path(args.data)
    rows = [json.loads(line) for line in (data / "emoji" / "metadata.jsonl").open()]
    captions = [row["caption"] for row in random.Random(args.seed).sample(rows, args.num_images)]
    pipe = TextToImagePipeline.from_pretrained(DEFAULT_MODEL, device=args.device)
    pipe.watermark = False
    clean = pipe(captions, num_images=1, seed=args.seed)
    model_id = pipe.watermark_id
    start = time.perf_counter()
    marked = watermark.mark_images([im.copy() for im in clean], model_id)
    embed_ms = 1000 * (time.perf_counter() - start) / len(marked)
    psnrs = [psnr(a, b) for a, b in zip(clean, marked, strict=True)]
    figures: dict[str, object] = {
        "num_images": len(marked), "model_id": f"{model_id:04x}",
        "threshold": watermark.THRESHOLD, "step": watermark.STEP,
        "false_positive_bound": watermark.false_positive_bound(),
        "psnr_db": {"mean": float(np.mean(psnrs)), "min": float(np.min(psnrs)),
                    "median": float(np.median(psnrs))},
        "embed_ms_per_image": embed_ms, "robustness": {}, "false_positives": {}}
    print(f"model id {model_id:04x}; PSNR marked vs unmarked: mean {np.mean(psnrs):.2f} dB, "
          f"min {np.min(psnrs):.2f} dB; embed {embed_ms:.1f} ms/image")
    print(f"{'edit':16} {'bit acc':>8} {'detected':>9} {'median score':>13} {'ms/image':>9}")
    for name, edit in ({} if args.skip_robustness else EDITS).items():
        rng = np.random.default_rng(args.seed)
        start = time.perf_counter()
        results = [watermark.detect(edit(im, rng), expected_id=model_id) for im in marked]
        ms = 1000 * (time.perf_counter() - start) / len(results)
        accuracy = float(np.mean([r.bit_accuracy for r in results]))
        detected = float(np.mean([r.found and r.model_id == model_id for r in results]))
        score = float(np.median([r.score for r in results]))
        figures["robustness"][name] = {"bit_accuracy": accuracy, "detection_rate": detected,
                                       "median_score": score, "detect_ms": ms}
        print(f"{name:16} {accuracy:8.4f} {detected:9.4f} {score:13.3f} {ms:9.1f}")
    unmarked = [watermark.detect(im) for im in clean]
    sets = {"generated-unmarked": clean, **real_images(data, args.real_per_style, args.seed)}
    print(f"{'unmarked set':22} {'images':>7} {'false pos':>9} {'max score':>10} "
          f"{'99th pct':>9}")
    for name, images in sets.items():
        results = unmarked if name == "generated-unmarked" else [
            watermark.detect(im) for im in images]
        scores = np.array([r.score for r in results])
        rate = float(np.mean([r.found for r in results]))
        figures["false_positives"][name] = {
            "images": len(results), "false_positive_rate": rate,
            "max_score": float(scores.max()), "p99_score": float(np.percentile(scores, 99))}
        print(f"{name:22} {len(results):7d} {rate:9.4f} {scores.max():10.3f} "
              f"{np.percentile(scores, 99):9.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
