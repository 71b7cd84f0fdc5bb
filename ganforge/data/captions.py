"""Captioned image datasets: a captions file (JSON Lines or CSV/TSV) naming images and their text.

Accepted columns (the first present of each group is used)::

    image path   image | file_name | file | path        (or --image-template, see below)
    captions     caption | text          one caption
                 caption_1, caption_2... (or text_1...)  several captions, one per column
                 captions                a list of str in JSON; '|'-separated in CSV/TSV
    split        optional; rows of other splits are left out (``split=None`` keeps all)

Paths are relative to the captions file's folder. ``image_template`` builds the path from the
row's fields instead, e.g. ``"twitter/64/{id}.png"`` for the emoji ``metadata.jsonl``. Rows that
name the same image are merged, their captions pooled. Unusable rows are skipped with a warning
naming the line and counted in a :class:`CaptionReport`.
"""

from __future__ import annotations

import csv
import io
import json
import re
import string
import unicodedata
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ganforge.data.attributes import attribute_of
from ganforge.data.datasets import spread
from ganforge.data.images import (
    ImageTooSmall,
    check_size,
    load_image,
    parse_color,
    uint8_to_float,
)
from ganforge.errors import ConfigError, DataError

IMAGE_COLUMNS = ("image", "file_name", "file", "path")
CAPTION_COLUMNS = ("caption", "text", "captions")
NUMBERED_CAPTION = re.compile(r"^(caption|text)_(\d+)$")
JSON_SUFFIXES, CSV_SUFFIXES = (".jsonl", ".json"), (".csv", ".tsv")
#: rows named one by one in warnings; past this, only the summary warning counts them
_ROWS_WARNED = 20

# Reasons a row is skipped, as counted in CaptionReport.skipped.
MALFORMED_JSON = "malformed JSON"
NOT_AN_OBJECT = "not a JSON object"
NO_IMAGE_PATH = "no image path"
MISSING_IMAGE = "missing image file"
NO_CAPTION = "no caption"


@dataclass
class CaptionReport:
    """What reading a captions file kept and left out.

    ``rows``: data rows read; ``kept``: rows used; ``other_split``: rows of another split, left
    out without a warning; ``skipped``: unusable rows counted by reason (missing image file,
    malformed JSON, ...), so ``rows == kept + other_split + sum(skipped.values())``.
    ``unreadable_images``: image files that :meth:`CaptionedImages.load` could not decode.
    """

    file: Path
    rows: int = 0
    kept: int = 0
    other_split: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    unreadable_images: list[Path] = field(default_factory=list)

    def skip(self, reason: str, count: int = 1) -> None:
        """Count ``count`` rows as skipped for ``reason``."""
        self.skipped[reason] = self.skipped.get(reason, 0) + count

    def summary(self) -> str:
        """One line, e.g. ``metadata.jsonl: kept 10 of 12 rows; skipped: no caption 2``."""
        text = f"{self.file.name}: kept {self.kept} of {self.rows} rows"
        if self.other_split:
            text += f"; {self.other_split} of other splits left out"
        if self.skipped:
            text += "; skipped: " + ", ".join(f"{r} {n}" for r, n in self.skipped.items())
        if self.unreadable_images:
            text += f"; {len(self.unreadable_images)} unreadable image(s) left out"
        return text


def _decode(file: Path) -> str:
    """The file's text; DataError naming the file and line when it is missing or not UTF-8."""
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise DataError(f"captions file {file} does not exist") from None
    except IsADirectoryError:
        raise DataError(
            f"captions file {file} is a folder, expected a .jsonl or .csv file") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(f"captions file {file} is not UTF-8 text (line {line}, byte "
                        f"{exc.start}); save it as UTF-8") from None


def _json_rows(file: Path, text: str,
               report: CaptionReport) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of each JSON line; malformed lines are counted and warned."""
    if text.lstrip().startswith("["):
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None
        if isinstance(whole, list):
            raise DataError(f"captions file {file} holds one JSON array; expected JSON Lines, "
                            "one object per line")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        report.rows += 1
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            _skip(report, number, MALFORMED_JSON, f"{exc.msg} at column {exc.colno}")
            continue
        if not isinstance(row, dict):
            _skip(report, number, NOT_AN_OBJECT, f"found {type(row).__name__}")
            continue
        yield number, row


def _csv_rows(file: Path, text: str,
              report: CaptionReport) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) of each CSV/TSV record; ``captions`` cells are split on '|'."""
    reader = csv.DictReader(io.StringIO(text, newline=""),
                            delimiter="\t" if file.suffix.lower() == ".tsv" else ",")
    for row in reader:
        if not any((value or "").strip() for value in row.values() if isinstance(value, str)):
            continue
        report.rows += 1
        row.pop(None, None)  # cells past the header
        if isinstance(row.get("captions"), str):
            row["captions"] = row["captions"].split("|")
        yield reader.line_num, row


def _skip(report: CaptionReport, line: int, reason: str, detail: str) -> None:
    report.skip(reason)
    if sum(report.skipped.values()) <= _ROWS_WARNED:
        warnings.warn(f"{report.file} line {line}: skipped ({reason}: {detail})", stacklevel=2)


def _caption_columns(columns: Sequence[str]) -> list[str]:
    """The caption columns present, plain names first, then numbered ones in number order."""
    numbered = [(m[1], int(m[2]), m[0]) for m in map(NUMBERED_CAPTION.match, columns) if m]
    return [c for c in CAPTION_COLUMNS if c in columns] + [c for *_, c in sorted(numbered)]


def _template_fields(template: str) -> list[str]:
    """Field names of ``image_template``; ConfigError when it is not a usable format string."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ConfigError(f"image template {template!r} is not a format string ({exc}); "
                          "expected e.g. 'images/{id}.png'") from None
    if not fields or any(not name or name.isdigit() for name in fields):
        raise ConfigError(f"image template {template!r} must name row fields in braces, "
                          "e.g. 'images/{id}.png'")
    return fields


def _check_columns(file: Path, columns: list[str], image_template: str | None,
                   image_column: str | None, caption_columns: list[str]) -> None:
    """DataError listing the columns found and the accepted names when a needed one is absent."""
    missing_fields = ([name for name in _template_fields(image_template) if name not in columns]
                      if image_template is not None else [])
    if missing_fields:
        problem = f"image template {image_template!r} uses {', '.join(missing_fields)}, " \
                  "which no row has"
    elif image_template is None and image_column is None:
        problem = "no image path column"
    elif not caption_columns:
        problem = "no caption column"
    else:
        return
    raise DataError(
        f"captions file {file}: {problem}; columns found: {', '.join(columns)}; accepted: image "
        f"path in {' | '.join(IMAGE_COLUMNS)} (or an image template), captions in "
        f"{' | '.join(CAPTION_COLUMNS)} | caption_1, caption_2, ...")


def _format_template(template: str, row: dict[str, Any], file: Path, line: int) -> str:
    """``template`` filled from ``row``; ConfigError when a field's format spec does not fit."""
    try:
        return template.format(**row)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise ConfigError(f"image template {template!r} cannot be filled from {file} line "
                          f"{line} ({type(exc).__name__}: {exc})") from None


def _captions_of(row: dict[str, Any], columns: list[str]) -> list[str]:
    """A row's non-empty captions, stripped and NFC-normalised, in column order."""
    found = []
    for column in columns:
        value = row.get(column)
        values = value if isinstance(value, list) else [value]
        found += [unicodedata.normalize("NFC", v.strip()) for v in values
                  if isinstance(v, str) and v.strip()]
    return found


def read_captions(file: str | Path, image_template: str | None = None,
                  split: str | None = "train") -> tuple[list[tuple[Path, list[str]]],
                                                       CaptionReport]:
    """Read a captions file into (image path, captions) pairs, one per distinct image
    (see :func:`read_caption_rows`, which also gives each image's metadata fields)."""
    entries, report = read_caption_rows(file, image_template, split)
    return [(path, captions) for path, captions, _ in entries], report


def read_caption_rows(file: str | Path, image_template: str | None = None,
                      split: str | None = "train"
                      ) -> tuple[list[tuple[Path, list[str], dict[str, Any]]], CaptionReport]:
    """Read a captions file into (image path, captions, fields of its first row) triples.

    ``.jsonl``/``.json`` files are JSON Lines; ``.csv``/``.tsv`` files have a header row. See
    the module docstring for the columns. ``split``: when the file has a ``split`` column, only
    its rows with this value are kept (None keeps every row). Raises DataError for a file that
    is missing, not UTF-8, lacks an image or caption column, or has no usable row.
    """
    file = Path(file)
    suffix = file.suffix.lower()
    if suffix not in JSON_SUFFIXES + CSV_SUFFIXES:
        raise DataError(f"captions file {file} has suffix {suffix!r}; expected one of "
                        f"{', '.join(JSON_SUFFIXES + CSV_SUFFIXES)}")
    fields = _template_fields(image_template) if image_template is not None else []
    text = _decode(file)
    report = CaptionReport(file=file)
    read = _json_rows if suffix in JSON_SUFFIXES else _csv_rows
    rows = list(read(file, text, report))
    columns = list(dict.fromkeys(key for _, row in rows for key in row))
    image_column = next((c for c in IMAGE_COLUMNS if c in columns), None)
    caption_columns = _caption_columns(columns)
    if rows:
        _check_columns(file, columns, image_template, image_column, caption_columns)

    by_image: dict[Path, list[str]] = {}
    fields_of: dict[Path, dict[str, Any]] = {}
    for line, row in rows:
        if split is not None and "split" in row and row["split"] != split:
            report.other_split += 1
            continue
        if image_template is not None:
            absent = [name for name in fields if row.get(name) in (None, "")]
            name = None if absent else _format_template(image_template, row, file, line)
            detail = f"no {', '.join(absent)} for image template {image_template!r}"
        else:
            value = row.get(image_column)
            name = value.strip() if isinstance(value, str) and value.strip() else None
            detail = f"empty or non-text {image_column!r}"
        if name is None:
            _skip(report, line, NO_IMAGE_PATH, detail)
            continue
        path = file.parent / name
        if not path.is_file():
            _skip(report, line, MISSING_IMAGE, f"{path} does not exist")
            continue
        captions = _captions_of(row, caption_columns)
        if not captions:
            _skip(report, line, NO_CAPTION, "every caption is empty or not text")
            continue
        fields_of.setdefault(path, row)
        known = by_image.setdefault(path, [])
        known += [c for c in dict.fromkeys(captions) if c not in known]
        report.kept += 1

    if report.skipped:
        warnings.warn(report.summary(), stacklevel=2)
    if not by_image:
        raise DataError(f"captions file {file} has no usable rows ({report.summary()})")
    return [(path, caps, fields_of[path]) for path, caps in by_image.items()], report


class CaptionedImages:
    """Images with their captions, decoded once into memory, as the training loop sees them.

    ``images``: uint8 [N, 3, size, size]; ``captions[i]``: the captions of image i (at least
    one); ``paths[i]``: its file. ``batch`` draws one caption per image and a *mismatched*
    caption (from another image) for a matching-aware discriminator. Every random choice for
    sample ``i`` in epoch ``e`` comes from a generator seeded by (seed, e, i) alone, so a batch
    does not depend on how indices are grouped into batches or processes.
    """

    def __init__(self, images: torch.Tensor, captions: list[list[str]], paths: list[Path],
                 report: CaptionReport, flip: bool = False, seed: int = 0,
                 fields: list[dict[str, Any]] | None = None, balance_by: str | None = None):
        if not len(images) == len(captions) == len(paths) or not all(captions):
            raise ValueError("images, captions and paths must match, each image with captions")
        self.images, self.captions, self.paths, self.report = images, captions, paths, report
        self.flip, self.seed = flip, seed
        self.fields = fields if fields is not None else [{} for _ in paths]
        self.balance_by = balance_by
        self._balanced: tuple[int, torch.Tensor] | None = None
        if balance_by:
            values = [attribute_of(f, balance_by) for f in self.fields]
            counts = Counter(values)
            self._weights = torch.tensor([1.0 / counts[v] for v in values], dtype=torch.double)
        # Captions compared case-insensitively: both encoders lower-case their input.
        keys = sorted({c.casefold() for caps in captions for c in caps})
        self._distinct = {key: i for i, key in enumerate(keys)}
        self._owned = [{self._distinct[c.casefold()] for c in caps} for caps in captions]
        self._first_caption_of = {}
        for caps in captions:
            for c in caps:
                self._first_caption_of.setdefault(self._distinct[c.casefold()], c)
        # how many images carry each caption: one means the caption names that image
        self._images_with = Counter(key for owned in self._owned for key in owned)

    def _names_one_image(self, caption: str) -> bool:
        return self._images_with[self._distinct[caption.casefold()]] == 1

    @classmethod
    def load(cls, file: str | Path, size: int,
             background: str | Sequence[int] = (255, 255, 255),
             image_template: str | None = None, split: str | None = "train",
             flip: bool = False, allow_upscale: bool = False, seed: int = 0,
             balance_by: str | None = None) -> CaptionedImages:
        """Read a captions file (see :func:`read_captions`) and decode its images.

        ``balance_by``: an attribute (column or 'skin-tone'); when given, every epoch draws
        images so that each value of the attribute is equally likely (with replacement).

        Unreadable images are named in a warning, skipped and counted in ``report``; an image
        smaller than ``size`` raises ImageTooSmall unless ``allow_upscale``.
        """
        check_size(size)
        rgb = parse_color(background)
        entries, report = read_caption_rows(file, image_template, split)
        tensors, captions, paths, fields = [], [], [], []
        for path, caps, row in entries:
            try:
                tensors.append(load_image(path, size, rgb, allow_upscale))
            except ImageTooSmall:
                raise
            except DataError as exc:
                warnings.warn(f"skipping {exc}", stacklevel=2)
                report.unreadable_images.append(path)
                continue
            captions.append(caps)
            paths.append(path)
            fields.append(row)
        if not tensors:
            raise DataError(f"captions file {file}: none of its {len(entries)} images could be "
                            "read")
        return cls(torch.stack(tensors), captions, paths, report, flip=flip, seed=seed,
                   fields=fields, balance_by=balance_by)

    def __len__(self) -> int:
        return len(self.paths)

    def _generator(self, epoch: int, index: int) -> torch.Generator:
        """The generator of sample ``index`` in ``epoch``: its seed mixes the three integers."""
        mixed = ((self.seed * 1_000_003 + epoch) * 998_244_353 + index) % (2**63 - 1)
        return torch.Generator().manual_seed(mixed)

    def _mismatched(self, index: int, draws: torch.Tensor) -> str:
        """A caption of another image, different from every caption of image ``index``.

        ``draws``: two random non-negative integers. Falls back to a caption of image ``index``
        only when it owns every distinct caption of the dataset.
        """
        n = len(self)
        other = (index + 1 + int(draws[0]) % (n - 1)) % n if n > 1 else index
        candidates = [c for c in self.captions[other]
                      if self._distinct[c.casefold()] not in self._owned[index]]
        if candidates:
            return candidates[int(draws[1]) % len(candidates)]
        free = [key for key in range(len(self._distinct)) if key not in self._owned[index]]
        if not free:
            return self.captions[other][int(draws[1]) % len(self.captions[other])]
        return self._first_caption_of[free[int(draws[1]) % len(free)]]

    def _resample(self, indices: torch.Tensor, epoch: int) -> torch.Tensor:
        """With ``balance_by``: map sample indices to images drawn attribute-balanced for this
        epoch (a pure function of seed and epoch)."""
        if not self.balance_by:
            return indices
        if self._balanced is None or self._balanced[0] != epoch:
            gen = torch.Generator().manual_seed(self.seed * 7_919 + epoch)
            table = torch.multinomial(self._weights, len(self), replacement=True, generator=gen)
            self._balanced = (epoch, table)
        return self._balanced[1][indices]

    def batch(self, indices: torch.Tensor, epoch: int) -> dict[str, Any]:
        """``images`` [B, 3, H, W] float in [-1, 1] (flipped at random when ``flip``),
        ``captions``: one caption per image drawn among its own, ``mismatched``: a caption of
        another image per sample (lists of B str), ``single``: bool [B], whether the chosen
        caption names this one image only (a reconstruction target is then well defined)."""
        indices = self._resample(indices, epoch)
        chosen, mismatched, flips = [], [], []
        for index in indices.tolist():
            draws = torch.randint(0, 2**62, (4,), generator=self._generator(epoch, index))
            own = self.captions[index]
            chosen.append(own[int(draws[0]) % len(own)])
            mismatched.append(self._mismatched(index, draws[1:3]))
            flips.append(self.flip and bool(draws[3] % 2))
        images = self.images[indices]
        if any(flips):
            images[torch.tensor(flips)] = images[torch.tensor(flips)].flip(-1)
        return {"images": uint8_to_float(images), "captions": chosen, "mismatched": mismatched,
                "single": torch.tensor([self._names_one_image(c) for c in chosen])}

    def preview(self, count: int) -> dict[str, Any]:
        """``count`` images spread evenly over the dataset with their first captions (shown
        in every sample grid) and a fixed mismatched caption each; same layout as
        :meth:`batch`."""
        chosen = spread(len(self), count)
        mismatched = [self._mismatched(i, torch.randint(
            0, 2**62, (2,), generator=self._generator(-1, i))) for i in chosen.tolist()]
        captions = [self.captions[i][0] for i in chosen.tolist()]
        return {"images": uint8_to_float(self.images[chosen]), "captions": captions,
                "mismatched": mismatched,
                "single": torch.tensor([self._names_one_image(c) for c in captions])}
