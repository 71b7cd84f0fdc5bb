"""Typed run configurations. Every run saves its full configuration as JSON beside its weights."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ganforge.core.files import atomic_write_text
from ganforge.errors import ConfigError

T = TypeVar("T")


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass as a JSON-ready dict (paths become strings)."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = str(value) if isinstance(value, Path) else value
    return out


def from_dict(cls: type[T], values: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from a dict, refusing unknown keys with a message naming them."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(names))}")
    return cls(**values)


def field_type(cls: type, name: str) -> type:
    """The plain type of a dataclass field (Optional[X] -> X)."""
    hint = typing.get_type_hints(cls)[name]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0]
    return hint


def option(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field carrying the help text its command-line option shows."""
    return field(default=default, metadata={"help": help, **kwargs})


@dataclass
class TrainConfig:
    """How the generic loop trains any family."""

    steps: int = option(1000, "total optimisation steps")
    batch_size: int = option(1, "images per step per process (per GPU under torchrun)")
    grad_accum: int = option(1, "micro-batches accumulated into each step")
    lr_decay_start: float = option(
        0.5, "fraction of the steps after which learning rates fall linearly to zero")
    ema_decay: float = option(0.999, "decay of the EMA copies used for samples and export")
    precision: str = option("auto", "auto (bf16 autocast where the device computes bf16 "
                            "natively: CUDA, CPUs with AMX or AVX512-BF16; else fp32), fp32 "
                            "or bf16")
    channels_last: str = option("auto", "auto (on CUDA; also on an AVX-512 CPU for families "
                                "measured faster so: DF-GAN), on or off")
    compile: bool = option(False, "wrap the networks with torch.compile")
    seed: int = option(0, "seed for weights, data order and augmentation")
    device: str = option("auto", "auto, cpu, cuda or cuda:N")
    log_every: int = option(10, "steps between logged losses")
    sample_every: int = option(500, "steps between sample grids")
    checkpoint_every: int = option(500, "steps between checkpoints")
    keep_checkpoints: int = option(2, "how many recent checkpoints to keep")
    num_samples: int = option(4, "images per row of the sample grids")
    eval_every: int = option(0, "steps between quality checks: the family's own metric on a "
                             "fixed batch of training data, logged as quality/* (0 = off)")
    eval_images: int = option(64, "images in the fixed batch of the quality checks")
    progress: bool = option(True, "show a progress bar")

    def validate(self) -> TrainConfig:
        """Check ranges; raise ConfigError naming the first bad value."""
        positive = ("steps", "batch_size", "grad_accum", "log_every", "sample_every",
                    "checkpoint_every", "keep_checkpoints", "num_samples", "eval_images")
        if self.eval_every < 0:
            raise ConfigError(f"--eval-every must be at least 0 (0 = off), got {self.eval_every}")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, "
                                  f"got {getattr(self, name)}")
        if self.batch_size % self.grad_accum:
            raise ConfigError(f"--batch-size {self.batch_size} must be divisible by "
                              f"--grad-accum {self.grad_accum}")
        if not 0.0 <= self.lr_decay_start <= 1.0:
            raise ConfigError(f"--lr-decay-start must be in [0, 1], got {self.lr_decay_start}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"--ema-decay must be in [0, 1), got {self.ema_decay}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"--precision must be auto, fp32 or bf16, got {self.precision!r}")
        if self.channels_last not in ("auto", "on", "off"):
            raise ConfigError(f"--channels-last must be auto, on or off, "
                              f"got {self.channels_last!r}")
        return self


@dataclass
class RunConfig:
    """Everything that defines a run: the family, its model and data settings, the loop's."""

    family: str
    model: dict[str, Any]
    data: dict[str, Any]
    train: dict[str, Any]
    ganforge_version: str = ""

    def save(self, path: Path) -> None:
        """Write as JSON atomically."""
        atomic_write_text(path, json.dumps(to_dict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> RunConfig:
        """Read a run's config.json, with a clear error when it is missing or not ours."""
        try:
            values = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"run config {path} does not exist") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"run config {path} is not valid JSON ({exc})") from None
        if not isinstance(values, dict) or "family" not in values:
            raise ConfigError(f"run config {path} is not a ganforge run config")
        return from_dict(cls, values, where=str(path))
