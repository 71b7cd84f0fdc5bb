"""``verify_image``: what an image says about where it came from.

Four kinds of evidence, strongest first: the invisible ganforge watermark (survives JPEG,
resizing, small crops; keyed, with a controlled false-positive rate), the PNG metadata that
``ganforge generate`` / ``translate`` / ``upscale`` write (trivially stripped or forged), and
the detector's probability (statistical; no cooperation from the generator needed); beside
them, any signed C2PA manifest (valid, untrusted signer, invalid or none).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, UnidentifiedImageError

from ganforge.errors import DataError, MissingDependency
from ganforge.provenance import watermark
from ganforge.provenance.c2pa import MIME_TYPES, TRAINED_ALGORITHMIC_MEDIA, read_manifest
from ganforge.provenance.metadata import PREFIX

if TYPE_CHECKING:  # the detector needs torch: imported only when an image is scored
    from ganforge.provenance.detector import Detector

#: detector probability at or above which an image without other evidence is likely generated,
#: for detectors without a calibrated threshold of their own (``Detector.threshold``)
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
    #: the C2PA manifest's state ("valid", "untrusted signer", "invalid", "none", or "not
    #: checked") and what it says; see :func:`ganforge.provenance.c2pa.read_manifest`
    c2pa: dict[str, Any] = field(default_factory=lambda: {"state": "not checked"})

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "verdict": self.verdict, "reason": self.reason,
                "watermark": self.watermark, "metadata": self.metadata,
                "detector_probability": (None if self.detector_probability is None
                                         else round(self.detector_probability, 4)),
                "size": list(self.size), "c2pa": self.c2pa}

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
        lines.append("  c2pa: " + _c2pa_line(self.c2pa))
        if self.detector_probability is not None:
            lines.append(f"  detector: {self.detector_probability:.3f} probability generated")
        return "\n".join(lines)


def _c2pa_line(manifest: dict[str, Any]) -> str:
    state = manifest["state"]
    if state in ("valid", "untrusted signer"):
        said = ", ".join(f"{k[len('ganforge.'):] if k.startswith('ganforge.') else k}={v}"
                         for k, v in manifest.get("parameters", {}).items())
        source = (manifest.get("digital_source_type") or "").rsplit("/", 1)[-1]
        return (f"{state} manifest by {manifest.get('claim_generator') or '?'}, signed by "
                f"{manifest.get('signer') or '?'}" + (f", {source}" if source else "")
                + (f" ({said})" if said else ""))
    if state == "invalid":
        return "invalid manifest (" + ", ".join(manifest.get("failures") or ["?"]) + ")"
    return state + (f" ({manifest['reason']})" if manifest.get("reason") else "")


def _read_c2pa(source: ImageSource, trusted: str | None = None) -> dict[str, Any]:
    """The C2PA evidence in a file or bytes (a PIL image has lost any manifest); ``trusted``:
    PEM roots trusted beside the library's list."""
    if isinstance(source, Image.Image):
        return {"state": "not checked", "reason": "a decoded image carries no manifest"}
    data = bytes(source) if isinstance(source, bytes | bytearray) else Path(source).read_bytes()
    mime = None if isinstance(source, bytes | bytearray) else MIME_TYPES.get(
        Path(source).suffix.lower())
    try:
        return read_manifest(data, mime, trusted)
    except MissingDependency as exc:
        return {"state": "not checked", "reason": str(exc)}


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
                 use_detector: bool = True, c2pa_trust: str | None = None) -> VerifyResult:
    """Look for the watermark, ganforge metadata, a C2PA manifest and the detector's opinion
    in one image (a path, the bytes of an image file, or a PIL image). ``c2pa_trust``: PEM
    root certificates (the text, see ``c2pa.trust_anchors``) whose signers count as trusted."""
    image, name = open_image(source)
    metadata = {k[len(PREFIX):]: str(v) for k, v in image.info.items()
                if isinstance(k, str) and k.startswith(PREFIX)}
    mark = watermark.detect(image)
    probability, threshold = None, LIKELY_THRESHOLD
    if use_detector:
        detector = detector or _default_detector()
        probability = float(detector.probability([image])[0])
        threshold = detector.threshold
    manifest = _read_c2pa(source, c2pa_trust)
    verdict, reason = _verdict(mark, metadata, probability, manifest, threshold)
    return VerifyResult(source=name, verdict=verdict, reason=reason, watermark=mark.as_dict(),
                        metadata=metadata, detector_probability=probability, size=image.size,
                        c2pa=manifest)


def _verdict(mark: watermark.WatermarkResult, metadata: dict[str, str],
             probability: float | None, manifest: dict[str, Any],
             threshold: float = LIKELY_THRESHOLD) -> tuple[str, str]:
    if mark.found:
        shipped = watermark.known_models().get(mark.model_id)
        name = f", the shipped {shipped}" if shipped else ""
        return "generated", f"ganforge watermark found (model id {mark.model_id:04x}{name})"
    if (manifest["state"] in ("valid", "untrusted signer")
            and manifest.get("digital_source_type") == TRAINED_ALGORITHMIC_MEDIA):
        return ("likely-generated", f"no watermark, but a C2PA manifest ({manifest['state']}) "
                "says trained algorithmic media")
    if metadata:
        said = metadata.get("watermark")
        if said and said != "none":
            return ("likely-generated", "ganforge metadata says the image was watermarked, "
                    "but the mark is gone (edited, or the metadata is copied)")
        return ("likely-generated", "ganforge metadata present (written at generation, "
                "watermark turned off); metadata can be copied or forged")
    if probability is not None and probability >= threshold:
        return ("likely-generated", f"no watermark or metadata, but the detector gives "
                f"{probability:.2f}")
    return "no-evidence", "no watermark, no ganforge metadata" + (
        f", detector {probability:.2f}" if probability is not None else "")
