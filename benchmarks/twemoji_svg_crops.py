"""Real high-resolution flat emoji for the detector benchmarks: Twemoji rendered from their SVG
sources at 256 px, one random 64 px crop each (inside the central three quarters).

The detector's real sources hold flat emoji only at 64 px and high-resolution crops only of
Fluent 3D, so nothing tells it that a crisp, flat, zoomed-in patch can be real; upscaled
Twemoji crops are one of its generated families. This writes two real sets:

- ``OUT/twemoji-svg-crop``: ``--count`` Twemoji **not** among the upscaler family's sources,
  to train, calibrate and test on as another real source (``detector_probe.py --extra-real``);
- ``OUT/upscaler-paired-svg``: the upscaler family's own Twemoji, cropped where its crops were
  (``detector_lofo.py``'s ``upscaled_crops``, same seed): the true high-resolution picture of
  each upscaled crop, for testing only.

The SVGs come from the npm package ``@twemoji/svg@15.0.0`` (CC-BY 4.0, Twitter, Inc. and
contributors), fetched with ``npm pack`` unless ``--svg`` names its unpacked folder; rendering
needs ``cairosvg`` (PyPI) and the cairo library (Debian ``libcairo2``).

    python benchmarks/twemoji_svg_crops.py --out /tmp/det/real     # ~15 s
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from detector_lofo import random_crops

from ganforge.data.images import list_images
from ganforge.provenance.detector import on_white, sample_files

PACKAGE = "@twemoji/svg@15.0.0"
SIZE = 256


def svg_name(stem: str, folder: Path) -> Path | None:
    """The SVG of an emoji-datasource file stem ("0023-fe0f-20e3"): Twemoji's file names drop
    leading zeros and, for most emoji, the variation selector fe0f."""
    parts = stem.lower().split("-")
    for name in ("-".join(parts), "-".join(p.lstrip("0") for p in parts),
                 "-".join(p.lstrip("0") for p in parts if p != "fe0f")):
        if (folder / f"{name}.svg").is_file():
            return folder / f"{name}.svg"
    return None


def render(svg: Path) -> Image.Image:
    """An SVG rendered at 256 px, composited on white."""
    import cairosvg

    png = cairosvg.svg2png(url=str(svg), output_width=SIZE, output_height=SIZE)
    return on_white(Image.open(io.BytesIO(png)))


def fetch(into: Path) -> Path:
    """The unpacked npm package (its folder of SVGs)."""
    subprocess.run(["npm", "pack", PACKAGE, "--pack-destination", str(into)], check=True,
                   capture_output=True)
    with tarfile.open(next(into.glob("*.tgz"))) as tar:
        tar.extractall(into, filter="data")
    return into / "package"


def save(images: list[Image.Image], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        image.save(folder / f"{i:05d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--svg", type=Path, help=f"unpacked {PACKAGE} (default: npm pack)")
    parser.add_argument("--emoji", type=Path, default=Path("/work/shared/data/emoji/twitter/64"),
                        help="Twemoji whose ids may be drawn for the training source")
    parser.add_argument("--sources", type=Path, default=Path("/tmp/restyle/train/a/twitter"),
                        help="detector_lofo.py's --sources: the upscaler family's Twemoji")
    parser.add_argument("--per-family", type=int, default=500,
                        help="detector_lofo.py's --per-family")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        import cairosvg  # noqa: F401
    except (ImportError, OSError) as exc:
        raise SystemExit(f"rendering SVGs needs cairosvg and libcairo2 ({exc}): "
                         "pip install cairosvg; apt-get install libcairo2") from None
    with tempfile.TemporaryDirectory() as tmp:
        svg = args.svg or fetch(Path(tmp))
        # the upscaler's sources, as detector_lofo.py picks them, in its (reversed) order
        upscaled = sample_files(args.sources, args.per_family, args.seed)[::-1]
        paired = [svg_name(p.stem, svg) for p in upscaled]
        if any(p is None for p in paired):
            missing = [u.stem for u, p in zip(upscaled, paired, strict=True) if p is None]
            raise SystemExit(f"no SVG in {svg} for {missing[:5]} (of {len(missing)})")
        save(random_crops([render(p) for p in paired], args.seed), args.out / "upscaler-paired-svg")
        taken = {p.stem for p in upscaled}
        pool = [p for p in list_images(args.emoji)
                if p.stem not in taken and svg_name(p.stem, svg) is not None]
        if len(pool) < args.count:
            raise SystemExit(f"only {len(pool)} Twemoji with an SVG outside the upscaler's "
                             f"sources, asked for {args.count}")
        picked = np.random.default_rng(args.seed + 7).choice(len(pool), args.count,
                                                            replace=False)
        chosen = [svg_name(pool[i].stem, svg) for i in sorted(picked)]
        save(random_crops([render(p) for p in chosen], args.seed + 7),
             args.out / "twemoji-svg-crop")
    print(f"wrote {args.per_family} paired and {args.count} training crops under {args.out}")


if __name__ == "__main__":
    main()
