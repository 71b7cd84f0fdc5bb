"""Reading image folders: formats, nesting, transparency, and every kind of bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from ganforge.data.datasets import UnpairedImages
from ganforge.data.images import ImageFolder, list_images, load_image, parse_color
from ganforge.errors import ConfigError, DataError, ImageTooSmall


def _save(path: Path, image: Image.Image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def test_nested_folders_and_formats_are_read(tmp_path: Path) -> None:
    _save(tmp_path / "x.png", Image.new("RGB", (20, 30), "red"))
    _save(tmp_path / "sub" / "deeper" / "y.jpg", Image.new("RGB", (40, 40), "blue"))
    _save(tmp_path / "sub" / "z.webp", Image.new("RGB", (16, 16), "green"))
    (tmp_path / "notes.txt").write_text("not an image")
    folder = ImageFolder.load(tmp_path, size=16)
    assert folder.images.shape == (3, 3, 16, 16) and folder.images.dtype == torch.uint8
    assert sorted(p.name for p in folder.paths) == ["x.png", "y.jpg", "z.webp"]


def test_transparency_is_composited_on_the_chosen_background(tmp_path: Path) -> None:
    path = _save(tmp_path / "clear.png", Image.new("RGBA", (16, 16), (255, 0, 0, 0)))
    white = load_image(path, 16)
    black = load_image(path, 16, background=parse_color("black"))
    assert white.float().mean() == 255 and black.float().mean() == 0
    assert parse_color("#102030") == (16, 32, 48)
    with pytest.raises(ConfigError, match="not-a-colour"):
        parse_color("not-a-colour")


def test_non_square_images_are_resized_and_centre_cropped(tmp_path: Path) -> None:
    im = Image.new("RGB", (64, 32), "white")
    im.paste((0, 0, 0), (16, 0, 48, 32))  # black centre square
    out = load_image(_save(tmp_path / "wide.png", im), 16)
    assert out.shape == (3, 16, 16) and out.float().mean() < 20


def test_corrupt_files_are_named_skipped_and_counted(tmp_path: Path) -> None:
    _save(tmp_path / "good.png", Image.new("RGB", (16, 16)))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    full = _save(tmp_path / "truncated.jpg", Image.new("RGB", (64, 64), "red"))
    full.write_bytes(full.read_bytes()[:200])
    with pytest.warns(UserWarning) as caught:
        folder = ImageFolder.load(tmp_path, size=16)
    messages = " ".join(str(w.message) for w in caught)
    assert "broken.png" in messages and "truncated.jpg" in messages
    assert "skipped 2 unreadable image file(s) of 3" in messages
    assert len(folder) == 1 and {p.name for p in folder.skipped} == {"broken.png",
                                                                      "truncated.jpg"}


def test_missing_empty_and_all_corrupt_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        list_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        list_images(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_bytes(b"nope")
    with pytest.raises(DataError, match="none of its 1 image files"), pytest.warns(UserWarning):
        ImageFolder.load(tmp_path / "bad", size=16)


def test_image_smaller_than_size_is_refused_unless_upscaling_is_allowed(tmp_path: Path) -> None:
    path = _save(tmp_path / "tiny.png", Image.new("RGB", (10, 12)))
    with pytest.raises(ImageTooSmall, match=r"tiny.png is 10x12, smaller than .* 16"):
        ImageFolder.load(tmp_path, size=16)
    assert load_image(path, 16, allow_upscale=True).shape == (3, 16, 16)


def test_bad_sizes_are_refused(tmp_path: Path) -> None:
    _save(tmp_path / "a.png", Image.new("RGB", (16, 16)))
    for size in (0, 6, 18, 10_000):
        with pytest.raises(ConfigError, match=f"image size {size}"):
            ImageFolder.load(tmp_path, size=size)


def test_unpaired_batches_depend_only_on_seed_epoch_and_indices(shapes16) -> None:
    a, b = (ImageFolder.load(folder, 16) for folder in shapes16)
    one, two = UnpairedImages(a, b, flip=False, seed=3), UnpairedImages(a, b, flip=False, seed=3)
    idx = torch.tensor([0, 5, 7])
    first, again = one.batch(idx, epoch=2), two.batch(idx, epoch=2)
    assert torch.equal(first["a"], again["a"]) and torch.equal(first["b"], again["b"])
    assert first["a"].min() >= -1 and first["a"].max() <= 1
    assert not torch.equal(one.batch(idx, epoch=3)["b"], first["b"])
