"""The emoji dataset builder, run on tiny fake npm packages made in tmp_path: no npm, no network."""

import io
import json
import re
import tarfile
from collections import defaultdict
from pathlib import Path

import pytest
from PIL import Image

from ganforge.data.emoji import EmojiBuildReport, build_emoji_dataset, emoji_split
from ganforge.errors import ConfigError, DataError, MissingDependency

EMOJI_JSON = [
    {"name": "GRINNING FACE", "unified": "1F600", "short_names": ["grinning"],
     "category": "Smileys & Emotion", "subcategory": "face-smiling"},
    {"name": "FATHER CHRISTMAS", "unified": "1F385", "short_names": ["santa"],
     "category": "People & Body", "subcategory": "person-fantasy",
     "skin_variations": {"1F3FB": {"unified": "1F385-1F3FB"},
                         "1F3FF": {"unified": "1F385-1F3FF"}}},
    {"name": "WOMAN AND MAN HOLDING HANDS", "unified": "1F46B", "short_names": ["couple"],
     "category": "People & Body", "subcategory": "family",
     "skin_variations": {"1F3FB-1F3FF": {"unified": "1F469-1F3FB-200D-1F91D-200D-1F468-1F3FF"}}},
    {"name": "HEAVY BLACK HEART", "unified": "2764-FE0F", "short_names": ["heart"],
     "category": "Smileys & Emotion", "subcategory": "heart"},
    {"name": "CAT FACE", "unified": "1F431", "short_names": ["cat"],
     "category": "Animals & Nature", "subcategory": "animal-mammal"},
    {"name": "SLICE OF PIZZA", "unified": "1F355", "short_names": ["pizza"],
     "category": "Food & Drink", "subcategory": "food-prepared"},
]  # fmt: skip
ALL_IDS = [
    "1f600",
    "1f385",
    "1f385-1f3fb",
    "1f385-1f3ff",
    "1f46b",
    "1f469-1f3fb-200d-1f91d-200d-1f468-1f3ff",
    "2764-fe0f",
    "1f431",
    "1f355",
]
CORRUPT_GOOGLE = "1f431"
MISSING_TWITTER = "1f355"
GOOD_IDS = [i for i in ALL_IDS if i not in (CORRUPT_GOOGLE, MISSING_TWITTER)]
FLUENT_IDS = ["1f600", "1f385-1f3fb"]
FIELDS = ["id", "base_id", "caption", "name", "short_names", "category", "subcategory", "split",
          "fluent3d"]  # fmt: skip


def _image_bytes(color: tuple[int, int, int, int], format: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (4, 4), color).save(buffer, format=format)
    return buffer.getvalue()


def _write_package(root: Path, name: str, files: dict[str, bytes], version: str = "16.0.0") -> None:
    root.mkdir(parents=True)
    (root / "package.json").write_text(json.dumps({"name": name, "version": version}))
    for relative, data in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)


def make_packages(source: Path) -> Path:
    """Write unpacked fake packages, one folder each, as ``source/<name>/package.json``."""
    entries = json.loads(json.dumps(EMOJI_JSON))
    for entry in [*entries, *(v for e in entries for v in e.get("skin_variations", {}).values())]:
        entry["image"] = entry["unified"].lower() + ".png"
    _write_package(
        source / "emoji-datasource",
        "emoji-datasource",
        {"emoji.json": json.dumps(entries).encode(), "LICENSE": b"The MIT License (MIT)\n"},
    )
    for style, color in (("google", (200, 0, 0, 255)), ("twitter", (0, 0, 200, 128))):
        images = {f"img/{style}/64/{i}.png": _image_bytes(color, "PNG") for i in ALL_IDS}
        if style == "google":
            images[f"img/google/64/{CORRUPT_GOOGLE}.png"] = b"\x89PNG\r\n\x1a\n broken"
        else:
            del images[f"img/twitter/64/{MISSING_TWITTER}.png"]
        _write_package(source / f"emoji-datasource-{style}", f"emoji-datasource-{style}", images)
    webp = _image_bytes((0, 150, 0, 255), "WEBP")
    _write_package(
        source / "@lobehub" / "fluent-emoji-3d",
        "@lobehub/fluent-emoji-3d",
        {f"assets/{i}.webp": webp for i in FLUENT_IDS},
        version="1.1.0",
    )
    return source


def pack_like_npm(folder: Path, tgz: Path) -> None:
    """Write ``folder`` as npm pack does: a gzipped tar whose entries start with ``package/``."""
    with tarfile.open(tgz, "w:gz") as archive:
        archive.add(folder, arcname="package")


def read_metadata(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]


def build(out: Path, source: Path, **options) -> EmojiBuildReport:
    with pytest.warns(UserWarning, match="skipping"):
        return build_emoji_dataset(out, source=source, progress=False, **options)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return make_packages(tmp_path / "packages")


def test_layout_metadata_and_attribution(tmp_path: Path, source: Path) -> None:
    out = tmp_path / "emoji"
    report = build(out, source, styles=("google", "twitter", "fluent3d"))
    rows = read_metadata(out)
    assert [row["id"] for row in rows] == GOOD_IDS
    assert all(list(row) == FIELDS for row in rows)
    for row in rows:
        assert (out / "google" / "64" / f"{row['id']}.png").read_bytes() == (
            source / "emoji-datasource-google" / "img" / "google" / "64" / f"{row['id']}.png"
        ).read_bytes()
        with Image.open(out / "twitter" / "64" / f"{row['id']}.png") as image:
            assert image.mode == "RGBA"
        assert row["fluent3d"] == (row["id"] in FLUENT_IDS)
        assert (out / "fluent3d" / "256" / f"{row['id']}.webp").is_file() == row["fluent3d"]
    heart = rows[GOOD_IDS.index("2764-fe0f")]
    assert heart == {
        "id": "2764-fe0f", "base_id": "2764-fe0f", "caption": "heavy black heart",
        "name": "heavy black heart", "short_names": ["heart"], "category": "Smileys & Emotion",
        "subcategory": "heart", "split": heart["split"], "fluent3d": False,
    }  # fmt: skip
    attribution = (out / "ATTRIBUTION.txt").read_text()
    for license_name in ("CC-BY-4.0", "Apache License 2.0", "MIT License", "emoji-datasource"):
        assert license_name in attribution
    assert (out / "LICENSE-emoji-datasource-code").is_file()
    assert report.images_per_style == {"google": 7, "twitter": 7, "fluent3d": 2}
    assert sum(report.emoji_per_split.values()) == 7
    assert "7 emoji" in report.summary()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emoji", "packages"]


def test_default_styles_write_no_fluent(tmp_path: Path, source: Path) -> None:
    out = tmp_path / "emoji"
    build(out, source)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["google", "twitter"]
    assert not any(row["fluent3d"] for row in read_metadata(out))


def test_skin_tone_captions_and_base_ids(tmp_path: Path, source: Path) -> None:
    out = tmp_path / "emoji"
    build(out, source)
    rows = {row["id"]: row for row in read_metadata(out)}
    assert rows["1f385"]["caption"] == "father christmas"
    assert rows["1f385-1f3fb"]["caption"] == "father christmas, light skin tone"
    assert rows["1f385-1f3ff"]["caption"] == "father christmas, dark skin tone"
    couple = rows["1f469-1f3fb-200d-1f91d-200d-1f468-1f3ff"]
    assert couple["caption"] == "woman and man holding hands, light skin tone, dark skin tone"
    assert couple["name"] == "woman and man holding hands"
    assert couple["base_id"] == "1f46b"
    assert rows["1f385-1f3fb"]["base_id"] == "1f385"


def test_split_is_deterministic_and_keeps_variants_with_their_base(
    tmp_path: Path, source: Path
) -> None:
    first = build(tmp_path / "a", source, holdout_fraction=0.5, seed=1)
    build(tmp_path / "b", source, holdout_fraction=0.5, seed=1)
    rows = read_metadata(tmp_path / "a")
    assert rows == read_metadata(tmp_path / "b")
    splits_of_base = defaultdict(set)
    for row in rows:
        splits_of_base[row["base_id"]].add(row["split"])
        assert row["split"] == emoji_split(row["base_id"], 0.5, seed=1)
    assert all(len(splits) == 1 for splits in splits_of_base.values())
    assert first.emoji_per_split["train"] > 0 and first.emoji_per_split["val"] > 0


def test_emoji_split_rule() -> None:
    # Base emoji held out of the prepared copy (val) and kept in it (train), seed 0, 15%.
    assert emoji_split("0031-fe0f-20e3") == "val"
    assert emoji_split("00a9-fe0f") == "val"
    assert emoji_split("0023-fe0f-20e3") == "train"
    assert emoji_split("1f385") == "train"
    ids = [f"{code:x}" for code in range(0x1F300, 0x1F300 + 2000)]
    held_out = sum(emoji_split(i) == "val" for i in ids) / len(ids)
    assert 0.12 < held_out < 0.18
    assert [emoji_split(i, seed=5) for i in ids] != [emoji_split(i) for i in ids]
    assert all(emoji_split(i, holdout_fraction=0.0) == "train" for i in ids)


def test_bad_images_are_skipped_and_counted(tmp_path: Path, source: Path) -> None:
    out = tmp_path / "emoji"
    with pytest.warns(UserWarning) as caught:
        report = build_emoji_dataset(out, source=source, progress=False)
    messages = " ".join(str(warning.message) for warning in caught)
    assert CORRUPT_GOOGLE in messages and MISSING_TWITTER in messages
    assert report.skipped_emoji == [CORRUPT_GOOGLE, MISSING_TWITTER]
    assert set(report.bad_images) == {f"google/{CORRUPT_GOOGLE}", f"twitter/{MISSING_TWITTER}"}
    assert "skipped 2 emoji" in report.summary()
    ids = {row["id"] for row in read_metadata(out)}
    assert CORRUPT_GOOGLE not in ids and MISSING_TWITTER not in ids
    assert not (out / "twitter" / "64" / f"{CORRUPT_GOOGLE}.png").exists()


def test_packed_tgz_source_gives_the_same_dataset(tmp_path: Path, source: Path) -> None:
    packed = tmp_path / "packed"
    packed.mkdir()
    pack_like_npm(source / "emoji-datasource", packed / "emoji-datasource-16.0.0.tgz")
    for style in ("google", "twitter"):
        folder = source / f"emoji-datasource-{style}"
        pack_like_npm(folder, packed / f"emoji-datasource-{style}-16.0.0.tgz")
    build(tmp_path / "from-folders", source)
    build(tmp_path / "from-tgz", packed)
    assert read_metadata(tmp_path / "from-tgz") == read_metadata(tmp_path / "from-folders")


def test_refuses_to_overwrite_a_non_empty_folder(tmp_path: Path, source: Path) -> None:
    out = tmp_path / "emoji"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match=re.escape(str(out))):
        build_emoji_dataset(out, source=source, progress=False)
    assert (out / "notes.txt").read_text() == "mine"
    build(out, source, overwrite=True)
    assert not (out / "notes.txt").exists()
    assert (out / "metadata.jsonl").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emoji", "packages"]


def test_failed_build_leaves_nothing_behind(tmp_path: Path, source: Path) -> None:
    emoji_json = source / "emoji-datasource" / "emoji.json"
    entries = json.loads(emoji_json.read_text())
    del entries[3]["category"]
    emoji_json.write_text(json.dumps(entries))
    with pytest.raises(DataError, match="2764-FE0F"):
        build_emoji_dataset(tmp_path / "emoji", source=source, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["packages"]


def test_missing_package_is_named(tmp_path: Path, source: Path) -> None:
    (source / "emoji-datasource-twitter" / "package.json").unlink()
    with pytest.raises(DataError, match=re.escape("emoji-datasource-twitter-16.0.0.tgz")):
        build_emoji_dataset(tmp_path / "emoji", source=source, progress=False)


def test_fetching_without_npm_asks_for_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingDependency, match="npm"):
        build_emoji_dataset(tmp_path / "emoji", progress=False)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"styles": ("google", "apple")}, "apple"),
        ({"styles": ("fluent3d",)}, "google"),
        ({"holdout_fraction": 1.0}, "holdout_fraction"),
    ],
)
def test_bad_options(tmp_path: Path, source: Path, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_emoji_dataset(tmp_path / "emoji", source=source, progress=False, **options)


def test_other_package_version_warns(tmp_path: Path, source: Path) -> None:
    manifest = source / "emoji-datasource-google" / "package.json"
    manifest.write_text(json.dumps({"name": "emoji-datasource-google", "version": "15.1.2"}))
    with pytest.warns(UserWarning, match="15.1.2"):
        build(tmp_path / "emoji", source)


def test_data_emoji_command(tmp_path: Path, source: Path, capsys: pytest.CaptureFixture) -> None:
    from ganforge.cli import main

    assert main(["data", "emoji", "--out", str(tmp_path / "cli"), "--from", str(source)]) == 0
    assert "ganforge: warning:" in capsys.readouterr().err  # the corrupt test image
    assert (tmp_path / "cli" / "metadata.jsonl").is_file()
    assert len(list((tmp_path / "cli" / "twitter" / "64").glob("*.png"))) == len(GOOD_IDS)
    assert main(["data", "emoji", "--out", str(tmp_path / "cli"), "--from", str(source)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ganforge: error:") and "cli" in err
