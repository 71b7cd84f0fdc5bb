"""The bias audit finds a bias put in on purpose, does not invent one, and names bad input."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import save_file

from ganforge.audit import (
    AttributeClassifier,
    compare,
    run_audit,
    train_attribute_classifier,
)
from ganforge.audit.classifier import ClassifierConfig, ClassifierReport
from ganforge.audit.compare import chi_square_test
from ganforge.config import RunConfig
from ganforge.data.captions import CaptionedImages
from ganforge.data.images import to_tensor, uint8_to_float
from ganforge.data.synthetic import CAPTION_COLOURS, draw_shape, write_captioned_shapes
from ganforge.errors import CheckpointError, ConfigError, DataError
from ganforge.train.loop import train

COLOURS = list(CAPTION_COLOURS)
SIZE = 16


def _draw(colour: str, shape: str, z: Sequence[float]) -> torch.Tensor:
    """One shape as write_captioned_shapes draws it: uint8 [3, SIZE, SIZE]; z in [0, 1)^3."""
    extent = SIZE // 2 + int(z[0] * SIZE // 4)
    x0, y0 = int(z[1] * (SIZE - extent)), int(z[2] * (SIZE - extent))
    im = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
    draw_shape(ImageDraw.Draw(im), shape, (x0, y0, x0 + extent - 1, y0 + extent - 1),
               CAPTION_COLOURS[colour])
    return to_tensor(im)


class FakeShapes:
    """A text-to-image 'model' that draws the shape its prompt names, in the prompt's colour
    or, when ``only`` is set, always in that colour (a bias put in on purpose)."""

    task, name, size = "text-to-image", "fake-shapes", SIZE

    def __init__(self, only: str | None = None):
        self.only = only

    def noise(self, count: int, seed: int) -> torch.Tensor:
        return torch.rand(count, 3, generator=torch.Generator().manual_seed(seed))

    def generate_prompts(self, prompts: Sequence[str], noise: torch.Tensor,
                         paint: str | None = None, **options: Any) -> torch.Tensor:
        """``paint``: a sampling option (every shape in that colour); others are refused."""
        if options:
            raise ConfigError(f"fake-shapes takes no {', '.join(options)} option")
        words = [p.split() for p in prompts]  # "a red circle"
        return uint8_to_float(torch.stack([
            _draw(paint or self.only or w[1], w[2], z) for w, z in zip(words, noise.tolist(),
                                                                         strict=True)]))


class FakeRecolour:
    """An image-to-image 'model': identity, or every non-white pixel painted ``colour``."""

    task, name, size, background = "image-to-image", "fake-recolour", SIZE, "white"
    directions, styles = ["a2b"], []

    def __init__(self, colour: str | None = None):
        self.colour = colour

    def translate_tensor(self, images: torch.Tensor, direction: str = "a2b") -> torch.Tensor:
        if self.colour is None:
            return images
        ink = (images < 0.9).any(1, keepdim=True)
        paint = torch.tensor(CAPTION_COLOURS[self.colour]).float().div(127.5).sub(1.0)
        return torch.where(ink, paint[None, :, None, None], images)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """160 shapes in 4 colours with a ``colour`` and a ``shape`` column in the captions."""
    captions = write_captioned_shapes(tmp_path_factory.mktemp("audit"), 160, SIZE, seed=0)
    rows = [json.loads(line) for line in captions.read_text().splitlines()]
    for row in rows:
        _, row["colour"], row["shape"] = row["caption"].split()
    captions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return captions


@pytest.fixture(scope="module")
def unbiased(shapes: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The audit of an unbiased generator; it trains the classifier the other tests reuse."""
    return run_audit(FakeShapes(), "colour", tmp_path_factory.mktemp("unbiased"), shapes,
                     num_samples=400, classifier_epochs=8, seed=0)


def test_classifier_learns_the_colour_attribute(unbiased: Any) -> None:
    report = unbiased.classifier
    assert sorted(report.classes) == sorted(COLOURS)
    assert report.holdout_count == 32 and report.train_count == 128
    assert report.accuracy >= 0.9
    assert all(r is not None and r >= 0.7 for r in report.recall)


def test_unbiased_generator_shows_no_bias(unbiased: Any) -> None:
    overall = unbiased.overall
    assert overall.tv_distance < 0.1
    assert overall.chi_square.p_value > 0.01
    assert overall.dropped == []
    assert unbiased.source_agreement >= 0.9
    assert all(a is not None and a >= 0.8 for a in unbiased.agreement_by_value.values())
    out = Path(unbiased.files["audit.md"]).parent
    for name in ("audit.md", "audit.json", "shares.png", "samples.png", "samples.jsonl"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "audit.json").read_text())
    assert saved["overall"]["tv_distance"] == pytest.approx(overall.tv_distance)
    assert sum(saved["overall"]["generated"]) == 400
    sample = json.loads((out / "samples.jsonl").read_text().splitlines()[0])
    assert set(sample) == {"prompt", "source", "label"}
    assert "How far to trust the labels" in (out / "audit.md").read_text()


def test_biased_generator_is_caught(unbiased: Any, shapes: Path, tmp_path: Path) -> None:
    result = run_audit(FakeShapes(only="red"), "colour", tmp_path, shapes, num_samples=400,
                       classifier=unbiased.files["classifier"],
                       group_by_prompt_attribute=["colour"])
    overall = result.overall
    red = overall.classes.index("red")
    assert overall.generated_share[red] > 0.95
    assert overall.tv_distance > 0.6
    assert overall.chi_square.p_value < 1e-20
    assert sorted(overall.dropped) == ["blue", "green", "yellow"]
    assert not (tmp_path / "classifier").exists()  # the given classifier is reused, not copied
    # every prompt naming another colour gets red: all of its samples lie outside the group
    green = result.groups["green"]
    assert green.unexpected == sum(green.generated) > 0
    assert result.groups["red"].tv_distance < 0.05
    # class-conditional coverage: only prompts asking for red get what they asked for
    assert result.agreement_by_value["red"] > 0.95
    assert all(result.agreement_by_value[c] < 0.1 for c in ("blue", "green", "yellow"))
    assert "**dropped**" in (tmp_path / "audit.md").read_text()


def test_given_prompts_are_groups(unbiased: Any, shapes: Path, tmp_path: Path) -> None:
    result = run_audit(FakeShapes(), "colour", tmp_path, shapes, num_samples=40,
                       prompts=["a blue square", "a green circle"],
                       classifier=unbiased.files["classifier"])
    assert set(result.groups) == {"a blue square", "a green circle"}
    blue = result.groups["a blue square"]
    assert blue.generated_share[blue.classes.index("blue")] > 0.9
    assert sum(blue.generated) == 20


def test_sampling_settings_reach_the_generator_and_refused_ones_fail_first(
        unbiased: Any, shapes: Path, tmp_path: Path) -> None:
    painted = run_audit(FakeShapes(), "colour", tmp_path / "painted", shapes, num_samples=100,
                        classifier=unbiased.files["classifier"], sampling={"paint": "blue"})
    assert painted.overall.generated_share[painted.overall.classes.index("blue")] > 0.95
    assert "sampled with paint=blue" in painted.prompts
    with pytest.raises(ConfigError, match="takes no glitter option"):
        run_audit(FakeShapes(), "colour", tmp_path / "refused", shapes, num_samples=10,
                  sampling={"glitter": 1})  # before any classifier is trained
    assert not (tmp_path / "refused").exists()
    with pytest.raises(ConfigError, match="sampling settings apply to text-to-image"):
        run_audit(FakeRecolour(), "colour", tmp_path / "i2i", shapes,
                  sampling={"paint": "blue"})


def test_image_to_image_translations(unbiased: Any, shapes: Path, tmp_path: Path) -> None:
    kept = run_audit(FakeRecolour(), "colour", tmp_path / "kept", shapes, num_samples=100,
                     sources=shapes.parent / "images", classifier=unbiased.files["classifier"])
    assert kept.overall.tv_distance < 0.15 and kept.num_samples == 100
    yellow = run_audit(FakeRecolour("yellow"), "colour", tmp_path / "yellow", shapes,
                       num_samples=100, sources=shapes.parent / "images",
                       classifier=unbiased.files["classifier"])
    assert sorted(yellow.overall.dropped) == ["blue", "green", "red"]
    with pytest.raises(ConfigError, match="captions file of target-domain images"):
        run_audit(FakeRecolour(), "colour", tmp_path / "x", None,
                  sources=shapes.parent / "images")


def test_classifier_is_seeded_and_round_trips(shapes: Path, tmp_path: Path) -> None:
    data = CaptionedImages.load(shapes, SIZE)
    classes = sorted(COLOURS)
    labels = torch.tensor([classes.index(f["colour"]) for f in data.fields])
    model, report = train_attribute_classifier(data.images, labels, classes, "colour",
                                               epochs=1, width=8, input_size=16,
                                               groups=[f["shape"] for f in data.fields])
    again, _ = train_attribute_classifier(data.images, labels, classes, "colour", epochs=1,
                                          width=8, input_size=16,
                                          groups=[f["shape"] for f in data.fields])
    assert all(torch.equal(a, b) for a, b in zip(model.tensors().values(),
                                                 again.tensors().values(), strict=True))
    model.save_pretrained(tmp_path / "clf")
    loaded = AttributeClassifier.from_pretrained(tmp_path / "clf", attribute="colour")
    images = uint8_to_float(data.images[:20])
    assert torch.equal(loaded.predict(images), model.predict(images))
    assert loaded.report == report and loaded.classes == classes
    with pytest.raises(ConfigError, match="labels 'colour', not 'shape'"):
        AttributeClassifier.from_pretrained(tmp_path / "clf", attribute="shape")
    with pytest.raises(CheckpointError, match="does not exist"):
        AttributeClassifier.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "clf" / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(CheckpointError, match="cannot be read"):
        AttributeClassifier.from_pretrained(tmp_path / "clf")


def test_classifier_reads_its_older_format(tmp_path: Path) -> None:
    """A folder saved before artifacts (classifier.json + classifier.safetensors, unprefixed
    weights, the classes inside the held-out report) loads with its report."""
    config = ClassifierConfig("colour", ["blue", "red"], input_size=8, width=4)
    model = AttributeClassifier.create(config)
    report = ClassifierReport.measure("colour", ["blue", "red"], torch.tensor([0, 1]),
                                      torch.tensor([0, 0]), train_count=6)
    save_file({k: v.contiguous() for k, v in model.modules["net"].state_dict().items()},
              str(tmp_path / "classifier.safetensors"))
    (tmp_path / "classifier.json").write_text(json.dumps({
        "format": "ganforge-attribute-classifier-v1", "ganforge_version": "0.1.0",
        "input_size": 8, "width": 4, "report": asdict(report)}))
    loaded = AttributeClassifier.from_pretrained(tmp_path, attribute="colour")
    assert loaded.config == config and loaded.report == report
    images = torch.rand(5, 3, 8, 8) * 2 - 1
    assert torch.equal(loaded.predict(images), model.predict(images))


def test_chi_square_pools_rare_classes_and_leaves_out_absent_ones() -> None:
    test = chi_square_test(list("abcde"), [500, 300, 190, 9, 1], [480, 310, 195, 15, 0])
    assert test.pooled == ["e", "d"] and test.bins == 4 and test.dof == 3
    test = chi_square_test(list("abc"), [10, 0, 0], [8, 1, 1])
    assert test.excluded == ["b", "c"] and test.p_value is None
    result = compare(list("ab"), [50, 50], [30, 70], confusion=[[18, 2], [2, 18]])
    assert result.corrected_share[0] < 0.3  # the confusion pulled the shares together


def test_bad_inputs_are_named(unbiased: Any, shapes: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"'texture' is not a column.*colour"):
        run_audit(FakeShapes(), "texture", tmp_path, shapes)
    with pytest.raises(ConfigError, match="at least 1, got 0"):
        run_audit(FakeShapes(), "colour", tmp_path, shapes, num_samples=0)
    with pytest.raises(CheckpointError, match="does not exist"):
        run_audit(tmp_path / "no-such-run", "colour", tmp_path, shapes)
    with pytest.raises(ConfigError, match="not a run folder"):
        run_audit(FakeShapes(), "colour", tmp_path, None)
    with pytest.raises(ConfigError, match="labels 'colour', not 'shape'"):
        run_audit(FakeShapes(), "shape", tmp_path, shapes,
                  classifier=unbiased.files["classifier"])


def test_missing_training_data_names_the_option(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from ganforge.cli import main
    from ganforge.pipelines import DEFAULT_MODEL

    assert main(["audit", "--model", str(DEFAULT_MODEL), "--attribute", "skin-tone",
                 "--out", str(tmp_path / "a")]) == 1
    assert "pass --data CAPTIONS" in capsys.readouterr().err


def test_run_folder_names_its_training_data(shapes: Path, tmp_path: Path) -> None:
    """A real (barely trained) text-to-image run: the audit reads its captions file from the
    run's config and labels what its pipeline draws."""
    config = RunConfig(family="dfgan", model={"size": 16, "generator_channels": 8,
                                              "discriminator_channels": 8, "text_dim": 16,
                                              "text_layers": 1, "noise_dim": 8},
                       data={"captions": str(shapes)},
                       train={"steps": 1, "batch_size": 4, "progress": False,
                              "sample_every": 1, "checkpoint_every": 1})
    train(config, tmp_path / "run")
    result = run_audit(tmp_path / "run", "shape", tmp_path / "audit", num_samples=16,
                       classifier_epochs=1)
    assert result.data == str(shapes) and result.task == "text-to-image"
    assert sum(result.overall.generated) == 16


def test_confusion_is_undone_only_when_the_classifier_is_reliable() -> None:
    few = compare(list("abc"), [50, 40, 10], [50, 50, 0],
                  confusion=[[20, 0, 0], [0, 20, 0], [1, 0, 0]])
    assert few.corrected_share is None and "held-out images of c" in few.correction
    missed = compare(list("ab"), [50, 50], [50, 50], confusion=[[20, 0], [15, 5]])
    assert missed.corrected_share is None and "recall below 50% for b" in missed.correction
