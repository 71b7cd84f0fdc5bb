"""Timing and FLOP counting of any family's training step, as ganforge's loop runs it.

Shared by the throughput benchmarks (``cyclegan_throughput.py``, ``cpu_efficiency.py``,
``gpu_suite.py``): a set-up :class:`~ganforge.train.loop.Trainer` from a family name and its
model, data and loop options; images per second over timed steps after a warm-up; forward +
backward FLOPs per image counted with torch's ``FlopCounterMode``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch.utils.flop_counter import FlopCounterMode

from ganforge.config import RunConfig
from ganforge.train.loop import Trainer


def build_trainer(family: str, model: dict[str, Any], data: dict[str, Any],
                  train: dict[str, Any], run_dir: Path) -> Trainer:
    """A set-up trainer of ``family`` writing (config, logs) into a new ``run_dir``.

    ``train`` holds the loop's options as given; what it leaves out takes the loop's defaults
    (not the family's ``train_defaults``: merge those in first where wanted)."""
    trainer = Trainer(RunConfig(family=family, model=model, data=data,
                                train={"steps": 100_000, "progress": False, **train}), run_dir)
    trainer.setup()
    return trainer


def close(trainer: Trainer) -> None:
    """Close the log files a set-up trainer opened (``fit()`` would on its way out)."""
    for name in ("writer", "scalars"):
        if hasattr(trainer, name):
            getattr(trainer, name).close()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    """What :func:`time_steps` measured."""

    warmup_s: float  # the untimed warm-up steps (torch.compile compiles here)
    steps: int  # timed steps
    seconds: float  # their wall time
    img_per_s: float


def time_steps(trainer: Trainer, warmup: int, steps: int, min_seconds: float = 0.0) -> Timing:
    """Run ``warmup`` untimed steps, then time at least ``steps`` steps, continuing until
    ``min_seconds`` have passed, with the device synchronised at both ends."""
    batches = trainer.batches()
    start = time.perf_counter()
    for _ in range(warmup):
        trainer.train_step(next(batches)[1])
    sync(trainer.device)
    warmed = time.perf_counter()
    done = 0
    while done < steps or time.perf_counter() - warmed < min_seconds:
        trainer.train_step(next(batches)[1])
        done += 1
        if done >= steps:
            sync(trainer.device)
    seconds = time.perf_counter() - warmed
    return Timing(warmed - start, done, seconds,
                  done * trainer.train_config.batch_size / seconds)


def measure(trainer: Trainer, warmup: int, steps: int) -> float:
    """Images per second over ``steps`` timed steps after ``warmup`` untimed ones."""
    return time_steps(trainer, warmup, steps).img_per_s


class _GlobalOnly:
    """Stands in for FlopCounterMode's module tracker: every FLOP is counted as 'Global'."""

    parents: ClassVar[set[str]] = {"Global"}

    def __enter__(self) -> _GlobalOnly:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class TotalFlopCounter(FlopCounterMode):
    """``FlopCounterMode`` without its per-module breakdown. The breakdown's backward hooks
    break ``torch.autograd.grad`` with respect to a leaf tensor ("A leaf node was passed to
    _will_engine_execute_node ...", torch 2.13), which gradient penalties on real images
    (StarGAN's R1, DF-GAN's matching-aware penalty) take; the total is the same."""

    def __init__(self) -> None:
        super().__init__(display=False)
        self.mod_tracker = _GlobalOnly()


def flops_per_image(trainer: Trainer, steps: int = 1) -> float:
    """Forward + backward FLOPs of a training step, per image, averaged over ``steps``
    consecutive steps (for recipes whose work varies from step to step, such as a gradient
    penalty every few steps). Count on an eager trainer: compiled kernels bypass the counter."""
    batches = trainer.batches()
    with TotalFlopCounter() as counter:
        for _ in range(steps):
            trainer.train_step(next(batches)[1])
    return counter.get_total_flops() / (steps * trainer.train_config.batch_size)
