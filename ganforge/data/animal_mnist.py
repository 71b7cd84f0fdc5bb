"""animal-mnist as captioned images: class-conditional generation is text-to-image on captions
that name the class ("a bear", "an elephant"), and ``--attribute label`` audits class coverage.

The source is 10,000 silhouettes, 28x28 grey, in 10 balanced classes, from the PyPI package
``animal-mnist==0.4`` (MIT): either an ``.npz`` with ``images`` uint8 [N, 28, 28], ``labels``
[N] and ``class_names`` [10], or the package itself, which ships two gzipped pickles of numpy
arrays (read here with an unpickler that accepts numpy arrays only; importing the package
would pull in TensorFlow).

Layout written::

    OUT/images/<class>_<index>.png   3-channel grey, upscaled to ``size`` px (bicubic)
    OUT/captions.jsonl               {"image", "caption", "label", "split"} per image
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ganforge.core.files import atomic_replace_dir
from ganforge.data.images import check_size
from ganforge.errors import ConfigError, DataError, MissingDependency

PACKAGE = "animal_mnist"
PIP_INSTALL = "pip install --no-deps animal-mnist==0.4"
#: class order of the package's integer labels (its description lists them so)
CLASS_NAMES = ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep",
               "zebra")
PACKAGE_FILES = ("data/Animal_MNIST/animal_data_version_3.gz",
                 "data/Animal_MNIST/animal_label_version_3.gz")
#: the only globals the package's pickles may name: numpy array reconstruction
_NUMPY_GLOBALS = {("numpy.core.multiarray", "_reconstruct"),
                  ("numpy._core.multiarray", "_reconstruct"),
                  ("numpy", "ndarray"), ("numpy", "dtype")}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else (a pickle can otherwise run any code)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(f"{module}.{name} is not a numpy array part")
        return super().find_class(module.replace("numpy.core.", "numpy._core."), name)


def _read_package_array(path: Path) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as fh:
            array = _ArrayUnpickler(fh).load()
    except (OSError, EOFError, pickle.UnpicklingError) as exc:
        raise DataError(f"{path} is not a gzipped numpy array pickle ({exc})") from None
    if not isinstance(array, np.ndarray):
        raise DataError(f"{path} holds {type(array).__name__}, expected a numpy array")
    return array


def load_animal_mnist(source_npz: str | Path | None = None
                      ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images uint8 [N, 28, 28], labels int [N], class names) from ``source_npz`` or, when
    None, from the installed ``animal_mnist`` package."""
    if source_npz is not None:
        path = Path(source_npz)
        try:
            with np.load(path, allow_pickle=False) as npz:
                missing = {"images", "labels"} - set(npz.files)
                if missing:
                    raise DataError(f"{path} lacks {', '.join(sorted(missing))}; expected arrays "
                                    "images [N, 28, 28], labels [N], class_names")
                images, labels = npz["images"], npz["labels"]
                names = ([str(n) for n in npz["class_names"]] if "class_names" in npz.files
                         else list(CLASS_NAMES))
        except FileNotFoundError:
            raise DataError(f"animal-mnist file {path} does not exist") from None
        except (OSError, ValueError) as exc:
            raise DataError(f"{path} is not a readable .npz file ({exc})") from None
    else:
        spec = importlib.util.find_spec(PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise MissingDependency(f"the animal-mnist data comes from the PyPI package "
                                    f"animal-mnist: {PIP_INSTALL} (or pass an .npz file)")
        root = Path(next(iter(spec.submodule_search_locations)))
        data_file, label_file = (root / name for name in PACKAGE_FILES)
        if not data_file.is_file() or not label_file.is_file():
            raise DataError(f"package {PACKAGE} at {root} lacks {PACKAGE_FILES[0]} or "
                            f"{PACKAGE_FILES[1]}; reinstall it: {PIP_INSTALL}")
        images, labels = _read_package_array(data_file), _read_package_array(label_file)
        names = list(CLASS_NAMES)
    if images.ndim != 3 or images.dtype != np.uint8 or len(labels) != len(images):
        raise DataError(f"animal-mnist images are {images.dtype} {list(images.shape)} with "
                        f"{len(labels)} labels; expected uint8 [N, H, W] and N labels")
    labels = labels.astype(np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= len(names)):
        raise DataError(f"animal-mnist labels run {labels.min()}..{labels.max()}, outside the "
                        f"{len(names)} class names {names}")
    return images, labels, names


def caption_for(name: str) -> str:
    """'a bear', 'an elephant'."""
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def build_animal_mnist(out: str | Path, source_npz: str | Path | None = None, size: int = 32,
                       holdout_fraction: float = 0.1, seed: int = 0,
                       overwrite: bool = False) -> Path:
    """Write animal-mnist as PNGs and ``captions.jsonl`` into ``out``; return the captions file.

    ``holdout_fraction`` of each class (drawn with ``seed``) gets ``split: "val"``, the rest
    ``"train"`` (training reads the train split by default). The folder is built beside
    ``out`` and swapped into place; a non-empty ``out`` is replaced only with ``overwrite``.
    """
    check_size(size)
    if not 0 <= holdout_fraction < 1:
        raise ConfigError(f"held-out fraction must be in [0, 1), got {holdout_fraction}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise DataError(f"{out} exists and is not an empty folder; choose a new folder or pass "
                        "overwrite=True")
    images, labels, names = load_animal_mnist(source_npz)
    gen = torch.Generator().manual_seed(seed)
    held = np.zeros(len(labels), dtype=bool)
    for value in np.unique(labels):
        members = np.flatnonzero(labels == value)
        order = torch.randperm(len(members), generator=gen).numpy()
        held[members[order[:round(holdout_fraction * len(members))]]] = True

    def fill(tmp: Path) -> None:
        (tmp / "images").mkdir()
        rows = []
        for i, (pixels, label) in enumerate(zip(images, labels, strict=True)):
            name = names[label]
            file = f"images/{name}_{i:05d}.png"
            grey = Image.fromarray(pixels).resize((size, size), Image.BICUBIC)
            grey.convert("RGB").save(tmp / file)
            rows.append({"image": file, "caption": caption_for(name), "label": name,
                         "split": "val" if held[i] else "train"})
        (tmp / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    if out.exists() and not out.is_dir():
        out.unlink()
    atomic_replace_dir(out, fill)
    return out / "captions.jsonl"
