"""A cache of feature arrays of image sets, so real data is embedded once per network.

An entry is keyed by what determines its features: the bytes of every image file of the set in
order, the size and background colour the images are read at, the feature network's fingerprint
(the hash of its weights file) and :data:`PREPROCESSING_VERSION`. Renaming or moving the files
keeps the entry; changing one pixel, the network or the preprocessing misses it. Entries are
``.npz`` files written atomically, in ``$GANFORGE_CACHE/features`` or, without that variable,
``~/.cache/ganforge/features``.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from ganforge.core.files import atomic_write
from ganforge.data.images import ImageTooSmall, load_image
from ganforge.errors import DataError

PREPROCESSING_VERSION = 1
"""Bump when the way images become network input changes (decoding, fit_square, quantisation)."""
CACHE_ENV = "GANFORGE_CACHE"
CACHE_FORMAT = "ganforge-features-v1"
_HASH_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """``$GANFORGE_CACHE/features``, or ``~/.cache/ganforge/features`` without the variable."""
    root = os.environ.get(CACHE_ENV)
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "ganforge") / "features"


class FeatureExtractor(Protocol):
    """A feature network: ``images [B, 3, H, W]`` float in [0, 1] -> features ``[B, D]``.

    ``fingerprint`` names the network and its weights (e.g. their hash); it is part of every
    cache key, so two extractors with the same fingerprint must give the same features.
    """

    fingerprint: str

    def __call__(self, images: torch.Tensor) -> np.ndarray: ...


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def load_images(files: Sequence[Path], size: int, background: tuple[int, int, int]
                ) -> tuple[torch.Tensor, list[int]]:
    """Decode ``files`` as uint8 ``[B, 3, size, size]`` (see :func:`load_image`) and the
    positions in ``files`` of those read. An unreadable file is named in a warning and left out;
    an image smaller than ``size`` raises ImageTooSmall."""
    images, kept = [], []
    for position, path in enumerate(files):
        try:
            images.append(load_image(path, size, background))
        except ImageTooSmall:
            raise
        except DataError as exc:
            warnings.warn(f"skipping {exc}", stacklevel=2)
            continue
        kept.append(position)
    empty = torch.empty(0, 3, size, size, dtype=torch.uint8)
    return (torch.stack(images) if images else empty), kept


@dataclass(frozen=True)
class ImageSet:
    """Image files read at one size and background: the input of one cached feature array."""

    files: tuple[Path, ...]
    size: int
    background: tuple[int, int, int]

    def content_hash(self) -> str:
        """SHA-256 of the SHA-256s of the files' bytes, in order."""
        digest = hashlib.sha256()
        for path in self.files:
            try:
                file_hash = file_sha256(path)
            except OSError as exc:
                raise DataError(f"image file {path} cannot be read ({exc})") from None
            digest.update(f"{file_hash}\n".encode())
        return digest.hexdigest()

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, list[int]]]:
        """(uint8 images ``[B, 3, size, size]``, their indices in ``files``), ``batch_size``
        files at a time; unreadable files are warned about and left out."""
        for start in range(0, len(self.files), batch_size):
            images, kept = load_images(self.files[start:start + batch_size], self.size,
                                       self.background)
            if kept:
                yield images, [start + k for k in kept]


@dataclass(frozen=True)
class CachedFeatures:
    """Features ``[N, D]`` float64 of the readable images of an :class:`ImageSet`; ``indices``
    ``[N]``: the position in ``files`` of each row; ``from_cache``: read, not computed."""

    features: np.ndarray
    indices: np.ndarray
    from_cache: bool


class FeatureCache:
    """Feature arrays of image sets on disk; ``folder=None`` disables the cache."""

    def __init__(self, folder: str | Path | None):
        self.folder = Path(folder).expanduser() if folder is not None else None

    def key(self, images: ImageSet, fingerprint: str) -> str:
        """The entry name of ``images`` embedded by the extractor with ``fingerprint``."""
        parts = {"format": CACHE_FORMAT, "preprocessing": PREPROCESSING_VERSION,
                 "extractor": fingerprint, "size": images.size,
                 "background": list(images.background), "images": images.content_hash()}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:40]

    def _path(self, key: str) -> Path:
        return Path(self.folder or ".") / f"{key}.npz"

    def read(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(features, indices) stored under ``key``, or None when absent or unreadable (an
        unreadable entry is warned about and computed again)."""
        if self.folder is None or not self._path(key).is_file():
            return None
        try:
            with np.load(self._path(key), allow_pickle=False) as entry:
                if str(entry["format"]) != CACHE_FORMAT:
                    raise ValueError(f"format {entry['format']}")
                return entry["features"], entry["indices"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            warnings.warn(f"feature cache entry {self._path(key)} is unreadable ({exc}); "
                          "computing it again", stacklevel=2)
            return None

    def write(self, key: str, features: np.ndarray, indices: np.ndarray) -> None:
        """Store an entry atomically (no-op when the cache is disabled)."""
        if self.folder is None:
            return

        def save(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, format=np.array(CACHE_FORMAT), features=features, indices=indices)

        atomic_write(self._path(key), save)


def embed_batches(batches: Iterator[tuple[torch.Tensor, list[int]]],
                  extractor: Callable[[torch.Tensor], np.ndarray], total: int,
                  description: str, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """Features ``[N, D]`` float64 and indices ``[N]`` of uint8 image batches, with a tqdm bar
    of ``total`` items."""
    features, indices = [], []
    with tqdm(total=total, desc=description, unit="img", disable=not progress) as bar:
        for images, kept in batches:
            features.append(np.asarray(extractor(images.float().div(255)), dtype=np.float64))
            indices += kept
            bar.update(len(kept))
    if not features:
        raise DataError(f"{description}: none of the {total} images could be read")
    return np.concatenate(features), np.asarray(indices, dtype=np.int64)


def cached_features(images: ImageSet, extractor: FeatureExtractor, cache: FeatureCache,
                    batch_size: int, progress: bool = False) -> CachedFeatures:
    """Features of ``images`` from ``cache``, or computed ``batch_size`` images at a time and
    stored there."""
    # Hashing every file costs a read of the set: skipped when there is no cache.
    key = cache.key(images, extractor.fingerprint) if cache.folder is not None else ""
    stored = cache.read(key) if key else None
    if stored is not None:
        return CachedFeatures(*stored, from_cache=True)
    features, indices = embed_batches(images.batches(batch_size), extractor, len(images.files),
                                      "reference features", progress)
    if key:
        cache.write(key, features, indices)
    return CachedFeatures(features, indices, from_cache=False)
