"""Metrics: FID/KID on Inception features and paired image metrics (L1, PSNR, SSIM)."""

from ganforge.metrics.fid import (
    INCEPTION_INPUT_RANGE,
    INCEPTION_SIZE,
    InceptionFeatures,
    default_weights_path,
    fid_from_features,
    frechet_distance,
    kid_from_features,
    resize_bilinear_tf,
)
from ganforge.metrics.image import PSNR_CAP_DB, l1, psnr, ssim

__all__ = [
    "INCEPTION_INPUT_RANGE",
    "INCEPTION_SIZE",
    "PSNR_CAP_DB",
    "InceptionFeatures",
    "default_weights_path",
    "fid_from_features",
    "frechet_distance",
    "kid_from_features",
    "l1",
    "psnr",
    "resize_bilinear_tf",
    "ssim",
]
