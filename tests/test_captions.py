"""Captions files and captioned image datasets: formats, columns, templates, splits, bad rows."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from ganforge.data.captions import CaptionedImages, read_captions
from ganforge.errors import ConfigError, DataError

COLOURS = ["red", "green", "blue", "yellow", "black", "white"]


def _images(folder: Path, count: int = 4, size: int = 16) -> list[str]:
    """``count`` PNGs img0.png... under ``folder/img``, each a colour with a grey stripe on the
    left (so a flip shows); their paths relative to ``folder``."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        image = Image.new("RGB", (size, size), COLOURS[i % len(COLOURS)])
        image.paste((128, 128, 128), (0, 0, size // 4, size))
        image.save(folder / f"img/img{i}.png")
        names.append(f"img/img{i}.png")
    return names


def _jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n",
                    encoding="utf-8")
    return path


def _read(*args: object, **kwargs: object) -> tuple[list, object, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        entries, report = read_captions(*args, **kwargs)  # type: ignore[arg-type]
    return entries, report, [str(w.message) for w in caught]


def test_jsonl_with_relative_paths_lists_and_merged_rows(tmp_path: Path) -> None:
    names = _images(tmp_path / "data", 3)
    file = _jsonl(tmp_path / "data" / "captions.jsonl", [
        {"file_name": names[0], "caption": "  a red square "},
        {"file_name": names[1], "captions": ["a green square", "", "green"]},
        {"file_name": names[0], "caption": ["red", "a red square"]},  # same image: merged
        {"file_name": names[2], "text": "blue"},
    ])
    entries, report, caught = _read(file)
    assert caught == []
    assert entries == [(tmp_path / "data" / names[0], ["a red square", "red"]),
                       (tmp_path / "data" / names[1], ["a green square", "green"]),
                       (tmp_path / "data" / names[2], ["blue"])]
    assert (report.rows, report.kept, report.skipped) == (4, 4, {})


def test_csv_numbered_columns_tsv_and_pipe_separated_captions(tmp_path: Path) -> None:
    names = _images(tmp_path, 2)
    csv_file = tmp_path / "c.csv"
    csv_file.write_text(f'image,caption_2,caption_1\n{names[0]},"second, with comma",first\n'
                        f"{names[1]},,only\n", encoding="utf-8")
    entries, report, _ = _read(csv_file)
    assert [caps for _, caps in entries] == [["first", "second, with comma"], ["only"]]
    tsv_file = tmp_path / "c.tsv"
    tsv_file.write_text(f"path\tcaptions\n{names[0]}\tone | two|\n", encoding="utf-8")
    entries, report, _ = _read(tsv_file)
    assert entries == [(tmp_path / names[0], ["one", "two"])] and report.kept == 1


def test_image_template_and_split_like_the_emoji_metadata(tmp_path: Path) -> None:
    (tmp_path / "twitter/64").mkdir(parents=True)
    rows = []
    for i, (code, split) in enumerate([("1f600", "train"), ("1f680", "train"),
                                       ("2764-fe0f", "test")]):
        Image.new("RGBA", (64, 64), (i * 80, 0, 0, 255)).save(tmp_path / f"twitter/64/{code}.png")
        rows.append({"id": code, "caption": f"emoji {i}", "split": split, "fluent3d": True})
    file = _jsonl(tmp_path / "metadata.jsonl", rows)
    entries, report, caught = _read(file, image_template="twitter/64/{id}.png")
    assert [p.name for p, _ in entries] == ["1f600.png", "1f680.png"] and caught == []
    assert (report.rows, report.kept, report.other_split) == (3, 2, 1)
    entries, report, _ = _read(file, image_template="twitter/64/{id}.png", split=None)
    assert len(entries) == 3 and report.other_split == 0
    with pytest.raises(DataError, match=r"uses idd, which no row has; columns found: id, "
                                        r"caption, split, fluent3d"):
        read_captions(file, image_template="twitter/64/{idd}.png")
    with pytest.raises(ConfigError, match="must name row fields"):
        read_captions(file, image_template="twitter/64/{}.png")
    with pytest.raises(DataError, match=r"no usable rows .*3 of other splits"):
        read_captions(file, image_template="twitter/64/{id}.png", split="validation")


def test_bad_rows_are_named_skipped_and_counted(tmp_path: Path) -> None:
    names = _images(tmp_path, 2)
    file = _jsonl(tmp_path / "captions.jsonl", [
        {"image": names[0], "caption": "fine"},
        {"image": "img/gone.png", "caption": "its image is missing"},
        '{"image": "img/img1.png", "caption": ',
        {"image": names[1], "caption": "   "},
        {"image": names[1], "captions": ["", 5]},
        '["not", "an", "object"]',
        {"caption": "no path"},
    ])
    entries, report, caught = _read(file)
    assert len(entries) == 1 and report.rows == 7 and report.kept == 1
    assert report.skipped == {"missing image file": 1, "malformed JSON": 1, "no caption": 2,
                              "not a JSON object": 1, "no image path": 1}
    assert any("line 2: skipped (missing image file:" in m and "gone.png" in m for m in caught)
    assert any("line 3: skipped (malformed JSON:" in m for m in caught)
    assert any("line 4: skipped (no caption:" in m for m in caught)
    assert any("line 7: skipped (no image path:" in m for m in caught)
    assert caught[-1] == report.summary() and "kept 1 of 7 rows" in report.summary()


def test_unusable_files_are_refused_with_the_reason(tmp_path: Path) -> None:
    names = _images(tmp_path, 1)
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(f"image,caption\n{names[0]},caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.csv is not UTF-8 text \(line 2"):
        read_captions(latin1)
    odd = _jsonl(tmp_path / "odd.jsonl", [{"picture": names[0], "label": "x"}])
    with pytest.raises(DataError, match=r"no image path column; columns found: picture, label; "
                                        r"accepted: image path in image \| file_name"):
        read_captions(odd)
    no_caption = _jsonl(tmp_path / "nocap.jsonl", [{"image": names[0], "label": "x"}])
    with pytest.raises(DataError, match=r"no caption column.*captions in caption \| text"):
        read_captions(no_caption)
    all_missing = _jsonl(tmp_path / "missing.jsonl", [{"image": "nope.png", "caption": "x"}])
    with pytest.raises(DataError, match="no usable rows"), pytest.warns(UserWarning):
        read_captions(all_missing)
    array = tmp_path / "array.json"
    array.write_text(json.dumps([{"image": names[0], "caption": "x"}]), encoding="utf-8")
    with pytest.raises(DataError, match="holds one JSON array; expected JSON Lines"):
        read_captions(array)
    with pytest.raises(DataError, match=r"suffix '.txt'; expected one of .jsonl"):
        read_captions(tmp_path / "captions.txt")
    with pytest.raises(DataError, match="does not exist"):
        read_captions(tmp_path / "absent.jsonl")


@pytest.fixture
def dataset(tmp_path: Path) -> CaptionedImages:
    """Six images; images 0 and 1 share a caption (case aside), image 2 has three captions."""
    names = _images(tmp_path, 6)
    captions = [["a red square", "shared"], ["a green square", "SHARED"],
                ["blue", "a blue square", "bluish"], ["yellow"], ["black"], ["white"]]
    (tmp_path / "img/img5.png").write_bytes(b"not a png")  # corrupt: skipped and counted
    file = _jsonl(tmp_path / "captions.jsonl",
                  [{"image": n, "captions": c} for n, c in zip(names, captions, strict=True)])
    with pytest.warns(UserWarning, match="img5.png is corrupt"):
        return CaptionedImages.load(file, size=8, flip=True, seed=7)


def test_captioned_images_load_and_preview(dataset: CaptionedImages) -> None:
    assert len(dataset) == 5 and dataset.images.shape == (5, 3, 8, 8)
    assert dataset.images.dtype == torch.uint8 and len(dataset.captions) == 5
    assert [p.name for p in dataset.report.unreadable_images] == ["img5.png"]
    assert "1 unreadable image(s)" in dataset.report.summary()
    preview = dataset.preview(3)
    assert preview["captions"] == ["a red square", "blue", "black"]  # spread over the set
    assert preview["images"].shape == (3, 3, 8, 8) and preview["images"][0, 0, 0, -1] == 1.0
    again = dataset.preview(3)
    assert [preview[k] for k in ("captions", "mismatched")] == \
        [again[k] for k in ("captions", "mismatched")]
    assert torch.equal(preview["single"], again["single"])
    # "shared" names two images (case aside): no single image to reconstruct for it
    batch = dataset.batch(torch.arange(5).repeat(6), epoch=0)
    assert "shared" in {c.casefold() for c in batch["captions"]}
    for caption, single in zip(batch["captions"], batch["single"].tolist(), strict=True):
        assert single == (caption.casefold() != "shared"), caption
    assert len(dataset.preview(50)["captions"]) == 5


def test_batches_are_deterministic_per_sample(dataset: CaptionedImages) -> None:
    whole = dataset.batch(torch.tensor([0, 1, 2, 3, 4]), epoch=2)
    assert whole["images"].shape == (5, 3, 8, 8) and whole["images"].dtype == torch.float32
    assert whole["images"].min() >= -1 and whole["images"].max() <= 1
    again = dataset.batch(torch.tensor([3, 2]), epoch=2)  # other grouping, same draws
    assert again["captions"] == [whole["captions"][3], whole["captions"][2]]
    assert again["mismatched"] == [whole["mismatched"][3], whole["mismatched"][2]]
    assert torch.equal(again["images"], whole["images"][[3, 2]])
    drawn = {dataset.batch(torch.tensor([2]), epoch)["captions"][0] for epoch in range(30)}
    assert drawn == {"blue", "a blue square", "bluish"}
    stored = dataset.images.clone()
    unflipped = dataset.preview(1)["images"][0]
    flipped = [bool(torch.equal(dataset.batch(torch.tensor([0]), e)["images"][0],
                                unflipped.flip(-1))) for e in range(30)]
    assert 5 < sum(flipped) < 25 and torch.equal(dataset.images, stored)


def test_mismatched_captions_never_belong_to_the_image(dataset: CaptionedImages) -> None:
    indices = torch.arange(len(dataset))
    for epoch in range(40):
        out = dataset.batch(indices, epoch)
        for i, (caption, wrong) in enumerate(zip(out["captions"], out["mismatched"],
                                                 strict=True)):
            own = {c.casefold() for c in dataset.captions[i]}
            assert caption in dataset.captions[i] and wrong.casefold() not in own
    assert {c.casefold() for c in dataset.preview(5)["mismatched"][:2]}.isdisjoint({"shared"})
