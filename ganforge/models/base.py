"""What a model family gives the generic training loop and the pipelines.

A family is one file in ``models/``: its config dataclasses, ``build`` for its networks, a
training recipe ``step`` that returns losses, and what the sample grid and the pipeline need.
It knows nothing about devices, loops, files or processes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from ganforge.data.datasets import TrainData
from ganforge.errors import ConfigError


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
    #: networks with EMA copies (those the family builds); samples and pipelines use them
    ema_networks: ClassVar[tuple[str, ...]] = ()
    #: networks the loop may wrap in torch.compile (None = all of them)
    compile_networks: ClassVar[tuple[str, ...] | None] = None
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
    def build_inference(cls, model_config: Any,
                        info: dict[str, Any] | None = None) -> dict[str, nn.Module]:
        """Only the networks an exported pipeline needs (by default the EMA'd ones).

        ``info`` is what ``pipeline_info`` saved beside them: a family whose networks depend
        on another saved model (MaskGIT on its tokenizer) builds them from it."""
        nets = cls.build(model_config)
        return {name: nets[name] for name in cls.ema_networks if name in nets}

    @classmethod
    def pipeline_info(cls, model_config: Any, data_config: Any) -> dict[str, Any]:
        """Extra settings an exported pipeline needs (image size, directions, ...)."""
        return {}

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

    @classmethod
    def translate(cls, nets: Mapping[str, nn.Module], info: dict[str, Any],
                  images: torch.Tensor, direction: str | None = None,
                  **options: Any) -> torch.Tensor:
        """Image-to-image inference: [B, 3, H, W] in [-1, 1] -> translated, same layout.

        ``nets`` are the pipeline's (EMA) networks, ``info`` what ``pipeline_info`` gave.
        The default serves families whose ``info["directions"]`` maps each direction to one
        network (CycleGAN). Families with more to choose (a target style, a reference image,
        a latent sample) override this and read their ``options`` (``style``, ``reference``,
        ``generator``, ...); unknown options must raise ConfigError.
        """
        table = info.get("directions", {})
        if direction not in table:
            raise ConfigError(f"direction {direction!r} is unknown to this model; "
                              f"known: {', '.join(table)}")
        if options:
            raise ConfigError(f"{cls.name} models take no {', '.join(sorted(options))} option")
        return nets[table[direction]](images)

    @classmethod
    def generate(cls, nets: Mapping[str, nn.Module], info: dict[str, Any], text: Any,
                 noise: torch.Tensor, **options: Any) -> torch.Tensor:
        """Text-to-image inference: images [B, 3, H, W] in [-1, 1], one per row of ``text``
        and ``noise`` (what the pipeline's ``encode`` and ``noise`` gave).

        The default serves noise-vector generators conditioned on a sentence embedding
        (DF-GAN): ``nets["generator"](noise [B, Z], text [B, D])``. Families with sampling
        settings (MaskGIT: ``guidance``, ``temperature``, ``decode_steps``) override this;
        unknown options must raise ConfigError.
        """
        if options:
            raise ConfigError(f"{cls.name} models take no {', '.join(sorted(options))} option")
        return nets["generator"](noise, text)

    def state_dict(self) -> dict[str, Any]:
        """Training state outside the networks and optimisers (e.g. image pools)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        del state  # families without extra state have nothing to restore
