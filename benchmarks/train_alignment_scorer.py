"""Train the emoji alignment scorer (not CLIP) and measure it on held-out emoji.

Trains :class:`ganforge.metrics.alignment.ImageTextScorer` on our train split of the emoji data
(`emoji_split(base_id, 0.15, seed=1)`, the split of benchmarks/text2image_emoji.py): the
Twemoji images and, as extra samples of the same captions, the Noto (google) images. Reports,
on the held-out validation emoji: R-precision (R=100, distractors among the validation
captions) of the real Twemoji images, of the real Noto images (the ceiling a generator can
hope for) and of uniform noise images (the floor, about 1/R), top-1 retrieval accuracy among
all validation captions, and R-precision per emoji category. Saves the scorer with a README.md
model card (by default into ganforge/assets/alignment-emoji-64, the shipped scorer).

    OMP_NUM_THREADS=1 python benchmarks/train_alignment_scorer.py \
        --data ../shared/data/emoji --steps 450 --threads 1

``--evaluate-only`` measures the scorer already saved in ``--out`` again and rewrites its
config and model card (same weights).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
from pathlib import Path

import torch
from text2image_emoji import write_split_metadata  # the benchmark beside this one

from ganforge.core.artifact import WEIGHTS_NAME
from ganforge.core.files import atomic_write_text
from ganforge.data.captions import CaptionedImages
from ganforge.data.images import uint8_to_float
from ganforge.metrics.alignment import (
    DEFAULT_SCORER,
    ImageTextScorer,
    RPrecisionReport,
    ScorerConfig,
    r_precision,
    train_scorer,
)

STYLES = ("twitter", "google")


def load_split(metadata: dict[str, Path], split: str) -> dict[str, CaptionedImages]:
    """The images of ``split`` in each style, 64 px on white, in metadata order."""
    return {style: CaptionedImages.load(file, 64, split=split) for style, file in
            metadata.items()}


def categories_of(metadata: Path, data: CaptionedImages) -> list[str]:
    """The emoji category (e.g. "Flags") of each image of ``data``."""
    rows = [json.loads(line) for line in metadata.read_text().splitlines()]
    category = {Path(row["image"]): row["category"] for row in rows}
    return [category[path] for path in data.paths]


def combined(sets: list[CaptionedImages]) -> CaptionedImages:
    """One set holding the images of several (each keeps its own captions)."""
    return CaptionedImages(torch.cat([s.images for s in sets]),
                           [c for s in sets for c in s.captions],
                           [p for s in sets for p in s.paths], sets[0].report)


def figures(report: RPrecisionReport) -> dict:
    """A report as JSON-ready rounded numbers."""
    return {"r_precision": round(report.mean, 4), "ci95": [round(v, 4) for v in report.ci],
            "count": report.count, "r": report.r}


def evaluate(scorer: ImageTextScorer, val: dict[str, CaptionedImages], categories: list[str],
             train: CaptionedImages, seed: int) -> dict[str, dict]:
    """R-precision (R=100) and top-1 retrieval of real and noise validation images, per
    category for real Twemoji, and on as many training images."""
    prompts = [caps[0] for caps in val["twitter"].captions]
    distinct = len({p.casefold() for p in prompts})
    noise = torch.rand(len(prompts), 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    cases = {f"val_{style}": uint8_to_float(data.images) for style, data in val.items()}
    cases["val_noise"] = noise * 2 - 1
    results: dict[str, dict] = {}
    for name, images in cases.items():
        top1 = r_precision(scorer, images, prompts, r=distinct, seed=seed)
        results[name] = {**figures(r_precision(scorer, images, prompts, r=100, seed=seed)),
                         "top1_retrieval": round(top1.mean, 4), "top1_among": distinct}
    results["val_twitter_by_category"] = {}
    for category in sorted(set(categories), key=lambda c: -categories.count(c)):
        chosen = [i for i, c in enumerate(categories) if c == category]
        report = r_precision(scorer, cases["val_twitter"][chosen],
                             [prompts[i] for i in chosen], candidate_pool=prompts, r=100,
                             seed=seed)
        results["val_twitter_by_category"][category] = figures(report)
    # As many training (twitter) images, evenly spaced through the metadata order (which
    # groups emoji by category), distractors among the training captions: the train/val gap.
    seen = torch.linspace(0, len(train) - 1, len(prompts)).long()
    results["train_twitter"] = figures(r_precision(
        scorer, uint8_to_float(train.images[seen]), [train.captions[i][0] for i in seen.tolist()],
        r=100, seed=seed))
    return results


def cpu_name() -> str:
    """The processor's model name (from /proc/cpuinfo on Linux)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def model_card(scorer: ImageTextScorer, size_bytes: int) -> str:
    """The README.md of the saved scorer, from its config and ``metadata``."""
    training, validation = scorer.metadata["training"], scorer.metadata["validation"]
    params = sum(p.numel() for p in scorer.modules.parameters())
    distinct = validation["val_twitter"]["top1_among"]

    def interval(v: dict) -> str:
        return f"{v['r_precision']:.3f} ({v['ci95'][0]:.3f}–{v['ci95'][1]:.3f})"

    def row(name: str, label: str) -> str:
        v = validation[name]
        top1 = f"{v['top1_retrieval']:.3f}" if "top1_retrieval" in v else "–"
        return f"| {label} | {v['count']} | {interval(v)} | {top1} |"

    by_category = "\n".join(f"| {category} | {v['count']} | {interval(v)} |"
                            for category, v in validation["val_twitter_by_category"].items())
    return f"""# alignment-emoji-64: an emoji image-text alignment scorer (not CLIP)

A small CNN image encoder ({params / 1e6:.2f} M parameters, {size_bytes / 1e6:.1f} MB in
`{WEIGHTS_NAME}`), trained by us to map a 64 px emoji image into the sentence-embedding
space of the frozen all-MiniLM-L6-v2 text encoder, so that an image and its caption have a
high cosine similarity. It exists to measure R-precision of ganforge's text-to-image models
on emoji (`ganforge.metrics.alignment.r_precision`).

**This is not CLIP** and not any pretrained image-text model: CLIP weights are not available
offline, so this scorer was trained from scratch, CLIP-style (symmetric InfoNCE), on
{training['images']} emoji images and nothing else. Its numbers are not comparable with
CLIP-based R-precision reported elsewhere.

## Use

```python
from ganforge.metrics.alignment import ImageTextScorer, r_precision
scorer = ImageTextScorer.from_pretrained()  # this folder; needs ganforge[minilm]
report = r_precision(scorer, images, prompts)  # images [N, 3, H, W] in [-1, 1]
```

The text side is all-MiniLM-L6-v2 from the optional extra `ganforge[minilm]`; its weights
are not in this folder.

## Data and licences

- Images: the emoji dataset built by `ganforge data emoji` from emoji-datasource@16.0.0.
  - **Twemoji** by Twitter, Inc. and other contributors, licensed under
    [CC-BY 4.0](https://creativecommons.org/licenses/by/4.0/)
    (via emoji-datasource-twitter@16.0.0).
  - **Noto Emoji** by Google, licensed under the
    [Apache License 2.0](https://github.com/googlefonts/noto-emoji/blob/main/LICENSE)
    (via emoji-datasource-google@16.0.0).
- Captions: the lower-cased Unicode names of the emoji (with skin-tone names for
  variants), from emoji-datasource (MIT).
- Split: base emoji (with all their skin-tone variants) are held out by
  `ganforge.data.emoji.emoji_split(base_id, 0.15, seed=1)`, the split of the text-to-image
  benchmark. Training used only the "train" emoji, each in the Twemoji and the Noto style
  with the same caption: {training['images']} images, {training['distinct_captions']}
  distinct captions; 64 px, transparency on white.

## Training

    {training['command']}

- {training['steps']} steps of batch {training['batch_size']}; AdamW, lr {training['lr']}
  with warm-up and cosine decay; seed {training['seed']}.
- Light augmentation: zoom 0.85–1.05, shift up to 1/16, ±10% brightness, contrast and
  saturation; no flips.
- Loss: symmetric InfoNCE between image embeddings and the frozen MiniLM embeddings of the
  captions, identical captions counted as positives of each other.
- {training['seconds'] / 60:.1f} minutes (wall time) on a CPU: {training['cpu']},
  {training['torch_threads']} thread(s).

## Validation (held-out emoji, never seen in training)

R-precision: the true caption ranked first among R = 100 candidates (99 other validation
captions drawn at random, seed 0); chance is 0.01. Top-1 retrieval: the true caption ranked
first among all {distinct} validation captions. 95% bootstrap confidence intervals.

| images | count | R-precision (R=100) | top-1 of {distinct} |
|---|---|---|---|
{row("val_twitter", "real Twemoji, validation")}
{row("val_google", "real Noto, validation")}
{row("val_noise", "uniform noise")}
{row("train_twitter", "real Twemoji, training (seen)")}

The real validation figures are the ceiling a generator can reach with this scorer; the
noise figure is its floor. By emoji category (real Twemoji, validation; distractors among
all validation captions):

| category | count | R-precision (R=100) |
|---|---|---|
{by_category}

## Limits

- It only knows emoji-like images: flat, centred, one object on white, 64 px. On
  photographs, drawings or other styles its similarities mean little.
- Its captions were emoji names ("grinning face with smiling eyes", "japan flag",
  skin-tone suffixes); longer or free-form prompts are outside what it was trained on.
- Held-out emoji score far below training emoji. What transfers to new emoji is mostly
  composition of known parts (a person, a gesture, a skin tone); a new object, animal, food
  or flag is named correctly much less often, as the table by category shows. About half
  of the validation emoji are people in several skin tones, so the overall figure leans on
  them; a generator that draws the right person type and skin tone scores well. Compare
  models with it on the same prompts, R and seed; do not read its numbers as an absolute
  measure of text-image agreement.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/emoji")
    parser.add_argument("--out", default=str(DEFAULT_SCORER), help="folder to save the scorer")
    parser.add_argument("--no-save", action="store_true", help="only train and report")
    parser.add_argument("--evaluate-only", action="store_true",
                        help="measure the scorer saved in --out again, rewrite its card")
    parser.add_argument("--steps", type=int, default=450)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--widths", default="32,64,128,192")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="ganforge-alignment-") as tmp:
        metadata = {style: write_split_metadata(Path(args.data), Path(tmp) / style, style)
                    for style in STYLES}
        train = load_split(metadata, "train")
        val = load_split(metadata, "val")
        categories = categories_of(metadata["twitter"], val["twitter"])
    if args.evaluate_only:
        scorer = ImageTextScorer.from_pretrained(args.out)
    else:
        with torch.random.fork_rng():
            torch.manual_seed(args.seed)
            scorer = ImageTextScorer.create(ScorerConfig(
                widths=[int(w) for w in args.widths.split(",")]))
        scorer = train_scorer(combined([train[s] for s in STYLES]), steps=args.steps,
                              batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                              scorer=scorer)
        scorer.metadata["training"].update(
            cpu=cpu_name(),
            command=f"OMP_NUM_THREADS={args.threads} python {shlex.join(sys.argv)}",
            data="emoji-datasource@16.0.0, train split of emoji_split(base_id, 0.15, seed=1): "
                 "Twemoji and Noto 64 px images, captions = Unicode names")
    scorer.metadata["validation"] = evaluate(scorer, val, categories, train["twitter"],
                                             args.seed)
    print(json.dumps(scorer.metadata, indent=2))
    if args.no_save:
        return
    folder = scorer.save_pretrained(args.out)
    size_bytes = (folder / WEIGHTS_NAME).stat().st_size
    atomic_write_text(folder / "README.md", model_card(scorer, size_bytes))
    print(f"saved {folder} ({size_bytes / 1e6:.2f} MB weights)")


if __name__ == "__main__":
    main()
