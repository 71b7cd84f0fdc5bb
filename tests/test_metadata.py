"""PNG metadata: what an output records about how it was made — and nothing about where the
user keeps their files (no local path, no input file name unless asked for)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path, PurePosixPath, PureWindowsPath

import pytest
from PIL import Image

from ganforge.cli import main
from ganforge.provenance.metadata import ASSETS, carried_fields, model_label, read_png_metadata
from ganforge.provenance.verify import verify_image

SHIPPED_UPSCALER = "ganforge default (upscale-x4-fluent3d)"


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private folder holding a text-to-image run (RUN/model), a translator and a photo."""
    from tests.test_serve import save_tiny_models

    place = tmp_path_factory.mktemp("private-place")
    t2i, cyc = save_tiny_models(tmp_path_factory.mktemp("models"))
    (place / "t2i-run").mkdir()
    shutil.move(t2i, place / "t2i-run" / "model")
    shutil.move(cyc, place / "cyc")
    Image.new("RGB", (16, 16), (30, 90, 200)).save(place / "holiday-photo.png")
    return place


def _text_chunks(folder: Path) -> dict[str, dict[str, str]]:
    """Every PNG under ``folder`` -> all its text chunks (ganforge's and any other)."""
    chunks = {}
    for path in sorted(folder.rglob("*.png")):
        with Image.open(path) as im:
            chunks[str(path.relative_to(folder))] = dict(im.text)
    assert chunks, f"no PNG written under {folder}"
    return chunks


def _assert_no_local_path(folder: Path, place: Path) -> None:
    for name, chunks in _text_chunks(folder).items():
        for key, value in chunks.items():
            where = f"{name}: {key}={value!r}"
            assert str(place) not in value and place.name not in value, where
            assert str(Path.home()) not in value and "holiday-photo" not in value, where
            assert not PurePosixPath(value).is_absolute(), where
            assert not PureWindowsPath(value).is_absolute(), where


def test_outputs_record_the_models_name_never_a_local_path(place: Path,
                                                           tmp_path: Path) -> None:
    run, cyc, photo, out = place / "t2i-run", place / "cyc", place / "holiday-photo.png", tmp_path
    assert main(["generate", "a red circle", "-n", "2", "--seed", "7", "--model", str(run),
                 "--out", str(out / "gen"), "--upscale"]) == 0
    assert main(["generate", "a red circle", "--interpolate-to", "a blue square", "--steps",
                 "3", "--model", str(run / "model"), "--out", str(out / "walk")]) == 0
    assert main(["translate", str(photo), "--model", str(cyc), "--out", str(out / "tr"),
                 "--upscale"]) == 0
    assert main(["translate", str(photo), "--out", str(out / "restyled")]) == 0
    assert main(["upscale", str(photo), "--out", str(out / "up")]) == 0
    _assert_no_local_path(out, place)
    generated = read_png_metadata(out / "gen" / "a-red-circle_s7_000.png")
    assert generated["model"] == "t2i-run" and len(generated["model_id"]) == 4
    assert read_png_metadata(out / "walk" / "grid.png")["model"] == "t2i-run"
    translated = read_png_metadata(out / "tr" / "holiday-photo.png")
    assert translated["model"] == "cyc" and "source" not in translated
    assert json.loads(translated["steps"])[0]["model"] == SHIPPED_UPSCALER
    restyled = read_png_metadata(out / "restyled" / "holiday-photo.png")
    assert restyled["model"] == "ganforge default (restyle-3d-64)"
    upscaled = read_png_metadata(out / "up" / "holiday-photo.png")
    assert upscaled["model"] == SHIPPED_UPSCALER and upscaled["scale"] == "4"
    assert "source" not in upscaled


def test_metadata_source_records_the_base_name_only(place: Path, tmp_path: Path) -> None:
    photo = place / "holiday-photo.png"
    assert main(["translate", str(photo), "--model", str(place / "cyc"), "--out",
                 str(tmp_path / "tr"), "--metadata-source"]) == 0
    assert main(["upscale", str(photo), "--out", str(tmp_path / "up"),
                 "--metadata-source"]) == 0
    for folder in ("tr", "up"):
        meta = read_png_metadata(tmp_path / folder / "holiday-photo.png")
        assert meta["source"] == "holiday-photo.png", meta
        assert str(place) not in json.dumps(meta)


def test_upscale_carries_the_images_provenance_and_adds_its_step(place: Path,
                                                                 tmp_path: Path) -> None:
    assert main(["generate", "a red circle", "-n", "1", "--seed", "7", "--model",
                 str(place / "t2i-run"), "--out", str(tmp_path / "gen")]) == 0
    made = tmp_path / "gen" / "a-red-circle_s7_000.png"
    assert main(["upscale", str(made), "--out", str(tmp_path / "x4")]) == 0
    assert main(["upscale", str(tmp_path / "x4" / made.name), "--out",
                 str(tmp_path / "x16")]) == 0
    original = read_png_metadata(made)
    once = read_png_metadata(tmp_path / "x4" / made.name)
    for key in ("prompt", "seed", "index", "model", "model_id"):
        assert once[key] == original[key], key  # the chain still names the generator
    assert once["watermark"] != original["watermark"]  # the output's own mark: the upscaler's
    (step,) = json.loads(once["steps"])
    assert step == {"step": "upscale", "model": SHIPPED_UPSCALER, "model_id": step["model_id"],
                    "scale": 4, "from": "16x16"}
    twice = read_png_metadata(tmp_path / "x16" / made.name)
    assert [s["from"] for s in json.loads(twice["steps"])] == ["16x16", "64x64"]
    assert twice["prompt"] == "a red circle" and twice["seed"] == "7"
    report = verify_image(tmp_path / "x16" / made.name, use_detector=False)
    assert report.verdict == "generated" and "steps" in report.metadata
    assert "steps=" in report.summary()  # `ganforge verify` prints it


def test_interpolation_grid_names_both_prompts(place: Path, tmp_path: Path) -> None:
    assert main(["generate", "cat face", "--interpolate-to", "dog face", "--steps", "3",
                 "--model", str(place / "t2i-run"), "--out", str(tmp_path)]) == 0
    grid = read_png_metadata(tmp_path / "grid.png")
    frame = read_png_metadata(tmp_path / "interp_001.png")
    assert grid["prompt"] == frame["prompt"] == "cat face"
    assert grid["prompt_to"] == frame["prompt_to"] == "dog face"


def test_model_label_is_a_name_not_a_path(tmp_path: Path) -> None:
    assert model_label(ASSETS / "text2image-emoji-64") == "ganforge default (text2image-emoji-64)"
    assert model_label(tmp_path / "my run" / "model") == "my-run"
    assert model_label(tmp_path / "saved.v2") == "saved.v2"


def test_carried_fields_drop_the_old_marks_and_cut_old_local_paths() -> None:
    carried = carried_fields({
        "ganforge:source": "/home/someone/photos/cat.png", "ganforge:model": r"C:\runs\cats",
        "ganforge:prompt": "/ a slash", "ganforge:watermark": "x model=1234",
        "ganforge:version": "0.0.1", "dpi": (72, 72)})
    assert carried == {"source": "cat.png", "model": "cats", "prompt": "/ a slash"}
