"""Precision and recall of generated images as k-NN manifolds (Kynkäänniemi et al. 2019).

Each feature set spans a manifold: the union of balls around its points, each ball's radius the
distance from the point to its k-th nearest neighbour in the same set. Precision is the fraction
of generated samples inside the real manifold (are the samples realistic?), recall the fraction
of real samples inside the generated manifold (is the variety of the data covered?).

Distances are computed with :func:`torch.cdist` a block of query rows at a time, so memory stays
bounded by :data:`MAX_BLOCK_ELEMENTS` distances whatever the set sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ganforge.errors import ConfigError

MAX_BLOCK_ELEMENTS = 2**25
"""Distances held at once (128 MiB of float32): the number of query rows per block is this
divided by the size of the set they are compared with."""


def _as_tensor(features: np.ndarray | torch.Tensor, name: str,
               device: torch.device | str) -> torch.Tensor:
    """Features ``[N, D]`` as float32 on ``device``; ConfigError for any other shape."""
    tensor = torch.as_tensor(features).to(device, torch.float32)
    if tensor.ndim != 2:
        raise ConfigError(f"{name} has shape {tuple(tensor.shape)}; expected features [N, D]")
    return tensor


def _blocks(queries: torch.Tensor, others: int) -> list[torch.Tensor]:
    """``queries [N, D]`` split into blocks of rows whose distances to ``others`` points fit in
    :data:`MAX_BLOCK_ELEMENTS`."""
    return list(queries.split(max(1, MAX_BLOCK_ELEMENTS // max(others, 1))))


def knn_distances(features: np.ndarray | torch.Tensor, k: int,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Distances ``[N, k]`` (ascending) from each row of ``features [N, D]`` to its ``k``
    nearest other rows; column ``k - 1`` is the k-NN radius. Duplicated rows count as distinct
    neighbours at distance 0."""
    points = _as_tensor(features, "features", device)
    if not 1 <= k < len(points):
        raise ConfigError(f"k = {k} nearest neighbours need more than {k} samples and k >= 1; "
                          f"the set has {len(points)}")
    found = []
    for block in _blocks(points, len(points)):
        # The k + 1 smallest distances include the row itself (distance 0).
        found.append(torch.cdist(block, points).topk(k + 1, dim=1, largest=False).values[:, 1:])
    return torch.cat(found).cpu()


@dataclass(frozen=True)
class ManifoldComparison:
    """Precision and recall of a generated set against a real one, per sample and overall.

    ``generated_in_real``: bool ``[N]``, generated sample j lies inside the real manifold;
    ``real_in_generated``: bool ``[M]``, real sample i lies inside the generated manifold;
    ``real_knn``: ``[M, k]`` distances of each real sample to its k nearest real neighbours;
    ``nearest_distances`` / ``nearest_indices``: ``[N, neighbours]`` the nearest real samples of
    each generated one (ascending distance; empty when ``neighbours`` was 0). All on the CPU.
    """

    k: int
    generated_in_real: torch.Tensor
    real_in_generated: torch.Tensor
    real_knn: torch.Tensor
    nearest_distances: torch.Tensor
    nearest_indices: torch.Tensor

    @property
    def precision(self) -> float:
        """Fraction of generated samples inside the real manifold."""
        return float(self.generated_in_real.float().mean())

    @property
    def recall(self) -> float:
        """Fraction of real samples inside the generated manifold."""
        return float(self.real_in_generated.float().mean())


@torch.no_grad()
def compare_manifolds(real: np.ndarray | torch.Tensor, generated: np.ndarray | torch.Tensor,
                      k: int = 3, neighbours: int = 0,
                      device: torch.device | str = "cpu") -> ManifoldComparison:
    """Precision/recall membership of ``generated [N, D]`` against ``real [M, D]`` features,
    and the ``neighbours`` nearest real samples of every generated one, in one pass over the
    ``[N, M]`` cross distances (plus one pass over each set for its k-NN radii).

    A point is inside a manifold when its distance to some point of the other set is at most
    that point's k-NN radius (ties count as inside).
    """
    real_t = _as_tensor(real, "the real feature set", device)
    fake_t = _as_tensor(generated, "the generated feature set", device)
    if real_t.shape[1] != fake_t.shape[1]:
        raise ConfigError(f"feature sets have dimensions {real_t.shape[1]} and "
                          f"{fake_t.shape[1]}; expected features from the same network")
    if not 0 <= neighbours <= len(real_t):
        raise ConfigError(f"neighbours = {neighbours}; expected 0..{len(real_t)} (the number "
                          "of real samples)")
    real_knn = knn_distances(real_t, k, device)
    real_radii = real_knn[:, k - 1].to(device)
    fake_radii = knn_distances(fake_t, k, device)[:, k - 1].to(device)

    generated_in_real, distances, indices = [], [], []
    real_in_generated = torch.zeros(len(real_t), dtype=torch.bool, device=device)
    for block, block_radii in zip(_blocks(fake_t, len(real_t)),
                                  _blocks(fake_radii.unsqueeze(1), len(real_t)), strict=True):
        cross = torch.cdist(block, real_t)  # [B, M]
        generated_in_real.append((cross <= real_radii).any(dim=1).cpu())
        real_in_generated |= (cross <= block_radii).any(dim=0)
        nearest = cross.topk(neighbours, dim=1, largest=False)
        distances.append(nearest.values.cpu())
        indices.append(nearest.indices.cpu())
    return ManifoldComparison(k, torch.cat(generated_in_real), real_in_generated.cpu(), real_knn,
                              torch.cat(distances), torch.cat(indices))


def precision_recall(real: np.ndarray | torch.Tensor, generated: np.ndarray | torch.Tensor,
                     k: int = 3, device: torch.device | str = "cpu") -> tuple[float, float]:
    """(precision, recall) of ``generated [N, D]`` against ``real [M, D]`` features with k-NN
    manifolds of ``k`` neighbours (3 in the paper)."""
    comparison = compare_manifolds(real, generated, k, device=device)
    return comparison.precision, comparison.recall
