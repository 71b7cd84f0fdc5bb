"""Confidence intervals by bootstrap: how much a figure would move with other samples.

Every interval here is the *normal* bootstrap interval, ``value ± 1.96 × SE``, where SE is the
standard deviation of the statistic over resamples (rows drawn with replacement). Percentile
intervals are not used: with the few resamples an expensive figure such as FID allows (20),
their 2.5% and 97.5% points are not estimable, and FID's bootstrap distribution is shifted
upwards (a resample has only ~63% distinct rows), so a percentile interval can miss the
figure it is meant to bracket. The SE is unaffected by that shift.

:class:`FrechetReference` makes FID resamples cheap: the reference statistics are computed
once, and each resample costs one covariance-sized product and one symmetric eigenvalue
decomposition.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch

from ganforge.errors import ConfigError
from ganforge.metrics.fid import kid_from_features

Z_95 = 1.959963984540054
"""Standard normal quantile of a two-sided 95% interval."""


def normal_interval(value: float, resampled: np.ndarray,
                    bounds: tuple[float, float] = (-np.inf, np.inf)) -> tuple[float, float]:
    """``value ± 1.96 × std(resampled)``, clipped to ``bounds`` (e.g. [0, 1] for a fraction)."""
    if len(resampled) < 2:
        raise ConfigError(f"a bootstrap interval needs at least 2 resamples, got "
                          f"{len(resampled)}")
    half = Z_95 * float(np.std(resampled, ddof=1))
    return max(bounds[0], value - half), min(bounds[1], value + half)


def resample_rows(count: int, resamples: int, seed: int) -> np.ndarray:
    """Row indices ``[resamples, count]`` drawn with replacement from ``seed``."""
    if resamples < 2:
        raise ConfigError(f"resamples = {resamples}; a bootstrap needs at least 2")
    return np.random.default_rng(seed).integers(0, count, size=(resamples, count))


def bootstrap_mean(values: np.ndarray | torch.Tensor, resamples: int = 1000,
                   seed: int = 0) -> np.ndarray:
    """Means of ``values [N]`` (per-sample figures or 0/1 hits) over ``resamples`` bootstrap
    resamples of its entries -> ``[resamples]``."""
    values = np.asarray(values, dtype=np.float64)
    rows = resample_rows(len(values), resamples, seed)
    return values[rows].mean(axis=1)


def bootstrap_statistic(rows: np.ndarray, statistic: Callable[[np.ndarray], float],
                        resamples: int, seed: int = 0) -> np.ndarray:
    """``statistic(rows[resample])`` for ``resamples`` resamples of the rows of ``rows [N, D]``
    -> ``[resamples]``."""
    return np.array([statistic(rows[index])
                     for index in resample_rows(len(rows), resamples, seed)])


class FrechetReference:
    """A reference feature set ``[M, D]`` whose statistics are reused for many FIDs.

    FID = ``|mu_g - mu_r|² + tr(S_g) + tr(S_r) - 2 tr((S_g S_r)^(1/2))``. The trace of the
    square root is the sum of the square roots of the eigenvalues of ``S_g S_r``, which are
    those of a symmetric positive semi-definite matrix: ``S_r^(1/2) S_g S_r^(1/2)`` ``[D, D]``,
    or, with ``S_g = A^T A / (N - 1)`` for the centred generated rows ``A [N, D]`` and fewer
    rows than dimensions, ``A S_r A^T / (N - 1)`` ``[N, N]`` (same non-zero eigenvalues, far
    cheaper). So the result is always real (round-off negative eigenvalues are clipped to 0),
    also where ``scipy.linalg.sqrtm`` of the product turns complex. Computed in float64.
    """

    def __init__(self, features: np.ndarray, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        reference = self._check(features, "the reference feature set")
        self.dim = reference.shape[1]
        self.mean = reference.mean(dim=0)
        centred = reference - self.mean
        self.covariance = centred.T @ centred / (len(reference) - 1)

    @functools.cached_property
    def sqrt_covariance(self) -> torch.Tensor:
        """``S_r^(1/2)`` ``[D, D]``, from its eigendecomposition (computed on first use)."""
        eigenvalues, eigenvectors = torch.linalg.eigh(self.covariance)
        return (eigenvectors * eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T

    def _check(self, features: np.ndarray, name: str) -> torch.Tensor:
        tensor = torch.as_tensor(np.asarray(features), dtype=torch.float64, device=self.device)
        if tensor.ndim != 2 or len(tensor) < 2:
            raise ConfigError(f"{name} has shape {tuple(tensor.shape)}; expected features "
                              "[N, D] with N >= 2")
        return tensor

    def fid(self, features: np.ndarray) -> float:
        """FID (>= 0) of ``features [N, D]`` against the reference."""
        generated = self._check(features, "the generated feature set")
        if generated.shape[1] != self.dim:
            raise ConfigError(f"feature sets have dimensions {generated.shape[1]} and "
                              f"{self.dim}; expected features from the same network")
        mean = generated.mean(dim=0)
        centred = generated - mean
        scale = 1 / (len(generated) - 1)
        if len(generated) <= self.dim:
            product = centred @ self.covariance @ centred.T * scale
        else:
            product = self.sqrt_covariance @ (centred.T @ centred * scale) @ self.sqrt_covariance
        root_trace = torch.linalg.eigvalsh((product + product.T) / 2).clamp(min=0).sqrt().sum()
        distance = ((mean - self.mean).square().sum() + centred.square().sum() * scale
                    + self.covariance.trace())
        return max(0.0, float(distance - 2 * root_trace))  # round-off can dip below 0


def bootstrap_kid(generated: np.ndarray, reference: np.ndarray, resamples: int,
                  subsets: int = 5, subset_size: int = 1000, seed: int = 0) -> np.ndarray:
    """KID of ``resamples`` bootstrap resamples of the generated rows ``[N, D]`` against the
    whole ``reference [M, D]`` -> ``[resamples]``; each KID averages ``subsets`` subsets (the
    point estimate uses 100) to keep the cost down."""
    return bootstrap_statistic(
        generated,
        lambda rows: kid_from_features(rows, reference, subsets, subset_size, seed)[0],
        resamples, seed)
