"""Exponential moving average of a network's weights, used for sampling and export."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    """Keeps ``shadow``, a frozen copy of a network whose weights trail the live ones.

    ``decay`` is reached gradually: early in training the average follows the live weights
    closely, so a short run still samples from a useful network.
    """

    def __init__(self, network: nn.Module, decay: float = 0.999):
        super().__init__()
        self.decay = decay
        self.shadow = copy.deepcopy(network).eval().requires_grad_(False)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, network: nn.Module) -> None:
        """Move the shadow weights toward ``network``'s; buffers are copied as they are."""
        self.updates += 1
        n = float(self.updates)
        decay = min(self.decay, (1.0 + n) / (10.0 + n))
        live = dict(network.named_parameters())
        for name, p in self.shadow.named_parameters():
            p.lerp_(live[name].detach().to(p.dtype), 1.0 - decay)
        live_buffers = dict(network.named_buffers())
        for name, b in self.shadow.named_buffers():
            b.copy_(live_buffers[name])
