"""How much of this CPU every family's training step uses, and what raises it (issue 15).

First the machine's ceiling: the best of a few large fp32 (and bf16) square matmuls, at each
thread count asked for. Then, for each family at ``--size`` px (64; ESRGAN: output crops of that
side) with its DEFAULT model config, on small synthetic data:

- the **default** step, as ``ganforge train`` runs it on the CPU: the family's own
  ``train_defaults`` (batch size, EMA, ...) over the loop's defaults (``precision`` and
  ``channels_last`` ``auto``, no compile), at the first of ``--threads``. Its forward + backward
  FLOPs per image are counted with ``FlopCounterMode`` (averaged over ``--flop-steps`` steps:
  DF-GAN's gradient penalty comes every 4th step) and used for every variant of the family;
- **variants**: batch size, thread count, channels_last, bf16 autocast and (``--compile``)
  torch.compile, one setting at a time away from the default (``--grid axes``, then the best
  value of each setting together) or every combination (``--grid full``);
- the **reference**: the published CycleGAN recipe as usually run (9 ResNet blocks, 64 channels,
  fp32, eager, NCHW, batch 1) beside ganforge's default CycleGAN step, and the ratio of img/s.

Each row: img/s over timed steps after a warm-up, GFLOP/s achieved and the share of the matmul
peak at the same thread count. Defaults and the reference are measured first; variants then
share what is left of ``--budget-min`` evenly between the families still to come, and a variant
whose predicted time does not fit (from the default's measured s/img) is listed as skipped.
The JSON (``--json``) is rewritten after every row, so an interrupted run keeps its figures.

    # the full run, about 30 minutes on 2 idle cores
    python benchmarks/cpu_efficiency.py --json cpu_efficiency.json
    # with torch.compile variants too (compiling takes minutes per network on 2 cores)
    python benchmarks/cpu_efficiency.py --compile --budget-min 45 --json cpu_efficiency.json
    # the test's smoke run: 32 px, 1 thread, default variant only, tiny models
    python benchmarks/cpu_efficiency.py --quick --tiny --families cyclegan,dfgan
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import itertools
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from training_step import build_trainer, close, flops_per_image, time_steps

import ganforge
from ganforge.config import RunConfig
from ganforge.core.files import atomic_write_text
from ganforge.data.multidomain import write_palette_domains
from ganforge.data.synthetic import write_captioned_shapes, write_shape_domains
from ganforge.models import get_family
from ganforge.train.loop import Trainer, train

FAMILIES = ("cyclegan", "unit", "pix2pix", "stargan", "dfgan", "maskgit", "tokenizer", "esrgan")
#: the published CycleGAN recipe (Zhu et al. 2017; junyanz/pytorch-CycleGAN-and-pix2pix's
#: defaults), pinned here so that it stays the reference when ganforge's defaults change
REFERENCE_MODEL = {"generator_blocks": 9, "generator_channels": 64, "discriminator_channels": 64,
                   "discriminator_layers": 3, "norm": "instance", "gan_loss": "lsgan",
                   "cycle_weight": 10.0, "identity_weight": 0.5, "pool_size": 50, "lr": 2e-4}
#: ... run as it usually is: fp32, eager, NCHW, batch 1
REFERENCE_TRAIN = {"batch_size": 1, "precision": "fp32", "channels_last": "off",
                   "compile": False}
#: models small enough for the smoke test (``--tiny``), as in the tests; ``size`` is set apart
TINY = {
    "cyclegan": {"generator_blocks": 1, "generator_channels": 8, "discriminator_channels": 8,
                 "discriminator_layers": 2, "pool_size": 4},
    "unit": {"channels": 8, "blocks": 2, "shared_blocks": 1, "discriminator_channels": 8,
             "discriminator_layers": 2},
    "pix2pix": {"generator_channels": 8, "generator_max_channels": 32, "generator_depth": 4,
                "discriminator_channels": 8, "discriminator_layers": 2, "dropout": 0.0},
    "stargan": {"channels": 8, "max_channels": 32, "downsamplings": 1, "bottleneck_blocks": 1,
                "style_dim": 16, "latent_dim": 8, "mapping_layers": 2, "mapping_channels": 32},
    "dfgan": {"generator_channels": 8, "discriminator_channels": 8, "text_dim": 32,
              "text_layers": 1, "noise_dim": 16},
    "maskgit": {"dim": 32, "layers": 2, "heads": 4, "text_dim": 32, "text_layers": 1},
    "tokenizer": {"downsample": 1, "channels": 16, "codebook_size": 32, "code_dim": 8,
                  "discriminator_channels": 8},
    "esrgan": {"channels": 16, "growth": 8, "blocks": 1, "discriminator_channels": 8},
}

# ------------------------------------------------------------------------ synthetic data
@dataclass
class SyntheticData:
    """Small synthetic data sets at ``size`` px, written on first use under ``root``."""

    root: Path
    size: int
    count: int

    @cached_property
    def shapes(self) -> tuple[Path, Path]:
        """Paired shapes in two colour schemes (unpaired, paired and super-resolution data)."""
        return write_shape_domains(self.root / "shapes", self.count, self.size, seed=0)

    @cached_property
    def palettes(self) -> list[Path]:
        """The same shapes in three palettes (multi-domain data)."""
        return write_palette_domains(self.root / "palettes", self.count, self.size, seed=0)

    @cached_property
    def captions(self) -> Path:
        """Captioned coloured shapes (text-to-image data, and the tokenizer's images)."""
        return write_captioned_shapes(self.root / "captions", self.count, self.size, seed=0)

    def unpaired(self) -> dict[str, Any]:
        return {"domain_a": str(self.shapes[0]), "domain_b": str(self.shapes[1]),
                "size": self.size}

    def multi_domain(self) -> dict[str, Any]:
        return {"domains": ",".join(str(p) for p in self.palettes)}

    def captioned(self) -> dict[str, Any]:
        return {"captions": str(self.captions)}

    def super_resolution(self) -> dict[str, Any]:
        return {"images": str(self.shapes[1]), "size": self.size, "crop": self.size}


#: which synthetic data each family trains on, as its data options
DATA: dict[str, Callable[[SyntheticData], dict[str, Any]]] = {
    "cyclegan": SyntheticData.unpaired, "unit": SyntheticData.unpaired,
    "pix2pix": SyntheticData.unpaired, "stargan": SyntheticData.multi_domain,
    "dfgan": SyntheticData.captioned, "maskgit": SyntheticData.captioned,
    "tokenizer": SyntheticData.captioned, "esrgan": SyntheticData.super_resolution}


def model_options(family: str, size: int, tiny: bool, data: SyntheticData,
                  work: Path) -> dict[str, Any]:
    """The family's default model config (or the tiny one) at ``size`` px: the size is set
    where the model has one, a U-Net's depth is cut to what the size divides by, and a model
    that reads an image tokenizer gets one trained for a step here (its default config)."""
    fields = {f.name: f for f in dataclasses.fields(get_family(family).ModelConfig)}
    options = dict(TINY[family]) if tiny else {}
    if "size" in fields:
        options["size"] = size
    depth = options.get("generator_depth", fields["generator_depth"].default) \
        if "generator_depth" in fields else 0
    if depth and size % 2 ** depth:
        options["generator_depth"] = (size & -size).bit_length() - 1
    if "tokenizer" in fields:
        options["tokenizer"] = str(tokenizer_run(size, tiny, data, work))
    return options


def tokenizer_run(size: int, tiny: bool, data: SyntheticData, work: Path) -> Path:
    """A tokenizer run of one training step (random weights suffice to time a step that
    reads its codes), made once per size."""
    run = work / f"tokenizer-{size}{'-tiny' if tiny else ''}"
    if not (run / "model").exists():
        config = RunConfig(family="tokenizer", model=model_options("tokenizer", size, tiny,
                                                                   data, work),
                           data=data.captioned(),
                           train={"steps": 1, "batch_size": 1, "device": "cpu",
                                  "progress": False, "ema_decay": 0.0})
        train(config, run)
    return run


# ------------------------------------------------------------------------------ peaks
def matmul_gflops(size: int, threads: int, repeats: int, dtype: torch.dtype) -> float:
    """GFLOP/s of the fastest of ``repeats`` [size, size] @ [size, size] matmuls."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    out = torch.mm(a, b)  # warm-up
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def peak_size(args: argparse.Namespace, precision: str) -> int:
    """Side of the peak's matmul: bf16 at most 2048 (emulated where the CPU has no bf16
    units, a 4096^3 one would take a minute)."""
    return args.matmul_size if precision == "fp32" else min(args.matmul_size, 2048)


def cpu_description() -> dict[str, Any]:
    """Model name, cores and the vector/matrix extensions that bound the peak."""
    model, flags = platform.processor(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return {"model": model, "cores": os.cpu_count(),
            "extensions": [f for f in wanted if f in flags],
            "torch": torch.__version__, "ganforge": ganforge.__version__}


# --------------------------------------------------------------------------- variants
@dataclass(frozen=True)
class Variant:
    """The settings of one timed step."""

    batch: int
    threads: int
    channels_last: bool
    compile: bool
    bf16: bool

    def label(self) -> str:
        return (f"b{self.batch} t{self.threads} {'CL' if self.channels_last else 'NCHW'} "
                f"{'compiled' if self.compile else 'eager'} {'bf16' if self.bf16 else 'fp32'}")

    def train_options(self) -> dict[str, Any]:
        return {"batch_size": self.batch, "channels_last": "on" if self.channels_last else "off",
                "compile": self.compile, "precision": "bf16" if self.bf16 else "fp32"}

    @classmethod
    def of(cls, trainer: Trainer) -> Variant:
        """The settings a set-up trainer resolved (``auto`` made concrete)."""
        return cls(trainer.train_config.batch_size, torch.get_num_threads(),
                   trainer.channels_last, trainer.train_config.compile, trainer.bf16)


#: the settings the variants change: ``Variant`` field -> command-line axis name
AXES = {"batch": "batch", "threads": "threads", "channels_last": "channels_last",
        "bf16": "precision", "compile": "compile"}


def axis_values(args: argparse.Namespace, default: Variant) -> dict[str, list[Any]]:
    """The values each chosen axis takes, the default's first."""
    chosen = {"batch": [int(b) for b in args.batches.split(",")],
              "threads": [int(t) for t in args.threads.split(",")],
              "channels_last": [False, True], "bf16": [False, True],
              "compile": [False, True] if args.compile else []}
    values = {}
    for field, name in AXES.items():
        own = getattr(default, field)
        values[field] = [own, *(v for v in chosen[field] if v != own)] \
            if name in args.vary.split(",") else [own]
    return values


def one_at_a_time(default: Variant, values: dict[str, list[Any]]) -> list[Variant]:
    return [dataclasses.replace(default, **{field: v})
            for field, options in values.items() for v in options[1:]]


def every_combination(default: Variant, values: dict[str, list[Any]]) -> list[Variant]:
    combos = (Variant(**dict(zip(values, combo, strict=True)))
              for combo in itertools.product(*values.values()))
    return [v for v in combos if v != default]


def best_of_each_axis(default: Variant, rates: dict[Variant, float]) -> Variant:
    """The default with each setting at its fastest measured value (measured one at a
    time)."""
    best = {}
    for field in AXES:
        alone = {v: r for v, r in rates.items()
                 if all(getattr(v, f) == getattr(default, f) for f in AXES if f != field)}
        best[field] = getattr(max(alone, key=alone.get), field)
    return Variant(**best)


# -------------------------------------------------------------------------- measuring
@dataclass
class Bench:
    """One run of the benchmark: its options, data, peaks and rows, saved after each row."""

    args: argparse.Namespace
    work: Path
    data: SyntheticData
    start: float = dataclasses.field(default_factory=time.monotonic)
    machine: dict[str, Any] = dataclasses.field(default_factory=cpu_description)
    peaks: dict[str, dict[int, float]] = dataclasses.field(default_factory=dict)
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    reference: dict[str, Any] = dataclasses.field(default_factory=dict)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def share(self, gflop_per_s: float, threads: int, precision: str) -> float | None:
        peak = self.peaks.get(precision, {}).get(threads)
        return gflop_per_s / peak if peak else None

    def run(self, family: str, model: dict[str, Any], role: str, options: dict[str, Any],
            threads: int, flops: float | None) -> dict[str, Any]:
        """Set up a trainer with the loop ``options``, count FLOPs per image when ``flops``
        is None, time its steps; return (and record) the row, with the error where it
        failed."""
        args = self.args
        torch.set_num_threads(threads)
        compiled = bool(options.get("compile"))
        if compiled:
            torch._dynamo.reset()
        row: dict[str, Any] = {"family": family, "role": role}
        began = time.monotonic()
        trainer = None
        try:
            trainer = build_trainer(family, model, DATA[family](self.data),
                                    {"device": "cpu", **options},
                                    self.work / "runs" / f"{family}-{len(self.rows)}")
            variant = Variant.of(trainer)
            row.update(variant=variant.label(), **dataclasses.asdict(variant))
            row["setup_s"] = time.monotonic() - began
            if flops is None:
                flops = flops_per_image(trainer, args.flop_steps)
            warmup = args.warmup + (args.compile_warmup if compiled else 0)
            timing = time_steps(trainer, warmup, args.steps, args.min_seconds)
        except Exception as exc:  # a variant that fails (compile, memory) is a result too
            row["status"] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            row["traceback"] = traceback.format_exc()[-4000:]
            print(f"  {family} {role}: {row['status']}", file=sys.stderr, flush=True)
            return self.add(row)
        finally:
            if trainer is not None:
                close(trainer)
            del trainer
            gc.collect()
        gflop_per_s = timing.img_per_s * flops / 1e9
        row.update(status="ok", gflop_per_image=flops / 1e9, img_per_s=timing.img_per_s,
                   gflop_per_s=gflop_per_s, timed_steps=timing.steps, timed_s=timing.seconds,
                   warmup_s=timing.warmup_s, wall_s=time.monotonic() - began,
                   share_fp32_peak=self.share(gflop_per_s, threads, "fp32"),
                   share_bf16_peak=self.share(gflop_per_s, threads, "bf16")
                   if row["bf16"] else None)
        print(f"  {family:<10}{role:<10}{row['variant']:<28}{timing.img_per_s:>9.2f} img/s "
              f"{gflop_per_s:>7.1f} GFLOP/s  ({row['wall_s']:.0f} s)", file=sys.stderr,
              flush=True)
        return self.add(row)

    def skip(self, family: str, role: str, variant: Variant, why: str) -> None:
        self.add({"family": family, "role": role, "variant": variant.label(),
                  **dataclasses.asdict(variant), "status": f"skipped: {why}"})

    def add(self, row: dict[str, Any]) -> dict[str, Any]:
        self.rows.append(row)
        self.save()
        return row

    def report(self) -> dict[str, Any]:
        return {"machine": self.machine, "settings": vars(self.args),
                "peaks_gflops": {p: {str(t): v for t, v in by.items()}
                                 for p, by in self.peaks.items()},
                "reference": self.reference, "best": best_rows(self.rows),
                "rows": self.rows, "wall_s": self.elapsed()}

    def save(self) -> None:
        if self.args.json:
            atomic_write_text(Path(self.args.json), json.dumps(self.report(), indent=2) + "\n")


def predicted_seconds(bench: Bench, default: dict[str, Any], variant: Variant) -> float:
    """What measuring ``variant`` should take, from the default's measured s/img: per-image
    time scaled by the thread ratio where fewer threads are used, warm-up included (a
    compiled variant adds ``--compile-estimate-s``)."""
    args = bench.args
    step = variant.batch / default["img_per_s"] * max(1.0, default["threads"] / variant.threads)
    warmup = args.warmup + (args.compile_warmup if variant.compile else 0)
    return (default["setup_s"] + warmup * step + max(args.steps * step, args.min_seconds)
            + (args.compile_estimate_s if variant.compile else 0.0))


def measure_family(bench: Bench, family: str, model: dict[str, Any],
                   default: dict[str, Any], budget_s: float) -> None:
    """The family's variants, cheapest first, within ``budget_s`` seconds."""
    args = bench.args
    own = get_family(family).train_defaults
    base = Variant(*(default[f] for f in ("batch", "threads", "channels_last", "compile",
                                          "bf16")))
    values = axis_values(args, base)
    grid = every_combination(base, values) if args.grid == "full" else \
        one_at_a_time(base, values)
    rates = {base: default["img_per_s"]}
    deadline = time.monotonic() + budget_s

    def attempt(variant: Variant, role: str) -> None:
        estimate = predicted_seconds(bench, default, variant)
        if estimate > args.max_variant_s:
            bench.skip(family, role, variant, f"predicted {estimate:.0f} s > --max-variant-s")
        elif time.monotonic() + estimate > deadline:
            bench.skip(family, role, variant, f"predicted {estimate:.0f} s; the family's "
                                              f"share of --budget-min is spent")
        else:
            row = bench.run(family, model, role, {**own, **variant.train_options()},
                            variant.threads, default["gflop_per_image"] * 1e9)
            if row["status"] == "ok":
                rates[variant] = row["img_per_s"]

    for variant in sorted(grid, key=lambda v: predicted_seconds(bench, default, v)):
        attempt(variant, "variant")
    if args.grid == "axes" and args.combine:
        combined = best_of_each_axis(base, rates)
        if combined not in rates and sum(getattr(combined, f) != getattr(base, f)
                                         for f in AXES) > 1:
            attempt(combined, "combined")


def best_rows(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per family: its default row and its fastest measured row (the reference aside)."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["status"] != "ok" or row["role"] == "reference" or row["role"].startswith("ab-"):
            continue
        entry = out.setdefault(row["family"], {})
        if row["role"] == "default":
            entry["default"] = row
        if row["img_per_s"] > entry.get("best", {}).get("img_per_s", 0.0):
            entry["best"] = row
    return {family: {"default_variant": e["default"]["variant"],
                     "default_img_per_s": e["default"]["img_per_s"],
                     "best_variant": e["best"]["variant"],
                     "best_img_per_s": e["best"]["img_per_s"],
                     "best_vs_default": e["best"]["img_per_s"] / e["default"]["img_per_s"],
                     "best_share_fp32_peak": e["best"]["share_fp32_peak"]}
            for family, e in out.items() if "default" in e}


# ----------------------------------------------------------------------------- output
def percent(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def markdown(bench: Bench) -> str:
    """The report as Markdown: machine and peaks, every row, best per family, reference."""
    m, args = bench.machine, bench.args
    lines = [f"CPU: {m['model']}, {m['cores']} cores ({', '.join(m['extensions']) or 'no AVX2'})"
             f"; torch {m['torch']}; {args.size} px; timed >= {args.min_seconds:g} s "
             f"after {args.warmup} warm-up step(s)", ""]
    for precision, by in bench.peaks.items():
        lines.append(f"{precision} matmul peak ({peak_size(args, precision)}^2): " + ", ".join(
            f"{v:.1f} GFLOP/s at {t} thread(s)" for t, v in sorted(by.items())))
    lines += ["", "| family | role | variant | GFLOP/img | img/s | GFLOP/s | % fp32 peak "
              "| % bf16 peak | status |", "|" + "---|" * 9]
    roles = ("reference", "default", "variant", "combined")
    for r in sorted((r for r in bench.rows if r["role"] in roles),
                    key=lambda r: (FAMILIES.index(r["family"]), roles.index(r["role"]))):
        if r["status"] == "ok":
            lines.append(f"| {r['family']} | {r['role']} | {r['variant']} | "
                         f"{r['gflop_per_image']:.2f} | {r['img_per_s']:.2f} | "
                         f"{r['gflop_per_s']:.1f} | {percent(r['share_fp32_peak'])} | "
                         f"{percent(r['share_bf16_peak'])} | ok |")
        else:
            lines.append(f"| {r['family']} | {r['role']} | {r.get('variant', '')} "
                         f"| | | | | | {r['status']} |")
    best = best_rows(bench.rows)
    if best:
        lines += ["", "| family | default | img/s | best variant | img/s | x default "
                  "| % fp32 peak |", "|" + "---|" * 7]
        for family, b in best.items():
            lines.append(f"| {family} | {b['default_variant']} | {b['default_img_per_s']:.2f} "
                         f"| {b['best_variant']} | {b['best_img_per_s']:.2f} "
                         f"| {b['best_vs_default']:.2f} | {percent(b['best_share_fp32_peak'])} |")
    ref = bench.reference
    if "reference_img_per_s" in ref:
        model = "the tiny model" if args.tiny else "9 ResNet blocks"
        lines += ["", f"Reference CycleGAN recipe ({model}, fp32, eager, NCHW, batch 1): "
                      f"{ref['reference_img_per_s']:.2f} img/s"]
        for key, what in (("default", "ganforge's default CycleGAN step"),
                          ("best", "ganforge's best CycleGAN variant")):
            if f"{key}_vs_reference" in ref:
                lines.append(f"{what} ({ref[f'{key}_variant']}): {ref[f'{key}_img_per_s']:.2f}"
                             f" img/s = {ref[f'{key}_vs_reference']:.2f}x the reference")
    ab = ref.get("ab")
    if ab:
        lines += ["", f"Interleaved, {ab['rounds']} rounds (reference, default, best, reference, "
                      "...; a fresh trainer each time): median img/s (min-max)"]
        for role in ("reference", "default", "best"):
            if role in ab:
                r = ab[role]
                lines.append(f"- {role} ({r['variant']}): {r['median']:.2f} "
                             f"({r['min']:.2f}-{r['max']:.2f})"
                             + (f" = {r['vs_reference']:.2f}x the reference"
                                if "vs_reference" in r else ""))
    return "\n".join(lines)


def compare_reference(bench: Bench, reference: dict[str, Any]) -> None:
    if reference["status"] != "ok":
        return
    rate = reference["img_per_s"]
    bench.reference = {"reference_variant": reference["variant"], "reference_img_per_s": rate,
                       "reference_gflop_per_image": reference["gflop_per_image"]}
    cyclegan = best_rows(bench.rows).get("cyclegan")
    if cyclegan:
        for key in ("default", "best"):
            bench.reference.update({
                f"{key}_variant": cyclegan[f"{key}_variant"],
                f"{key}_img_per_s": cyclegan[f"{key}_img_per_s"],
                f"{key}_vs_reference": cyclegan[f"{key}_img_per_s"] / rate})
    bench.save()


def interleaved_rounds(bench: Bench, rounds: int, reference_model: dict[str, Any],
                       model: dict[str, Any], threads: int) -> None:
    """Time the reference, ganforge's default and its best CycleGAN variant in turn,
    ``rounds`` times over (a fresh trainer each time), and record median, min and max img/s
    of each: on a shared or throttled machine one timing of each can differ by tens of
    percent between identical settings, which a single ratio would report as a speed-up."""
    best = best_rows(bench.rows).get("cyclegan")
    if not best or bench.reference.get("reference_img_per_s") is None:
        return
    flops = bench.reference["reference_gflop_per_image"] * 1e9
    own = get_family("cyclegan").train_defaults
    fields = ("batch", "threads", "channels_last", "compile", "bf16")
    plans = {"reference": (reference_model, dict(REFERENCE_TRAIN), threads)}
    for role, label in (("default", best["default_variant"]), ("best", best["best_variant"])):
        # the measured row that carries this label (best_rows took its label from one)
        row = next(r for r in bench.rows if r["family"] == "cyclegan"
                   and r["status"] == "ok" and r.get("variant") == label)
        variant = Variant(*(row[f] for f in fields))
        plans[role] = (model, {**own, **variant.train_options()}, variant.threads)
    rates: dict[str, list[float]] = {role: [] for role in plans}
    variants: dict[str, str] = {}
    for _ in range(rounds):
        for role, (net, options, count) in plans.items():
            row = bench.run("cyclegan", net, f"ab-{role}", options, count, flops)
            if row["status"] == "ok":
                rates[role].append(row["img_per_s"])
                variants[role] = row["variant"]
    summary: dict[str, Any] = {"rounds": rounds}
    for role, values in rates.items():
        if values:
            summary[role] = {"variant": variants[role], "median": statistics.median(values),
                             "min": min(values), "max": max(values), "all": values}
    if "reference" in summary:
        for role in ("default", "best"):
            if role in summary:
                summary[role]["vs_reference"] = (summary[role]["median"]
                                                 / summary["reference"]["median"])
    bench.reference["ab"] = summary
    bench.save()


# ------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default=",".join(FAMILIES),
                        help="comma-separated families (default: all)")
    parser.add_argument("--size", type=int, default=64, help="image side in px (ESRGAN: of "
                        "its output crops)")
    parser.add_argument("--tiny", action="store_true",
                        help="the tests' tiny models instead of the families' defaults")
    parser.add_argument("--vary", default="batch,threads,channels_last,precision,compile",
                        help="settings the variants change (compile only with --compile)")
    parser.add_argument("--batches", default="1,8,32", help="batch sizes the variants try")
    parser.add_argument("--threads", default="2,1",
                        help="thread counts; the first is the default step's")
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile (inductor's CPU code) variants")
    parser.add_argument("--grid", choices=("axes", "full"), default="axes",
                        help="axes: one setting at a time, then the best of each together; "
                             "full: every combination")
    parser.add_argument("--no-combine", dest="combine", action="store_false",
                        help="with --grid axes: skip the best-of-each-setting variant")
    parser.add_argument("--batch", type=int, default=0,
                        help="batch size of the default step (default: the family's own)")
    parser.add_argument("--no-reference", dest="reference", action="store_false",
                        help="skip the published CycleGAN recipe's row")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before timing")
    parser.add_argument("--compile-warmup", type=int, default=2,
                        help="extra untimed steps of compiled variants (recompiles)")
    parser.add_argument("--steps", type=int, default=1, help="at least this many timed steps")
    parser.add_argument("--min-seconds", type=float, default=8.0,
                        help="time steps until at least this long")
    parser.add_argument("--flop-steps", type=int, default=4,
                        help="steps FLOPs are counted and averaged over")
    parser.add_argument("--matmul-size", type=int, default=4096)
    parser.add_argument("--matmul-repeats", type=int, default=3)
    parser.add_argument("--budget-min", type=float, default=30.0,
                        help="whole run; variants share what the defaults leave of it")
    parser.add_argument("--max-variant-s", type=float, default=240.0,
                        help="skip a variant predicted to take longer than this")
    parser.add_argument("--compile-estimate-s", type=float, default=180.0,
                        help="compile time assumed when predicting a compiled variant")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 32 px, 1 thread, batch 1, default variant only, 1 "
                             "warm-up + 1 timed step, small matmul")
    parser.add_argument("--ab-rounds", type=int, default=0,
                        help="then time the reference, the default and the best CycleGAN "
                             "variant in turn this many times and report medians (noisy "
                             "machines)")
    parser.add_argument("--json", default="", help="write the results here as JSON")
    parser.add_argument("--work", default="", help="folder for data and runs (default: temp)")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.threads, args.batch, args.vary = 32, "1", 1, ""
        args.warmup, args.steps, args.min_seconds, args.flop_steps = 1, 1, 0.0, 1
        args.matmul_size, args.matmul_repeats = 1024, 2
    families = args.families.split(",")
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        parser.error(f"unknown families {', '.join(unknown)}; known: {', '.join(FAMILIES)}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    families = args.families.split(",")
    threads = [int(t) for t in args.threads.split(",")]
    work = Path(args.work or tempfile.mkdtemp(prefix="gf-cpu-eff-"))
    batches = [int(b) for b in args.batches.split(",")] + [args.batch] + \
        [get_family(f).train_defaults.get("batch_size", 1) for f in families]
    bench = Bench(args, work, SyntheticData(work / "data", args.size, max(64, *batches)))
    initial_threads = torch.get_num_threads()

    precisions = {"fp32": torch.float32}
    if "precision" in args.vary.split(","):
        precisions["bf16"] = torch.bfloat16
    for name, dtype in precisions.items():
        bench.peaks[name] = {t: matmul_gflops(peak_size(args, name), t, args.matmul_repeats,
                                              dtype) for t in threads}
        print(f"{name} matmul peak: {bench.peaks[name]} GFLOP/s", file=sys.stderr, flush=True)

    reference = None
    if args.reference and "cyclegan" in families:
        model = {**REFERENCE_MODEL, **(TINY["cyclegan"] if args.tiny else {})}
        reference = bench.run("cyclegan", model, "reference", dict(REFERENCE_TRAIN),
                              threads[0], None)
    models, defaults = {}, {}
    for family in families:
        models[family] = model_options(family, args.size, args.tiny, bench.data, work)
        own = {**get_family(family).train_defaults,
               **({"batch_size": args.batch} if args.batch else {})}
        defaults[family] = bench.run(family, models[family], "default", own, threads[0], None)
    if reference is not None:
        compare_reference(bench, reference)

    for i, family in enumerate(families):
        if defaults[family]["status"] != "ok":
            continue
        left = args.budget_min * 60 - bench.elapsed()
        measure_family(bench, family, models[family], defaults[family],
                       left / (len(families) - i))
    if reference is not None:
        compare_reference(bench, reference)
        if args.ab_rounds > 0 and "cyclegan" in models:
            interleaved_rounds(bench, args.ab_rounds,
                               {**REFERENCE_MODEL, **(TINY["cyclegan"] if args.tiny else {})},
                               models["cyclegan"], threads[0])
    torch.set_num_threads(initial_threads)
    bench.save()
    print(markdown(bench), flush=True)
    return bench.report()


if __name__ == "__main__":
    main()
