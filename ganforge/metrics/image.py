"""Paired image metrics: how far a predicted image is from its target (L1, PSNR, SSIM).

Every function takes ``pred`` and ``target`` as ``[B, C, H, W]`` float tensors with values in
``[0, data_range]`` (``[0, 1]`` by default; ganforge images are RGB, C = 3) and returns one value
per image, ``Tensor[B]``, so callers can average over a dataset or look at single images.
"""

import torch
import torch.nn.functional as F

from ganforge.errors import ConfigError

PSNR_CAP_DB = 100.0
"""PSNR of identical images (infinite in theory); a finite cap keeps dataset averages finite."""

SSIM_WINDOW_SIZE = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ConfigError(
            f"pred has shape {tuple(pred.shape)} but target has shape {tuple(target.shape)}; "
            "expected two [B, C, H, W] tensors of the same shape"
        )
    if pred.ndim != 4:
        raise ConfigError(f"images have shape {tuple(pred.shape)}; expected a batch [B, C, H, W]")


def l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error of each image: ``pred, target: [B, C, H, W]`` -> ``[B]``."""
    _check_pair(pred, target)
    return (pred - target).abs().flatten(1).mean(dim=1)


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of each image: ``[B, C, H, W]`` -> ``[B]``.

    ``10 * log10(data_range**2 / MSE)``, capped at :data:`PSNR_CAP_DB` (100 dB) so that
    identical images give a finite value instead of +inf.
    """
    _check_pair(pred, target)
    mse = (pred - target).pow(2).flatten(1).mean(dim=1)
    return (10 * torch.log10(data_range**2 / mse)).clamp(max=PSNR_CAP_DB)


def _gaussian_window(channels: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The 11x11 Gaussian window (sigma 1.5, sums to 1) as a depthwise kernel ``[C, 1, 11, 11]``."""
    radius = SSIM_WINDOW_SIZE // 2
    offsets = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    g = torch.exp(-0.5 * (offsets / SSIM_SIGMA) ** 2)
    g = g / g.sum()
    return torch.outer(g, g).expand(channels, 1, -1, -1)


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) of each image: ``[B, C, H, W]`` -> ``[B]``.

    Local statistics use an 11x11 Gaussian window (sigma 1.5) with K1 = 0.01, K2 = 0.03 and
    population (not sample) covariances; the SSIM map is averaged over the 'valid' window
    positions and over channels. This equals scikit-image's ``structural_similarity(...,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=data_range)``.
    Statistics are computed in float64; the result has the dtype of ``pred``.
    """
    _check_pair(pred, target)
    height, width = pred.shape[-2:]
    if min(height, width) < SSIM_WINDOW_SIZE:
        raise ConfigError(
            f"images of size {height}x{width} are too small for SSIM; expected both sides to be "
            f"at least {SSIM_WINDOW_SIZE} pixels"
        )
    x = pred.double()
    y = target.double()
    channels = x.shape[1]
    window = _gaussian_window(channels, x.dtype, x.device)

    def local_mean(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, groups=channels)

    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x**2
    var_y = local_mean(y * y) - mu_y**2
    cov_xy = local_mean(x * y) - mu_x * mu_y
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return ssim_map.flatten(1).mean(dim=1).to(pred.dtype)
