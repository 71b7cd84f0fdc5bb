"""animal-mnist as captioned images, from a tiny fake .npz or a fake copy of the PyPI package."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganforge.data.animal_mnist import (
    PIP_INSTALL,
    build_animal_mnist,
    caption_for,
    load_animal_mnist,
)
from ganforge.data.captions import CaptionedImages
from ganforge.errors import DataError, MissingDependency


def _fake_arrays(per_class: int = 10) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), per_class)
    images = rng.integers(0, 256, (len(labels), 28, 28), dtype=np.uint8)
    return images, labels


@pytest.fixture
def fake_npz(tmp_path: Path) -> Path:
    images, labels = _fake_arrays()
    path = tmp_path / "animal_mnist.npz"
    np.savez(path, images=images, labels=labels,
             class_names=np.array(["bear", "elephant", "owl"]))
    return path


def test_build_writes_grey_pngs_and_class_captions(tmp_path: Path, fake_npz: Path) -> None:
    captions = build_animal_mnist(tmp_path / "out", fake_npz, size=32, holdout_fraction=0.2)
    rows = [json.loads(line) for line in captions.read_text().splitlines()]
    assert len(rows) == 30
    assert {r["caption"] for r in rows} == {"a bear", "an elephant", "an owl"}
    assert all(r["caption"] == caption_for(r["label"]) for r in rows)
    assert Counter(r["label"] for r in rows if r["split"] == "val") == \
        {"bear": 2, "elephant": 2, "owl": 2}
    with Image.open(captions.parent / rows[0]["image"]) as im:
        assert im.size == (32, 32) and im.mode == "RGB"
        r, g, b = im.split()
        assert r.tobytes() == g.tobytes() == b.tobytes()
    data = CaptionedImages.load(captions, 32)  # the train split, as training reads it
    assert len(data) == 24 and data.images.shape == (24, 3, 32, 32)
    assert {f["label"] for f in data.fields} == {"bear", "elephant", "owl"}


def test_build_refuses_to_overwrite_and_names_bad_sources(tmp_path: Path,
                                                          fake_npz: Path) -> None:
    out = tmp_path / "out"
    build_animal_mnist(out, fake_npz, holdout_fraction=0.0)
    with pytest.raises(DataError, match="not an empty folder"):
        build_animal_mnist(out, fake_npz)
    build_animal_mnist(out, fake_npz, size=16, overwrite=True)
    with Image.open(next((out / "images").iterdir())) as im:
        assert im.size == (16, 16)
    with pytest.raises(DataError, match="does not exist"):
        build_animal_mnist(tmp_path / "other", tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, pictures=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataError, match="lacks images, labels"):
        load_animal_mnist(bad)


def _fake_package(root: Path, data: object, labels: object) -> None:
    folder = root / "animal_mnist" / "data" / "Animal_MNIST"
    folder.mkdir(parents=True)
    (root / "animal_mnist" / "__init__.py").write_text("")
    for name, value in (("animal_data_version_3.gz", data),
                        ("animal_label_version_3.gz", labels)):
        with gzip.open(folder / name, "wb") as fh:
            pickle.dump(value, fh)


def test_reads_the_installed_package_without_importing_it(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    images, labels = _fake_arrays(2)
    _fake_package(tmp_path / "site", images, labels)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    got_images, got_labels, names = load_animal_mnist()
    assert np.array_equal(got_images, images) and np.array_equal(got_labels, labels)
    assert names[:3] == ["bear", "bird", "cat"]
    captions = build_animal_mnist(tmp_path / "out", holdout_fraction=0.0)
    assert json.loads(captions.read_text().splitlines()[0])["caption"] == "a bear"


class _Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.getcwd, ()  # type: ignore[return-value]


def test_package_pickles_may_hold_numpy_arrays_only(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_package(tmp_path / "site", _Payload(), np.zeros(1, np.int64))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(DataError, match="not a numpy array part"):
        load_animal_mnist()


def test_missing_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(MissingDependency, match=re.escape(PIP_INSTALL)):
        load_animal_mnist()
