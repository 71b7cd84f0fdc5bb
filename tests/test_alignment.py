"""ganforge.metrics.alignment: the emoji image-text scorer (not CLIP) and R-precision.

Trains a tiny scorer for a few seconds on synthetic captioned shapes ("a red circle"...: 12
distinct captions). Tests that need the frozen MiniLM text encoder skip when the optional extra
ganforge[minilm] is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ganforge.core.artifact import WEIGHTS_NAME
from ganforge.data.captions import CaptionedImages
from ganforge.data.images import uint8_to_float
from ganforge.data.synthetic import write_captioned_shapes
from ganforge.errors import CheckpointError, ConfigError, MissingDependency
from ganforge.metrics.alignment import (
    DEFAULT_SCORER,
    SCORER_FORMAT,
    ImageTextScorer,
    ScorerConfig,
    contrastive_loss,
    r_precision,
    train_scorer,
)
from ganforge.text import TextEncoder, build_text_encoder

needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is None,
    reason="sentence-transformers is not installed (pip install 'ganforge[minilm]')")


@pytest.fixture(scope="module")
def minilm() -> TextEncoder:
    """One frozen MiniLM encoder shared by every scorer of this module."""
    try:
        return build_text_encoder({"kind": "minilm"})
    except MissingDependency as exc:  # sentence-transformers present, the weights package not
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> CaptionedImages:
    """96 images of 16 px, captions such as "a red circle" (4 colours x 3 shapes)."""
    captions = write_captioned_shapes(tmp_path_factory.mktemp("shapes"), count=96, size=16,
                                      seed=0)
    data = CaptionedImages.load(captions, 16)
    assert len({caps[0] for caps in data.captions}) == 12
    return data


def tiny_scorer(minilm: TextEncoder, seed: int = 0) -> ImageTextScorer:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        scorer = ImageTextScorer.create(ScorerConfig(size=16, widths=[16, 32]))
    return scorer.share_text_encoder(minilm)


@pytest.fixture(scope="module")
def trained(minilm: TextEncoder, shapes: CaptionedImages) -> ImageTextScorer:
    return train_scorer(shapes, steps=80, batch_size=32, lr=3e-3, seed=0, progress=False,
                        scorer=tiny_scorer(minilm))


def prompts_of(data: CaptionedImages) -> list[str]:
    return [caps[0] for caps in data.captions]


@needs_minilm
def test_training_lifts_r_precision_far_above_chance(
        minilm: TextEncoder, shapes: CaptionedImages, trained: ImageTextScorer) -> None:
    images = uint8_to_float(shapes.images)
    untrained = r_precision(tiny_scorer(minilm), images, prompts_of(shapes), r=4)
    report = r_precision(trained, images, prompts_of(shapes), r=4)
    assert (report.r, report.count) == (4, 96)
    assert untrained.mean < 0.45  # chance is 0.25
    assert report.mean > 0.8 and report.ci[0] > 0.6
    assert report.ci[0] <= report.mean <= report.ci[1]
    assert trained.metadata["training"]["distinct_captions"] == 12
    assert not trained.modules.training


@needs_minilm
def test_save_load_round_trip(tmp_path: Path, minilm: TextEncoder, shapes: CaptionedImages,
                              trained: ImageTextScorer) -> None:
    images, prompts = uint8_to_float(shapes.images[:8]), prompts_of(shapes)[:8]
    trained.metadata["validation"] = {"note": "test"}
    folder = trained.save_pretrained(tmp_path / "scorer")
    loaded = ImageTextScorer.from_pretrained(folder, text_encoder=minilm)
    assert torch.equal(loaded.similarity(images, prompts), trained.similarity(images, prompts))
    assert loaded.config == trained.config and loaded.metadata == trained.metadata
    config = json.loads((folder / "config.json").read_text())
    assert config["kind"] == "alignment-scorer" and config["config"]["text_encoder"] == "minilm"
    trained.save_pretrained(folder)  # replacing a folder works and leaves no temporary folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scorer"]


def test_load_refuses_missing_and_foreign_folders(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        ImageTextScorer.from_pretrained(tmp_path / "nothing")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text(json.dumps({"format": "ganforge-pipeline-v1"}))
    (foreign / WEIGHTS_NAME).write_bytes(b"")
    with pytest.raises(CheckpointError,
                       match=r"not a ganforge alignment-scorer.*ganforge-pipeline-v1"):
        ImageTextScorer.from_pretrained(foreign)
    (foreign / "config.json").write_text(json.dumps({"format": SCORER_FORMAT}))
    with pytest.raises(CheckpointError, match="no usable 'model' settings"):
        ImageTextScorer.from_pretrained(foreign)


def test_reads_the_format_saved_before_artifacts(tmp_path: Path) -> None:
    """A ganforge-alignment-scorer-v1 folder (unprefixed weights, the text encoder as
    {"kind": ...}, notes as "info") loads with the same weights and its notes as metadata."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        scorer = ImageTextScorer.create(ScorerConfig(size=16, widths=[8]))
    state = scorer.modules["image_encoder"].state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / WEIGHTS_NAME))
    (tmp_path / "config.json").write_text(json.dumps({
        "format": SCORER_FORMAT, "ganforge_version": "0.1.0",
        "model": {"size": 16, "widths": [8], "embed_dim": 384,
                  "text_encoder": {"kind": "minilm"}},
        "info": {"training": {"steps": 3}}}))
    loaded = ImageTextScorer.from_pretrained(tmp_path)
    assert loaded.config == scorer.config and loaded.metadata == {"training": {"steps": 3}}
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    scorer.modules.eval()
    assert torch.equal(loaded.embed_images(images), scorer.embed_images(images))


@needs_minilm
def test_r_precision_is_deterministic_for_a_seed(shapes: CaptionedImages,
                                                  trained: ImageTextScorer) -> None:
    images, prompts = uint8_to_float(shapes.images), prompts_of(shapes)
    first = r_precision(trained, images, prompts, r=6, seed=3)
    assert r_precision(trained, images, prompts, r=6, seed=3) == first
    # r = every distinct prompt: no random draw left, so the seed no longer matters (top-1).
    assert (r_precision(trained, images, prompts, r=12, seed=0).mean
            == r_precision(trained, images, prompts, r=12, seed=1).mean)


@needs_minilm
def test_distractors_never_repeat_the_true_prompt_in_another_case(
        trained: ImageTextScorer, shapes: CaptionedImages) -> None:
    images = uint8_to_float(shapes.images[:4])
    pool = ["A RED CIRCLE", "a red circle", "a blue square", "a green triangle"]
    prompts = ["a red circle"] * 4
    with pytest.raises(ConfigError, match=r"r=4 needs 3 distractors.*only 3 distinct prompts"
                                          r" \(2 besides"):
        r_precision(trained, images, prompts, candidate_pool=pool, r=4)
    assert r_precision(trained, images, prompts, candidate_pool=pool, r=3).count == 4


@needs_minilm
def test_bad_inputs_give_clear_errors(trained: ImageTextScorer,
                                      shapes: CaptionedImages) -> None:
    images, prompts = uint8_to_float(shapes.images), prompts_of(shapes)
    with pytest.raises(ConfigError, match=r"r=100 needs 99 distractors.*only 12 distinct"):
        r_precision(trained, images, prompts)
    with pytest.raises(ConfigError, match="96 prompts"):
        r_precision(trained, images[:5], prompts, r=4)
    with pytest.raises(ConfigError, match="r >= 2"):
        r_precision(trained, images, prompts, r=1)
    with pytest.raises(ConfigError, match="3 images but 2 prompts"):
        trained.similarity(images[:3], prompts[:2])
    with pytest.raises(ConfigError, match=r"expected RGB images \[B, 3, H, W\]"):
        trained.embed_images(images[:, :1])
    with pytest.raises(ConfigError, match="steps >= 1"):
        train_scorer(shapes, steps=0, progress=False, scorer=trained)


def test_contrastive_loss_treats_identical_captions_alike() -> None:
    generator = torch.Generator().manual_seed(0)
    bank = torch.nn.functional.normalize(torch.randn(3, 8, generator=generator), dim=1)
    images = torch.nn.functional.normalize(torch.randn(4, 8, generator=generator), dim=1)
    ids, scale = torch.tensor([0, 2, 0, 1]), torch.tensor(10.0)
    loss = contrastive_loss(images, bank, ids, scale)
    swapped = contrastive_loss(images[[2, 1, 0, 3]], bank, ids, scale)  # images 0 and 2 share
    assert torch.allclose(loss, swapped)
    assert contrastive_loss(bank[ids], bank, ids, torch.tensor(100.0)) < loss


def test_names_the_extra_when_sentence_transformers_is_missing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import fails
    scorer = ImageTextScorer.create(ScorerConfig(size=16, widths=[8]))
    assert scorer.embed_images(torch.zeros(2, 3, 32, 32)).shape == (2, 384)  # resized to 16
    with pytest.raises(MissingDependency, match=r"pip install 'ganforge\[minilm\]'"):
        scorer.embed_texts(["a red circle"])


@needs_minilm
@pytest.mark.skipif(not (DEFAULT_SCORER / WEIGHTS_NAME).is_file(),
                    reason="the shipped scorer ganforge/assets/alignment-emoji-64 is absent")
def test_shipped_scorer_loads(minilm: TextEncoder) -> None:
    scorer = ImageTextScorer.from_pretrained(text_encoder=minilm)
    assert (DEFAULT_SCORER / WEIGHTS_NAME).stat().st_size <= 5_000_000
    assert "not CLIP" in (DEFAULT_SCORER / "README.md").read_text()
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    embedded = scorer.embed_images(images)
    assert embedded.shape == (2, 384)
    assert torch.allclose(embedded.norm(dim=1), torch.ones(2), atol=1e-5)
    assert scorer.embed_texts(["grinning face", "red heart"]).shape == (2, 384)
    assert scorer.similarity(torch.rand(1, 3, 32, 32) * 2 - 1, "cat face").shape == (1,)
    assert set(scorer.metadata) >= {"training", "validation"}
