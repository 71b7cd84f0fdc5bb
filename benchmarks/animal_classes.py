r"""Class-conditional generation on animal-mnist: how evenly does a model cover the classes,
and does class-balanced sampling help when the data are not balanced?

    python benchmarks/animal_classes.py --steps 800 --out runs/animal-classes

Builds animal-mnist (10 classes, captions "a bear", "an elephant", ...) at 32 px from the
shared ``animal_mnist.npz`` (or ``--source``), then trains three small text-to-image GANs with
the same settings and seed (frozen MiniLM text encoder, so the class names are told apart
from the first step; translation-only DiffAugment, the silhouettes being grey):

- ``balanced``: on the balanced training split (the class-conditional baseline);
- ``longtail``: on a long-tailed copy, the last five classes cut to ``--tail-share`` of their
  images (same images, fewer rows);
- ``longtail-balanced``: the same long-tailed data with ``--balance-by label``.

Each model is audited with ``--attribute label`` against the balanced training captions, so
every class is asked for equally often; one label classifier (trained on real images once) is
reused for all three. Reports, per class, the share of samples generated as asked
(class-conditional coverage), and overall TV distance, chi-square and dropped classes.
Writes OUT/summary.md and each audit under OUT/audit/<model>/.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from ganforge.audit import AuditResult, run_audit
from ganforge.config import RunConfig
from ganforge.data.animal_mnist import CLASS_NAMES, build_animal_mnist
from ganforge.train.loop import train

SHARED_NPZ = Path(__file__).resolve().parents[2] / "shared" / "data" / "animal-mnist" / \
    "animal_mnist.npz"
TAIL = CLASS_NAMES[5:]


def long_tail(captions: Path, tail_share: float, seed: int) -> Path:
    """A copy of ``captions`` whose training rows of the ``TAIL`` classes are cut to
    ``tail_share`` (seeded); images are shared, so relative paths still resolve."""
    rows = [json.loads(line) for line in captions.read_text().splitlines()]
    gen = torch.Generator().manual_seed(seed)
    kept = []
    for label in CLASS_NAMES:
        mine = [r for r in rows if r["label"] == label and r["split"] == "train"]
        if label in TAIL:
            order = torch.randperm(len(mine), generator=gen).tolist()
            mine = [mine[i] for i in sorted(order[:max(1, round(tail_share * len(mine)))])]
        kept += mine
    out = captions.with_name("captions-longtail.jsonl")
    out.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return out


def train_model(captions: Path, run: Path, steps: int, balance_by: str, seed: int,
                model_options: dict[str, Any]) -> float:
    """Train (or resume) one small 32 px class-conditional model; return seconds spent."""
    config = RunConfig(
        family="dfgan",
        model={"size": 32, "generator_channels": 16, "discriminator_channels": 16,
               "text_encoder": "minilm", "augment": "translation", **model_options},
        data={"captions": str(captions), "balance_by": balance_by},
        train={"steps": steps, "batch_size": 32, "lr_decay_start": 1.0, "ema_decay": 0.99,
               "sample_every": steps, "checkpoint_every": steps, "log_every": 50,
               "num_samples": 10, "device": "cpu", "seed": seed})
    start = time.perf_counter()
    train(config, run, resume=(run / "config.json").exists())
    return time.perf_counter() - start


def _pct(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.1f}%"


def summary(results: dict[str, AuditResult], seconds: dict[str, float], steps: int,
            tail_share: float) -> str:
    """Markdown: per-class coverage, models as columns; then the overall figures."""
    names = list(results)
    first = results[names[0]]
    recall = dict(zip(first.classifier.classes, first.classifier.recall, strict=True))
    lines = ["# animal-mnist: class-conditional coverage", "",
             f"32 px, {steps} steps each; long tail: {', '.join(TAIL)} cut to "
             f"{_pct(tail_share)} of their training images. Classifier held-out accuracy "
             f"{_pct(first.classifier.accuracy)}.", "",
             "| class | classifier recall | " + " | ".join(names) + " |",
             "| --- | ---: |" + " ---: |" * len(names)]
    for label in CLASS_NAMES:
        tail = " (tail)" if label in TAIL else ""
        lines.append(f"| {label}{tail} | {_pct(recall.get(label))} | " + " | ".join(
            _pct(results[n].agreement_by_value.get(label)) for n in names) + " |")

    def mean(name: str, classes: tuple[str, ...]) -> float:
        got = [results[name].agreement_by_value.get(c) for c in classes]
        return sum(g or 0.0 for g in got) / len(classes)

    lines += ["| mean, head classes | | " + " | ".join(
        _pct(mean(n, CLASS_NAMES[:5])) for n in names) + " |",
              "| mean, tail classes | | " + " | ".join(
        _pct(mean(n, TAIL)) for n in names) + " |", "",
              "| model | generated as asked | TV vs balanced training | chi-square p | dropped "
              "| training time |", "| --- | ---: | ---: | ---: | --- | ---: |"]
    for name, r in results.items():
        p = r.overall.chi_square.p_value
        lines.append(f"| {name} | {_pct(r.source_agreement)} | {r.overall.tv_distance:.3f} | "
                     f"{'–' if p is None else f'{p:.3g}'} | "
                     f"{', '.join(r.overall.dropped) or 'none'} | {seconds[name]:.0f} s |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=str(SHARED_NPZ), help="animal_mnist.npz")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--tail-share", type=float, default=0.1)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="runs/animal-classes")
    parser.add_argument("--models", default="balanced,longtail,longtail-balanced",
                        help="which of the three models to train and audit")
    parser.add_argument("--classifier", default=None,
                        help="a label classifier saved by an earlier audit (skips training one)")
    parser.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                        help="a model option for all three models, e.g. recon_weight=0")
    args = parser.parse_args()
    model_options = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.set)}
    torch.set_num_threads(args.threads)

    out = Path(args.out)
    data = out / "data"
    captions = data / "captions.jsonl"
    if not captions.is_file():
        build_animal_mnist(data, args.source, size=32, holdout_fraction=0.1, seed=0)
    tail = long_tail(captions, args.tail_share, args.seed)
    plans = {"balanced": (captions, ""), "longtail": (tail, ""),
             "longtail-balanced": (tail, "label")}
    plans = {name: plans[name] for name in args.models.split(",")}
    seconds, results = {}, {}
    classifier = args.classifier
    for name, (file, balance_by) in plans.items():
        seconds[name] = train_model(file, out / "runs" / name, args.steps, balance_by,
                                    args.seed, model_options)
        result = run_audit(out / "runs" / name, "label", out / "audit" / name, captions,
                           num_samples=args.num_samples, classifier=classifier,
                           seed=args.seed)
        classifier = classifier or result.files["classifier"]
        results[name] = result
        print(result.summary())
    text = summary(results, seconds, args.steps, args.tail_share)
    (out / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
