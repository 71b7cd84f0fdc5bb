"""Shared fixtures: tiny synthetic domains and configs that train in seconds on a CPU."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from ganforge.config import RunConfig
from ganforge.data.synthetic import write_shape_domains

# one intra-op thread: tiny convolutions run faster on one than on two (measured: the
# text-to-image learning test 87 s -> 59 s, the CycleGAN one 37 s -> 18 s on 2 idle cores)
torch.set_num_threads(1)

TINY_MODEL = {"generator_blocks": 1, "generator_channels": 8, "discriminator_channels": 8,
              "discriminator_layers": 2, "pool_size": 4}


@pytest.fixture(scope="session")
def shapes16(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """24 paired 16 px images in a/ and b/."""
    return write_shape_domains(tmp_path_factory.mktemp("shapes16"), count=24, size=16, seed=0)


def tiny_config(domains: tuple[Path, Path], **train: object) -> RunConfig:
    """A CycleGAN run config small enough for unit tests."""
    train_values = {"steps": 6, "batch_size": 2, "log_every": 2, "sample_every": 3,
                    "checkpoint_every": 3, "progress": False, "seed": 0, **train}
    return RunConfig(family="cyclegan", model=dict(TINY_MODEL),
                     data={"domain_a": str(domains[0]), "domain_b": str(domains[1]), "size": 16},
                     train=train_values)


def load_benchmark(name: str) -> ModuleType:
    """A script of benchmarks/ imported as a module (registered under its name, which its
    dataclasses look themselves up by)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def stop_process(process: subprocess.Popen) -> None:
    """Ask a child process (a `ganforge serve`) to end; kill it if it has not within 10 s."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
