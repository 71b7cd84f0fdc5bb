"""Training datasets as the generic loop sees them: index batches in, tensors out.

A dataset holds its images decoded in memory (uint8) so that a batch is one tensor gather:
no worker processes, and the order of batches is a pure function of (seed, epoch, step),
which is what makes resuming exact. The loop draws indices with a DistributedSampler.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from ganforge.data.images import ImageFolder, uint8_to_float


class TrainData(Protocol):
    """What the training loop needs from a dataset."""

    def __len__(self) -> int: ...

    def batch(self, indices: torch.Tensor, epoch: int) -> dict[str, Any]:
        """One batch (tensors, or lists such as captions) for the given sample indices."""
        ...

    def preview(self, count: int) -> dict[str, Any]:
        """A fixed batch shown in every sample grid."""
        ...


def spread(length: int, count: int) -> torch.Tensor:
    """``min(count, length)`` indices spread evenly over ``range(length)`` (for previews)."""
    count = min(count, length)
    return torch.linspace(0, length - 1, count).round().long().unique()


def random_flip(images: torch.Tensor) -> torch.Tensor:
    """Flip each image of [B, C, H, W] left-right with probability 1/2 (global torch RNG)."""
    flips = torch.rand(images.shape[0]) < 0.5
    if flips.any():
        images = images.clone()
        images[flips] = images[flips].flip(-1)
    return images


class UnpairedImages:
    """Two image domains without correspondence: batch {"a": [B,3,H,W], "b": [B,3,H,W]} in [-1, 1].

    An epoch runs over the larger domain; the smaller one is visited in a fresh random order
    each epoch, drawn from ``seed`` and the epoch number only.
    """

    def __init__(self, a: ImageFolder, b: ImageFolder, flip: bool = True, seed: int = 0):
        self.a, self.b, self.flip, self.seed = a, b, flip, seed
        self._orders: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return max(len(self.a), len(self.b))

    def _order(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        if epoch not in self._orders:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._orders = {
                epoch: (torch.randperm(len(self.a), generator=gen),
                        torch.randperm(len(self.b), generator=gen))
            }
        return self._orders[epoch]

    def batch(self, indices: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
        order_a, order_b = self._order(epoch)
        a = self.a.images[order_a[indices % len(self.a)]]
        b = self.b.images[order_b[indices % len(self.b)]]
        if self.flip:
            a, b = random_flip(a), random_flip(b)
        return {"a": uint8_to_float(a), "b": uint8_to_float(b)}

    def preview(self, count: int) -> dict[str, torch.Tensor]:
        return {"a": uint8_to_float(self.a.images[spread(len(self.a), count)]),
                "b": uint8_to_float(self.b.images[spread(len(self.b), count)])}
