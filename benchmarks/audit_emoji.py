r"""Audit emoji text-to-image models: which categories and skin tones they generate, against
their training data; several models side by side (e.g. before/after ``--balance-by``).

    python benchmarks/audit_emoji.py --out runs/audit-emoji          # the shipped model
    python benchmarks/audit_emoji.py --model runs/t2i-plain/run runs/t2i-balanced/run \
        --out runs/audit-balance
    python benchmarks/audit_emoji.py --train-pair 600 --out runs/audit-pair  # trains both
    python benchmarks/audit_emoji.py --skin-tones as-named varied --out runs/audit-tones

A run folder names its captions file in its config; the shipped model
(``ganforge/assets/text2image-emoji-64``) is a pipeline folder, so ``--data`` names the captions
file for it (default: the shared emoji ``metadata.jsonl`` with ``--image-template
'twitter/64/{id}.png'``). For a before/after comparison train twice on the same captions file,
once with ``--balance-by skin-tone``; ``--train-pair STEPS`` does that with a small 32 px model
(CPU-sized) and audits both. Each attribute's classifier is trained once, on the first
model's data, and reused for every model, so that models differ only by what they generate.
``--skin-tones`` audits each model once per value of the ragan sampling option (``varied``:
people prompts that name no tone start from the memory's tone variants, drawn evenly).

Writes OUT/<model>/<attribute>/ (audit.md, audit.json, figures) and OUT/summary.md.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import torch

from ganforge.audit import AuditResult, run_audit
from ganforge.config import RunConfig
from ganforge.core.artifact import read_header
from ganforge.data.attributes import SKIN_TONE_CHOICES
from ganforge.pipelines import DEFAULT_MODEL
from ganforge.train.loop import train

SHARED_EMOJI = Path(__file__).resolve().parents[2] / "shared" / "data" / "emoji"
#: prompts of people that name no skin tone: which tones does the model draw for them?
UNTONED_PEOPLE = "People & Body / none"


def train_pair(captions: str, image_template: str | None, out: Path, steps: int,
               balance_by: str = "skin-tone") -> list[str]:
    """Train a small 32 px text-to-image model twice on the same data, without and with
    attribute-balanced sampling; return both run folders."""
    runs = []
    for name, balance in (("plain", ""), (f"balanced-{balance_by}", balance_by)):
        config = RunConfig(
            family="dfgan",
            model={"size": 32, "generator_channels": 16, "discriminator_channels": 16,
                   "text_dim": 64, "text_layers": 1, "max_tokens": 96},
            data={"captions": captions, "image_template": image_template or "",
                  "balance_by": balance},
            train={"steps": steps, "batch_size": 32, "lr_decay_start": 1.0, "ema_decay": 0.99,
                   "sample_every": steps, "checkpoint_every": steps, "log_every": 50,
                   "num_samples": 8, "device": "cpu", "seed": 0})
        run = out / "runs" / name
        start = time.perf_counter()
        train(config, run, resume=(run / "config.json").exists())
        print(f"trained {name} in {time.perf_counter() - start:.0f} s")
        runs.append(str(run))
    return runs


def _pct(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.1f}%"


def _summary(results: dict[str, dict[str, AuditResult]], seconds: dict[str, float]) -> str:
    """A markdown table per attribute, models as rows; untoned-people tones for skin-tone."""
    lines = ["# Emoji audit: models side by side", ""]
    attributes = list(next(iter(results.values())))
    for attribute in attributes:
        lines += [f"## {attribute}", "",
                  "| model | classifier acc. (balanced) | classifier TV on real | TV | "
                  "TV corrected | chi-square p | labelled as prompt source | dropped | time |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
        for name, by_attribute in results.items():
            r = by_attribute[attribute]
            c, o = r.classifier, r.overall
            p = o.chi_square.p_value
            lines.append(
                f"| {name} | {_pct(c.accuracy)} ({_pct(c.balanced_accuracy)}) | "
                f"{c.holdout_tv:.3f} | {o.tv_distance:.3f} | "
                f"{'–' if o.corrected_tv_distance is None else f'{o.corrected_tv_distance:.3f}'}"
                f" | {'–' if p is None else f'{p:.3g}'} | {_pct(r.source_agreement)} | "
                f"{', '.join(o.dropped) or 'none'} | {seconds[f'{name}/{attribute}']:.0f} s |")
        first = next(iter(results.values()))[attribute]
        lines += ["", "| model | " + " | ".join(first.overall.classes) + " |",
                  "| --- |" + " ---: |" * len(first.overall.classes),
                  "| training | " + " | ".join(map(_pct, first.overall.reference_share)) + " |"]
        lines += [f"| {name} | " + " | ".join(map(_pct, by[attribute].overall.generated_share))
                  + " |" for name, by in results.items()]
        if attribute == "skin-tone" and all(UNTONED_PEOPLE in by[attribute].groups
                                            for by in results.values()):
            lines += ["", f"Prompts of people that name no skin tone ({UNTONED_PEOPLE}):", "",
                      "| model | samples | " + " | ".join(first.overall.classes) + " |",
                      "| --- | ---: |" + " ---: |" * len(first.overall.classes)]
            for name, by in results.items():
                group = by[attribute].groups[UNTONED_PEOPLE]
                lines.append(f"| {name} | {sum(group.generated)} | "
                             + " | ".join(map(_pct, group.generated_share)) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", default=[str(DEFAULT_MODEL)],
                        help="run or pipeline folders (default: the shipped emoji model)")
    parser.add_argument("--data", help="captions file (default: the run's own; for a pipeline "
                        f"folder {SHARED_EMOJI / 'metadata.jsonl'})")
    parser.add_argument("--image-template", help="default with the shared metadata: "
                        "twitter/64/{id}.png")
    parser.add_argument("--attributes", default="category,skin-tone")
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--classifier-epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-pair", type=int, metavar="STEPS",
                        help="first train two small models for STEPS steps (without and with "
                        "--balance-by skin-tone) on --data and audit those")
    parser.add_argument("--skin-tones", nargs="+", choices=SKIN_TONE_CHOICES,
                        help="audit each model with each of these ragan sampling settings")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="runs/audit-emoji")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    out = Path(args.out)
    if args.train_pair:
        data = args.data or str(SHARED_EMOJI / "metadata.jsonl")
        template = args.image_template or (None if args.data else "twitter/64/{id}.png")
        args.model = train_pair(data, template, out, args.train_pair)
    results: dict[str, dict[str, AuditResult]] = {}
    seconds: dict[str, float] = {}
    classifiers: dict[str, str] = {}
    settings = [{"skin_tones": v} for v in args.skin_tones] if args.skin_tones else [{}]
    for index, (model, sampling) in enumerate(
            (m, s) for m in args.model for s in settings):
        is_run = read_header(model)[0] != Path(model)
        data, template = args.data, args.image_template
        if data is None and not is_run:
            data = str(SHARED_EMOJI / "metadata.jsonl")
            template = template or "twitter/64/{id}.png"
        name = Path(model).name if Path(model).name != "run" else Path(model).parent.name
        name += "".join(f", {k}={v}" for k, v in sampling.items())
        name = name if name not in results else f"{name}-{index}"
        results[name] = {}
        for attribute in args.attributes.split(","):
            start = time.perf_counter()
            result = run_audit(
                model, attribute, out / re.sub(r"[^\w.-]+", "_", name) / attribute, data,
                image_template=template,
                num_samples=args.num_samples, classifier=classifiers.get(attribute),
                holdout_group="base_id", classifier_epochs=args.classifier_epochs,
                group_by_prompt_attribute=["category", "skin-tone"]
                if attribute == "skin-tone" else (), seed=args.seed, progress=True,
                sampling=sampling)
            seconds[f"{name}/{attribute}"] = time.perf_counter() - start
            classifiers.setdefault(attribute, result.files["classifier"])
            results[name][attribute] = result
            print(f"[{name}] {result.summary()}")
    summary = _summary(results, seconds)
    (out / "summary.md").write_text(summary + "\n")
    print(summary)


if __name__ == "__main__":
    main()
