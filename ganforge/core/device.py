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


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 matrix products natively (CUDA GPUs that support
    bf16; CPUs with AMX tiles or AVX512-BF16), so that bf16 autocast is faster rather than
    emulated. On such a CPU (measured: Xeon with AMX) a 4096^2 bf16 matmul runs 6.6x faster
    than fp32; without, bf16 is slower than fp32 (see docs/benchmarks.md, CPU efficiency)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in probes)
    return False


def cpu_has_avx512() -> bool:
    """Whether PyTorch's CPU kernels run with AVX-512 here (``get_cpu_capability``)."""
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512")
