"""Detector of generated emoji: does it catch our families, and one it never saw?

1. Real: Twemoji (twitter, 64 px); generated: the shipped text-to-image model (DF-GAN), no
   watermark. Split 80/20 with one seed; train on the 80%.
2. Report AUC and accuracy on the held-out 20%, again after JPEG quality 75 re-encoding, and
   on a family the detector did not train on: CycleGAN outputs (``--cyclegan RUN``,
   google -> twitter, i.e. Twemoji-style fakes) against the same held-out real images.
3. With ``--ship DIR``: train the shipped detector on both families (text-to-image and
   CycleGAN in both directions) against real twitter and google emoji, and save it there.

    python benchmarks/detector_emoji.py --cyclegan /tmp/emojirun/run \
        --ship ganforge/assets/detector-emoji-64 --out /tmp/detector-bench.json
"""

from __future__ import annotations

import argparse
import io
import json
import random
from pathlib import Path

import numpy as np
from PIL import Image

from ganforge.pipelines import DEFAULT_MODEL, ImageToImagePipeline
from ganforge.provenance.detector import generate_fakes, load_images, train_detector


def jpeg(images: list[Image.Image], quality: int = 75) -> list[Image.Image]:
    out = []
    for image in images:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        out.append(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return out


def split(images: list[Image.Image], seed: int, test: float = 0.2
          ) -> tuple[list[Image.Image], list[Image.Image]]:
    order = np.random.default_rng(seed).permutation(len(images))
    cut = round(len(images) * test)
    return [images[i] for i in order[cut:]], [images[i] for i in order[:cut]]


def translate(run: str, sources: list[Image.Image], direction: str,
              device: str) -> list[Image.Image]:
    pipe = ImageToImagePipeline.from_pretrained(run, device=device)
    pipe.watermark = False
    return pipe(sources, direction=direction)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="/work/shared/data")
    parser.add_argument("--num-fakes", type=int, default=2000)
    parser.add_argument("--num-unseen", type=int, default=600)
    parser.add_argument("--cyclegan", help="CycleGAN emoji run (a = twitter, b = google)")
    parser.add_argument("--epochs", "--steps", dest="epochs", type=int, default=5,
                        help="training epochs")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ship", help="also train the shipped detector and save it here")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()

    emoji = Path(args.data) / "emoji"
    twitter = load_images(emoji / "twitter" / "64")
    rows = [json.loads(line) for line in (emoji / "metadata.jsonl").open()]
    prompts = [row["caption"] for row in rows]
    t2i = generate_fakes(DEFAULT_MODEL, args.num_fakes, args.seed, prompts=prompts,
                         device=args.device)
    real_train, real_test = split(twitter, args.seed)
    fake_train, fake_test = split(t2i, args.seed)
    detector = train_detector(real_train, fake_train, epochs=args.epochs, width=args.width,
                              seed=args.seed, device=args.device, progress=True)
    figures: dict[str, object] = {"train": detector.metadata}
    figures["held-out text2image"] = detector.evaluate(real_test, fake_test)
    figures["held-out text2image, JPEG 75"] = detector.evaluate(jpeg(real_test),
                                                                jpeg(fake_test))
    google = load_images(emoji / "google" / "64")
    if args.cyclegan:
        picked = random.Random(args.seed).sample(google, args.num_unseen)
        unseen = translate(args.cyclegan, picked, "b2a", args.device)
        figures["unseen family: CycleGAN google->twitter"] = detector.evaluate(real_test,
                                                                               unseen)
        figures["unseen family, JPEG 75"] = detector.evaluate(jpeg(real_test), jpeg(unseen))
    for name, value in figures.items():
        if "auc" in value:
            print(f"{name:42} AUC {value['auc']:.3f}  accuracy {value['accuracy']:.3f}  "
                  f"({value['real']} real, {value['generated']} generated)")
    if args.ship:
        g_train, g_test = split(google, args.seed)
        fakes = list(t2i)
        if args.cyclegan:
            cycle_sources = random.Random(args.seed + 1).sample(twitter + google, 1200)
            fakes += translate(args.cyclegan, cycle_sources[:600], "a2b", args.device)
            fakes += translate(args.cyclegan, cycle_sources[600:], "b2a", args.device)
        ship_fake_train, ship_fake_test = split(fakes, args.seed)
        shipped = train_detector(real_train + g_train, ship_fake_train, epochs=args.epochs,
                                 width=args.width, seed=args.seed, device=args.device,
                                 progress=True)
        evaluation = {"held_out": shipped.evaluate(real_test + g_test, ship_fake_test),
                      "held_out_jpeg75": shipped.evaluate(jpeg(real_test + g_test),
                                                          jpeg(ship_fake_test))}
        shipped.metadata.update({"evaluation": evaluation, "families": ["dfgan text-to-image"] + (
            ["cyclegan twitter<->google"] if args.cyclegan else [])})
        shipped.save_pretrained(args.ship)
        figures["shipped"] = evaluation
        for name, value in evaluation.items():
            print(f"shipped {name:34} AUC {value['auc']:.3f}  accuracy {value['accuracy']:.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
