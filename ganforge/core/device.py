"""Which device a job runs on: one rule for training, inference, metrics and the CLI."""

from __future__ import annotations

import torch

from ganforge.errors import ConfigError


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> CUDA when present, else CPU; under torchrun each process takes its own GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name} asked for, but this machine has no CUDA GPU")
        return torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)
    if name != "cpu":
        raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}")
    return torch.device("cpu")
