"""How well the ganforge watermark survives common edits, how often it fires on unmarked
images, and what it costs in image quality (issue 16's table, one command).

Marked images, per generator (``--generators``): ``--num-images`` outputs of the shipped
text-to-image model (emoji captions from the data's metadata, seed 0) and of the shipped restyle
model applied to Twemoji (64 px, composited on white, a seeded sample), made with the watermark
off and marked exactly as ``Pipeline.to_images`` does. Each edit alone (``BAR_EDITS`` carry the
issue's bars, ``REPORT_EDITS`` are reported only). False positives: the generators' unmarked
outputs, real emoji of every style at their own sizes (Twemoji and Noto 64 px, Fluent 3D 256 px),
the animal-mnist silhouettes (28 px) and, when scikit-image is installed, its bundled photos
(resized to 64 px and cut into 64/128/256 px crops). Cost at 256 px: ``--upscale-images``
text-to-image outputs upscaled x4 by the shipped upscaler, marked with v1 and with the current
scheme: PSNR and the mean absolute change on flat regions (``--figure`` writes crops).

    OMP_NUM_THREADS=1 python benchmarks/watermark_robustness.py --num-images 500 \\
        --data /work/shared/data --out /tmp/wm-bench.json

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
import torch
from PIL import Image, ImageEnhance
from scipy.ndimage import uniform_filter

from ganforge.pipelines import (
    DEFAULT_MODEL,
    DEFAULT_TRANSLATOR,
    DEFAULT_UPSCALER,
    ImageToImagePipeline,
    TextToImagePipeline,
    UpscalePipeline,
)
from ganforge.provenance import watermark

Edit = Callable[[Image.Image, np.random.Generator], Image.Image]


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    """Re-encode as JPEG at ``quality``."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def crop(image: Image.Image, rng: np.random.Generator | None, keep: float = 0.9) -> Image.Image:
    """Keep ``keep`` of each side, centred (``rng`` None) or at a random position; no resize."""
    width, height = round(image.width * keep), round(image.height * keep)
    if rng is None:
        left, top = (image.width - width) // 2, (image.height - height) // 2
    else:
        left = int(rng.integers(0, image.width - width + 1))
        top = int(rng.integers(0, image.height - height + 1))
    return image.crop((left, top, left + width, top + height))


def gamma(image: Image.Image, value: float) -> Image.Image:
    """Levels mapped by 255 * (x / 255) ** value."""
    return image.point([round(255 * (i / 255) ** value) for i in range(256)] * 3)


def resize(image: Image.Image, factor: float,
           resample: Image.Resampling = Image.Resampling.BICUBIC) -> Image.Image:
    return image.resize((round(image.width * factor), round(image.height * factor)), resample)


def screenshot(image: Image.Image) -> Image.Image:
    """A screenshot-like chain: shown at 1.5x (bilinear), saved as JPEG 85, cropped to 95%."""
    return crop(jpeg(resize(image, 1.5, Image.Resampling.BILINEAR), 85), None, 0.95)


BAR_EDITS: dict[str, Edit] = {
    "none": lambda im, rng: im,
    "JPEG q50": lambda im, rng: jpeg(im, 50),
    "resize 0.5x": lambda im, rng: resize(im, 0.5),
    "resize 2x": lambda im, rng: resize(im, 2),
    "centre crop 10%": lambda im, rng: crop(im, None),
    "brightness +20%": lambda im, rng: ImageEnhance.Brightness(im).enhance(1.2),
    "brightness -20%": lambda im, rng: ImageEnhance.Brightness(im).enhance(0.8),
    "contrast +20%": lambda im, rng: ImageEnhance.Contrast(im).enhance(1.2),
    "contrast -20%": lambda im, rng: ImageEnhance.Contrast(im).enhance(0.8),
    "gamma 0.8": lambda im, rng: gamma(im, 0.8),
    "gamma 1.25": lambda im, rng: gamma(im, 1.25),
}
REPORT_EDITS: dict[str, Edit] = {
    "JPEG q75": lambda im, rng: jpeg(im, 75),
    "crop 10% at a random position": crop,
    "8-bit palette (quantize 256)": lambda im, rng: im.quantize(256).convert("RGB"),
    "rotate +2 deg": lambda im, rng: im.rotate(2, Image.Resampling.BICUBIC, fillcolor="white"),
    "rotate -2 deg": lambda im, rng: im.rotate(-2, Image.Resampling.BICUBIC, fillcolor="white"),
    "screenshot (1.5x, JPEG 85, crop 95%)": lambda im, rng: screenshot(im),
}


def psnr(a: Image.Image, b: Image.Image) -> float:
    """PSNR in dB between two RGB images of one size."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def on_white(path: Path) -> Image.Image:
    with Image.open(path) as im:
        rgba = im.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")


def generate(name: str, data: Path, count: int, seed: int, device: str
             ) -> tuple[list[Image.Image], int]:
    """``count`` unmarked outputs of a shipped generator and its watermark id."""
    if name == "text2image":
        rows = [json.loads(line) for line in (data / "emoji" / "metadata.jsonl").open()]
        captions = [row["caption"] for row in random.Random(seed).sample(rows, count)]
        pipe = TextToImagePipeline.from_pretrained(DEFAULT_MODEL, device=device)
        pipe.watermark = False
        return pipe(captions, num_images=1, seed=seed), pipe.watermark_id
    files = sorted((data / "emoji" / "twitter" / "64").glob("*.png"))
    inputs = [on_white(path) for path in random.Random(seed + 1).sample(files, count)]
    translator = ImageToImagePipeline.from_pretrained(DEFAULT_TRANSLATOR, device=device)
    translator.watermark = False
    return translator(inputs), translator.watermark_id


def robustness(marked: list[Image.Image], model_id: int, edits: dict[str, Edit], seed: int
               ) -> dict[str, dict[str, float]]:
    """Bit accuracy, detection rate (right id), median score and ms per detection by edit."""
    table = {}
    for name, edit in edits.items():
        rng = np.random.default_rng(seed)
        edited = [edit(image, rng) for image in marked]
        start = time.perf_counter()
        results = [watermark.detect(image, expected_id=model_id) for image in edited]
        ms = 1000 * (time.perf_counter() - start) / len(results)
        row = {"bit_accuracy": float(np.mean([r.bit_accuracy for r in results])),
               "detection_rate": float(np.mean([r.found and r.model_id == model_id
                                                for r in results])),
               "median_score": float(np.median([r.score for r in results])), "detect_ms": ms}
        table[name] = row
        print(f"  {name:38} {row['bit_accuracy']:8.4f} {row['detection_rate']:9.4f} "
              f"{row['median_score']:8.3f} {ms:7.1f}", flush=True)
    return table


def unmarked_sets(data: Path, per_style: int, animals: int, seed: int
                  ) -> dict[str, list[Image.Image]]:
    """Unmarked real images by source: emoji styles at their sizes, animal silhouettes and
    scikit-image photos (+ crops)."""
    rng = random.Random(seed)
    sets: dict[str, list[Image.Image]] = {}
    for style, size, pattern in (("twitter", 64, "*.png"), ("google", 64, "*.png"),
                                 ("fluent3d", 256, "*.webp")):
        files = sorted((data / "emoji" / style / str(size)).glob(pattern))
        if files:
            picked = rng.sample(files, min(per_style, len(files)))
            sets[f"real emoji {style} {size} px"] = [on_white(path) for path in picked]
    npz = data / "animal-mnist" / "animal_mnist.npz"
    if npz.is_file() and animals:
        images = np.load(npz)["images"]
        picked = rng.sample(range(len(images)), min(animals, len(images)))
        sets["animal-mnist 28 px"] = [Image.fromarray(images[i]).convert("RGB") for i in picked]
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
            side = min(rng.choice([64, 128, 256]), photo.width, photo.height)
            left = rng.randrange(photo.width - side + 1)
            top = rng.randrange(photo.height - side + 1)
            photos.append(photo.crop((left, top, left + side, top + side)))
    sets["scikit-image photos + crops"] = photos
    return sets


def false_positives(sets: dict[str, list[Image.Image]]) -> dict[str, dict[str, float]]:
    table = {}
    print(f"{'unmarked set':34} {'images':>7} {'flagged':>8} {'max score':>10} {'99th pct':>9}")
    for name, images in sets.items():
        if not images:  # e.g. --real-per-style 0: nothing to score
            continue
        results = [watermark.detect(image) for image in images]
        scores = np.array([r.score for r in results])
        flagged = int(sum(r.found for r in results))
        table[name] = {"images": len(results), "flagged": flagged,
                       "max_score": float(scores.max()),
                       "p99_score": float(np.percentile(scores, 99))}
        print(f"{name:34} {len(results):7d} {flagged:8d} {scores.max():10.3f} "
              f"{np.percentile(scores, 99):9.3f}", flush=True)
    return table


def flat_change(clean: Image.Image, marked: Image.Image) -> float:
    """Mean absolute change (levels) on the clean image's flat regions: 5x5 luma std < 1.5,
    white excluded."""
    before = np.asarray(clean, np.float64)
    luma = before @ watermark.LUMA
    std = np.sqrt(np.maximum(uniform_filter(luma**2, 5) - uniform_filter(luma, 5) ** 2, 0))
    flat = (std < 1.5) & (before.min(axis=-1) < 250)
    if not flat.any():
        return float("nan")
    return float(np.abs(np.asarray(marked, np.float64) - before)[flat].mean())


def upscale_cost(images: list[Image.Image], model_id: int, device: str, figure: str | None
                 ) -> dict[str, dict[str, float]]:
    """PSNR and change on flat regions of v1 and v2 marks on 256 px upscaler outputs."""
    upscaler = UpscalePipeline.from_pretrained(DEFAULT_UPSCALER, device=device)
    upscaler.watermark = False
    clean = [upscaler(image)[0] for image in images]
    out: dict[str, dict[str, float]] = {}
    crops = []
    for name, embed in (("v1", watermark.embed_v1), ("v2", watermark.embed)):
        start = time.perf_counter()
        marked = [embed(image, model_id) for image in clean]
        ms = 1000 * (time.perf_counter() - start) / len(marked)
        found = np.mean([watermark.detect(im).model_id == model_id for im in marked])
        out[name] = {"psnr_db": float(np.mean([psnr(a, b) for a, b in zip(clean, marked,
                                                                           strict=True)])),
                     "flat_change": float(np.nanmean([flat_change(a, b) for a, b in
                                                      zip(clean, marked, strict=True)])),
                     "embed_ms": ms, "read_back": float(found)}
        crops.append(marked)
        print(f"  256 px {name}: PSNR {out[name]['psnr_db']:.2f} dB, flat-region change "
              f"{out[name]['flat_change']:.2f} levels, embed {ms:.0f} ms, read {found:.3f}")
    out["network alone"] = {"flat_change": 0.0}
    if figure:  # rows: clean | v1 | v2, 128 px centre crops of the first 4 images
        rows = list(zip(clean, *crops, strict=True))[:4]
        canvas = Image.new("RGB", (3 * 128, len(rows) * 128), "white")
        for r, row in enumerate(rows):
            for c, image in enumerate(row):
                canvas.paste(image.crop((64, 64, 192, 192)), (c * 128, r * 128))
        Path(figure).parent.mkdir(parents=True, exist_ok=True)
        canvas.save(figure)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-images", type=int, default=500, help="marked images per generator")
    parser.add_argument("--generators", default="text2image,restyle",
                        help="comma-separated: text2image, restyle")
    parser.add_argument("--data", default="/work/shared/data",
                        help="the data folder (emoji/, animal-mnist/)")
    parser.add_argument("--real-per-style", type=int, default=1700,
                        help="real emoji per style for the false-positive rate")
    parser.add_argument("--animals", type=int, default=1000, help="animal-mnist images")
    parser.add_argument("--upscale-images", type=int, default=40,
                        help="text-to-image outputs upscaled to 256 px for the cost (0: skip)")
    parser.add_argument("--figure", help="write 256 px crops (clean | v1 | v2) here")
    parser.add_argument("--device", default="cpu", help="generation device (cpu, cuda)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-robustness", action="store_true",
                        help="only the quality cost and the false-positive rates")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)

    data = Path(args.data)
    figures: dict[str, object] = {
        "scheme": watermark.SCHEME, "threshold": watermark.THRESHOLD, "step": watermark.STEP,
        "false_positive_bound": watermark.false_positive_bound(),
        "decoding_grids": watermark.decoding_grids(), "generators": {}}
    print(f"{watermark.SCHEME}: threshold {watermark.THRESHOLD}, false-positive bound "
          f"{watermark.false_positive_bound():.2e} per image")
    unmarked: dict[str, list[Image.Image]] = {}
    first_text2image: list[Image.Image] = []
    for name in args.generators.split(","):
        clean, model_id = generate(name, data, args.num_images, args.seed, args.device)
        unmarked[f"{name} outputs, watermark off"] = clean
        if name == "text2image":
            first_text2image = clean[:args.upscale_images]
        start = time.perf_counter()
        marked = watermark.mark_images([im.copy() for im in clean], model_id)
        embed_ms = 1000 * (time.perf_counter() - start) / len(marked)
        psnrs = [psnr(a, b) for a, b in zip(clean, marked, strict=True)]
        # images the embedder could not mark readably with the current scheme get v1's mark
        v1_marked = sum(watermark.detect(image, search_crops=False).scheme == watermark.SCHEME_V1
                        for image in marked)
        entry: dict[str, object] = {
            "images": len(marked), "model_id": f"{model_id:04x}", "embed_ms": embed_ms,
            "psnr_db": {"mean": float(np.mean(psnrs)), "min": float(np.min(psnrs)),
                        "median": float(np.median(psnrs))}, "v1_fallback": int(v1_marked)}
        print(f"{name}: {len(marked)} images, model id {model_id:04x}; PSNR marked vs "
              f"unmarked mean {np.mean(psnrs):.2f} dB (min {np.min(psnrs):.2f}); embed "
              f"{embed_ms:.1f} ms/image; {v1_marked} marked with the v1 fallback")
        if not args.skip_robustness:
            print(f"  {'edit':38} {'bit acc':>8} {'detected':>9} {'median':>8} {'ms':>7}")
            entry["bars"] = robustness(marked, model_id, BAR_EDITS, args.seed)
            entry["reported"] = robustness(marked, model_id, REPORT_EDITS, args.seed)
        figures["generators"][name] = entry
    unmarked.update(unmarked_sets(data, args.real_per_style, args.animals, args.seed))
    figures["false_positives"] = false_positives(unmarked)
    total = sum(row["images"] for row in figures["false_positives"].values())
    flagged = sum(row["flagged"] for row in figures["false_positives"].values())
    print(f"false positives: {flagged} of {total} unmarked images")
    if args.upscale_images and first_text2image:
        figures["upscaled_256px"] = upscale_cost(first_text2image, 0x2F5A, args.device,
                                                 args.figure)
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
