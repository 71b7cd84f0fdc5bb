"""What a model family gives the generic training loop and the pipelines.

A family is one file in ``models/``: its config dataclasses, ``build`` for its networks, a
training recipe ``step`` that returns losses, the sample grid's rows, and the inference model
it exports (``ganforge/inference/<family>.py``, which holds the networks inference needs).
It knows nothing about devices, loops, files, processes or gradients on/off: the loop hands
``step`` the (possibly compiled) networks and ``minimize`` back-propagates into the named
optimiser's parameters only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from ganforge.data.datasets import TrainData
from ganforge.inference.base import InferenceModel


class Optimization(Protocol):
    """Handed to ``Family.step`` by the loop: the only way a recipe touches optimisers."""

    def autocast(self) -> AbstractContextManager[Any]:
        """Context for forward passes (bf16 autocast on CUDA when enabled)."""
        ...

    def minimize(self, optimizer: str, loss: torch.Tensor) -> None:
        """Back-propagate ``loss``; on the last micro-batch, average gradients across
        processes and step the named optimiser."""
        ...


class Family(ABC):
    """Base class of a model family (CycleGAN, UNIT, DF-GAN, ...)."""

    name: ClassVar[str]
    task: ClassVar[str]  # the pipeline that serves it, e.g. "image-to-image"
    ModelConfig: ClassVar[type]
    DataConfig: ClassVar[type]
    #: the inference model a trained recipe exports (``ganforge.inference``)
    Inference: ClassVar[type[InferenceModel]]
    #: networks with EMA copies (those the family builds); samples and pipelines use them
    ema_networks: ClassVar[tuple[str, ...]] = ()
    #: networks the loop may wrap in torch.compile (None = all of them)
    compile_networks: ClassVar[tuple[str, ...] | None] = None
    #: whether ``--channels-last auto`` also means channels_last on a CPU with AVX-512 (it
    #: always does on CUDA): a family whose step measured faster that way there
    channels_last_on_avx512: ClassVar[bool] = False
    #: training-loop defaults that suit the family (the user's options still win)
    train_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, model_config: Any):
        self.config = model_config
        self.networks = nn.ModuleDict(self.build(model_config))

    @classmethod
    @abstractmethod
    def build(cls, model_config: Any) -> dict[str, nn.Module]:
        """All networks of the family, freshly initialised."""

    @classmethod
    @abstractmethod
    def inference_config(cls, model_config: Any, data_config: Any) -> Any:
        """The typed config of the inference model this recipe exports (``Inference.Config``):
        the networks' shape and what sampling needs (image size, directions, background)."""

    def export(self, nets: Mapping[str, nn.Module], data_config: Any,
               trained_steps: int) -> InferenceModel:
        """The inference model of this training state: ``nets`` are the networks (their EMA
        copies where the family keeps them); by default the inference model holds those of
        them its config builds, by name."""
        config = self.inference_config(self.config, data_config)
        # the names only: built on the meta device with the RNG put back, so exporting at a
        # checkpoint neither costs memory nor moves the random stream (exact resume)
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            names = list(self.Inference.build_modules(config))
        return self.Inference(config, {name: nets[name] for name in names},
                              {"trained_steps": trained_steps})

    @abstractmethod
    def load_data(self, data_config: Any, seed: int) -> TrainData:
        """Read and check the training data named by ``data_config``."""

    @abstractmethod
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimisers over ``self.networks``; the loop adds learning-rate schedules."""

    @abstractmethod
    def step(self, nets: Mapping[str, nn.Module], batch: dict[str, torch.Tensor],
             opt: Optimization) -> dict[str, torch.Tensor]:
        """One training step on one micro-batch; returns detached scalar losses by name.

        ``nets`` are the networks to call (possibly compiled); their parameters are those of
        ``self.networks``.
        """

    @abstractmethod
    def sample_rows(self, nets: Mapping[str, nn.Module],
                    batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Rows of the sample grid, each [B, 3, H, W] in [-1, 1], from EMA networks."""

    @torch.no_grad()
    def quality(self, nets: Mapping[str, nn.Module],
                batch: dict[str, Any]) -> dict[str, float]:
        """The family's own quality figures (lower/higher as each name says) on a fixed batch,
        from the EMA networks; the loop logs them every ``--eval-every`` steps as quality/*.
        Families without a cheap metric return nothing."""
        del nets, batch
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Training state outside the networks and optimisers (e.g. image pools)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        del state  # families without extra state have nothing to restore
