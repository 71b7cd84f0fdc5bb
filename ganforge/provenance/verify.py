"""``verify_image``: what an image says about where it came from.

Three kinds of evidence, strongest first: the invisible ganforge watermark (survives JPEG,
resizing, small crops; keyed, with a controlled false-positive rate), the PNG metadata that
``ganforge generate`` / ``translate`` / ``upscale`` write (trivially stripped or forged), and
the detector's probability (statistical; no cooperation from the generator needed).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, UnidentifiedImageError

from ganforge.errors import DataError
from ganforge.provenance import watermark
from ganforge.provenance.metadata import PREFIX

if TYPE_CHECKING:  # the detector needs torch: imported only when an image is scored
    from ganforge.provenance.detector import Detector

#: detector probability at or above which an image without other evidence is likely generated
LIKELY_THRESHOLD = 0.5
ImageSource = str | Path | bytes | Image.Image


@dataclass
class VerifyResult:
    """The evidence about one image and the verdict drawn from it."""

    source: str
    verdict: str  # "generated", "likely-generated" or "no-evidence"
    reason: str
    watermark: dict[str, Any]
    metadata: dict[str, str] = field(default_factory=dict)
    detector_probability: float | None = None
    size: tuple[int, int] = (0, 0)

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "verdict": self.verdict, "reason": self.reason,
                "watermark": self.watermark, "metadata": self.metadata,
                "detector_probability": (None if self.detector_probability is None
                                         else round(self.detector_probability, 4)),
                "size": list(self.size)}

    def summary(self) -> str:
        """A few lines for the console."""
        mark = self.watermark
        lines = [f"{self.source}: {self.verdict} ({self.reason})"]
        lines.append("  watermark: " + (f"found: ganforge, model id {mark['model_id']} "
                                        f"(score {mark['score']:.2f})" if mark["found"]
                                        else f"not found (score {mark['score']:.2f} < "
                                        f"{mark['threshold']})"))
        if self.metadata:
            shown = ", ".join(f"{k}={v}" for k, v in self.metadata.items())
            lines.append(f"  metadata: {shown}")
        else:
            lines.append("  metadata: none")
        if self.detector_probability is not None:
            lines.append(f"  detector: {self.detector_probability:.3f} probability generated")
        return "\n".join(lines)


@cache
def _default_detector() -> Detector:
    from ganforge.provenance.detector import Detector

    return Detector.from_pretrained()


def open_image(source: ImageSource) -> tuple[Image.Image, str]:
    """A loaded image and a name for it; unreadable input is a :class:`DataError`."""
    if isinstance(source, Image.Image):
        return source, "<image>"
    if isinstance(source, bytes | bytearray):
        stream, name = io.BytesIO(source), "<bytes>"
    else:
        path = Path(source)
        if not path.is_file():
            raise DataError(f"image {path} does not exist")
        stream, name = path, str(path)
    try:
        with Image.open(stream) as im:
            im.load()
            image = im.copy()
            image.info = dict(im.info)
            text = getattr(im, "text", None)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{name} is not a readable image ({exc})") from None
    if text:
        image.info.update(text)
    return image, name


def verify_image(source: ImageSource, detector: Detector | None = None,
                 use_detector: bool = True) -> VerifyResult:
    """Look for the watermark, ganforge metadata and the detector's opinion in one image
    (a path, the bytes of an image file, or a PIL image)."""
    image, name = open_image(source)
    metadata = {k[len(PREFIX):]: str(v) for k, v in image.info.items()
                if isinstance(k, str) and k.startswith(PREFIX)}
    mark = watermark.detect(image)
    probability = None
    if use_detector:
        probability = float((detector or _default_detector()).probability([image])[0])
    verdict, reason = _verdict(mark, metadata, probability)
    return VerifyResult(source=name, verdict=verdict, reason=reason, watermark=mark.as_dict(),
                        metadata=metadata, detector_probability=probability, size=image.size)


def _verdict(mark: watermark.WatermarkResult, metadata: dict[str, str],
             probability: float | None) -> tuple[str, str]:
    if mark.found:
        shipped = watermark.known_models().get(mark.model_id)
        name = f", the shipped {shipped}" if shipped else ""
        return "generated", f"ganforge watermark found (model id {mark.model_id:04x}{name})"
    if metadata:
        said = metadata.get("watermark")
        if said and said != "none":
            return ("likely-generated", "ganforge metadata says the image was watermarked, "
                    "but the mark is gone (edited, or the metadata is copied)")
        return ("likely-generated", "ganforge metadata present (written at generation, "
                "watermark turned off); metadata can be copied or forged")
    if probability is not None and probability >= LIKELY_THRESHOLD:
        return ("likely-generated", f"no watermark or metadata, but the detector gives "
                f"{probability:.2f}")
    return "no-evidence", "no watermark, no ganforge metadata" + (
        f", detector {probability:.2f}" if probability is not None else "")
