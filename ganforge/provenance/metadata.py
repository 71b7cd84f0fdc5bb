"""PNG text metadata naming how an image was made (prompt, seed, model, ganforge version).

Nothing written here names a place on the user's machine: a model is recorded by its name
(:func:`model_label`) and content id, never its folder's path, and an input file at most by its
base name when the user asks for it (``--metadata-source``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

import ganforge

if TYPE_CHECKING:  # the C2PA bindings are imported only when an image is signed
    from ganforge.provenance.c2pa import C2paSigner

PREFIX = "ganforge:"
#: the models shipped in the package: recorded as "ganforge default (NAME)"
ASSETS = Path(__file__).resolve().parents[1] / "assets"
#: fields an output writes for itself, never carried over from its input
OWN_FIELDS = ("watermark", "version")
#: fields where an older ganforge wrote local paths
PATH_FIELDS = ("source", "model", "style_reference")


def png_info(image: Image.Image, fields: dict[str, Any]) -> PngInfo:
    """PNG text chunks: ``fields``, the ganforge version, and the ganforge fields a pipeline
    put in ``image.info`` (whether and how the image is watermarked)."""
    info = PngInfo()
    carried = {k[len(PREFIX):]: v for k, v in image.info.items()
               if isinstance(k, str) and k.startswith(PREFIX)}
    for key, value in {**carried, **fields, "version": ganforge.__version__}.items():
        if value is not None:
            info.add_itxt(f"{PREFIX}{key}", str(value))
    return info


def save_png(image: Image.Image, path: str | Path, fields: dict[str, Any],
             c2pa: C2paSigner | None = None, ingredient: str | Path | None = None) -> Path:
    """Save ``image`` as PNG with ``fields`` as text chunks (see :func:`png_info`), then, with
    a ``c2pa`` signer, embed a signed C2PA manifest (``ingredient``: the input it was made from)."""
    info = png_info(image, fields)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", pnginfo=info)
    if c2pa is not None:
        c2pa.sign_file(path, fields, ingredient)
    return path


def read_png_metadata(path: str | Path) -> dict[str, str]:
    """The ganforge fields of a PNG written by :func:`save_png` (empty when there are none)."""
    with Image.open(path) as im:
        text = getattr(im, "text", {}) or {}
    return {k[len(PREFIX):]: v for k, v in text.items() if k.startswith(PREFIX)}


def read_image_info(path: str | Path) -> dict[str, Any]:
    """``image.info`` of an image file with all its PNG text chunks (also those after the
    pixels), for :func:`carried_fields`; empty when the file cannot be read."""
    try:
        with Image.open(path) as im:
            return {**im.info, **(getattr(im, "text", None) or {})}
    except (OSError, SyntaxError, ValueError):
        return {}


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", name).strip("-.")[:64] or "model"


def model_label(folder: str | Path) -> str:
    """What metadata records about the model saved in ``folder``, without its location: a
    shipped model is "ganforge default (NAME)", any other its folder's name (the run folder's
    for ``RUN/model``) in letters, digits, '.', '_' and '-'."""
    path = Path(folder).resolve()
    if path.parent == ASSETS:
        return f"ganforge default ({path.name})"
    return _safe_name(path.parent.name if path.name == "model" else path.name)


def model_fields(pipe: Any) -> dict[str, str]:
    """The fields naming the model that made an image: its :func:`model_label` and its
    content id (the 16-bit hash of its weights that its watermark carries)."""
    return {"model": model_label(pipe.name), "model_id": f"{pipe.watermark_id:04x}"}


def source_fields(path: str | Path, record: bool) -> dict[str, str]:
    """``{"source": base name}`` when the user opted in (``--metadata-source``), else nothing."""
    return {"source": Path(path).name} if record else {}


def _is_local_path(value: str) -> bool:
    return "\n" not in value and (PurePosixPath(value).is_absolute()
                                  or PureWindowsPath(value).is_absolute()
                                  or value.startswith("~"))


def carried_fields(info: Mapping[str, Any]) -> dict[str, str]:
    """The ganforge fields of an input image (``image.info`` or PNG text) that an output made
    from it keeps: all but its watermark record and version (the output has its own). A local
    path that an older ganforge wrote is cut to its last part."""
    carried = {}
    for key, value in info.items():
        if not (isinstance(key, str) and key.startswith(PREFIX)):
            continue
        name, text = key[len(PREFIX):], str(value)
        if name in OWN_FIELDS:
            continue
        if name in PATH_FIELDS and _is_local_path(text):
            text = PureWindowsPath(text).name if "\\" in text else PurePosixPath(text).name
        carried[name] = text
    return carried


def add_step(fields: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    """``fields`` with ``step`` appended to its ``steps`` record: a JSON list of what was done
    to the image after it was made, oldest first (e.g. an upscale)."""
    try:
        steps = json.loads(fields.get("steps") or "[]")
    except json.JSONDecodeError:
        steps = []
    steps = steps if isinstance(steps, list) else []
    return {**fields, "steps": json.dumps([*steps, step])}


def upscale_step(pipe: Any, size: tuple[int, int], label: str | None = None) -> dict[str, Any]:
    """The ``steps`` entry of an upscale by ``pipe`` (an UpscalePipeline) of a
    ``size`` = (width, height) image; ``label`` names the model (default: :func:`model_label`)."""
    return {"step": "upscale", "model": label or model_label(pipe.name),
            "model_id": f"{pipe.watermark_id:04x}", "scale": pipe.scale,
            "from": f"{size[0]}x{size[1]}"}


def upscaled_fields(source_info: Mapping[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    """Fields of an upscaled image: its input's ganforge fields carried forward (prompt, seed,
    model, ...) with ``step`` added to ``steps``; an input without any is recorded as made by
    the upscaler (``model``, ``model_id``, ``scale``, and ``source`` when the step names it)
    with that one step."""
    carried = carried_fields(source_info)
    if not carried:
        carried = {k: v for k, v in step.items() if k not in ("step", "from")}
    return add_step(carried, step)
