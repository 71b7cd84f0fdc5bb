"""``ganforge serve``: the HTTP API (FastAPI) and the web page, on one loopback port by default.

Every image comes out of a pipeline (``Pipeline.to_images``, where provenance marks are added)
and leaves as a PNG carrying ganforge metadata. Clients choose models by the names the server
lists; nothing a client sends is ever used as a path. Model calls run on one worker thread;
concurrent generate requests are micro-batched (see :mod:`ganforge.serve.batching`).
"""

from __future__ import annotations

import base64
import hmac
import io
import ipaddress
import logging
import re
import secrets
import socket
import sys
import time
import warnings
import zipfile
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

import ganforge
from ganforge.errors import CheckpointError, ConfigError, GanforgeError, MissingDependency
from ganforge.provenance.c2pa import C2paSigner
from ganforge.provenance.metadata import png_info, upscale_step, upscaled_fields
from ganforge.serve.batching import MicroBatcher, ModelWorker, QueueFull

if TYPE_CHECKING:
    from ganforge.pipelines import Pipeline, TextToImagePipeline

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
MAX_PROMPT_CHARS = 300
MAX_IMAGES_PER_REQUEST = 16
MAX_SEED = 2**31 - 1
UPLOAD_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP",
                "image/gif": "GIF", "image/bmp": "BMP"}
#: uploads that declare no type: their bytes decide (and must still be one of the formats)
UNTYPED_UPLOADS = {"", "application/octet-stream"}
#: how files of the accepted formats begin (WebP: RIFF....WEBP, checked apart)
IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")
API_KEY_HEADER = "X-API-Key"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DEFAULT_MODEL_LABEL = "ganforge default (text2image-emoji-64)"
#: one line per request (method, path, status, milliseconds); ``serve`` prints it to stderr
ACCESS_LOG = logging.getLogger("ganforge.serve.access")
#: what a server without an image-to-image model tells its clients
NO_TRANSLATOR_HELP = ("a plain `ganforge serve` serves the shipped restyle model (flat emoji -> "
                      "3D, ganforge/assets/restyle-3d-64; reinstall ganforge if that folder is "
                      "missing), and `ganforge serve --translator RUN` serves your own "
                      "(e.g. trained with `ganforge train pix2pix`)")


# ------------------------------------------------------------------------- settings
@dataclass
class ServeConfig:
    """What a server serves and the limits it enforces.

    ``models`` / ``translators``: (name, path) pairs; the first text-to-image model is the
    default. ``upscaler``: a path, or None for the shipped default when there is one.
    ``c2pa``: sign every PNG the server hands out with a C2PA manifest (None: no manifest).
    ``c2pa_trust``: PEM root certificates whose signers /api/verify counts as trusted.
    """

    models: list[tuple[str, str]] = field(default_factory=list)
    translators: list[tuple[str, str]] = field(default_factory=list)
    upscaler: str | None = None
    api_key: str | None = None
    device: str = "cpu"
    batch_window_ms: float = 15.0
    max_batch: int = 64
    queue_size: int = 64
    max_upload_bytes: int = 8 * 1024 * 1024
    max_pixels: int = 4096 * 4096
    max_upscale_side: int = 512
    c2pa: C2paSigner | None = None
    c2pa_trust: str | None = None

    def validate(self) -> ServeConfig:
        checks = [(self.batch_window_ms >= 0, f"batch window must be >= 0 ms, got "
                                              f"{self.batch_window_ms}"),
                  (self.max_batch >= 1, f"max batch must be >= 1, got {self.max_batch}"),
                  (self.queue_size >= 1, f"queue size must be >= 1, got {self.queue_size}"),
                  (self.max_upload_bytes >= 1024, f"upload limit must be >= 1024 bytes, got "
                                                  f"{self.max_upload_bytes}"),
                  (self.max_pixels >= 64 * 64, f"pixel limit must be >= 4096, got "
                                               f"{self.max_pixels}")]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.c2pa is not None:  # a bad key or certificate fails before any model loads
            C2paSigner.from_options(str(self.c2pa.key), str(self.c2pa.cert))
        return self


def parse_named_path(value: str) -> tuple[str, str]:
    """``NAME=PATH`` or ``PATH`` (named after its folder, or the run folder for ``RUN/model``)."""
    if "=" in value and NAME_PATTERN.match(value.split("=", 1)[0]):
        name, path = value.split("=", 1)
    else:
        path = value
        folder = Path(value.rstrip("/\\"))
        name = folder.parent.name if folder.name == "model" and folder.parent.name else folder.name
        name = re.sub(r"[^A-Za-z0-9._-]", "-", name).strip("-.")[:64] or "model"
    if not NAME_PATTERN.match(name):
        raise ConfigError(f"model name {name!r} must be letters, digits, '.', '_' or '-' "
                          f"(at most 64)")
    return name, path


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------- errors
class ApiError(Exception):
    """An answer other than success: HTTP status and a one-line message for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status,
                        headers=headers)


class ErrorBody(BaseModel):
    error: str = Field(description="what is wrong, in one line")
    status: int


ERRORS = {code: {"model": ErrorBody, "description": text} for code, text in {
    401: "missing or wrong API key", 404: "unknown model", 413: "upload or image too large",
    415: "not an accepted image type", 422: "invalid input (the message says which)",
    501: "feature not available on this server", 503: "queue full; retry after Retry-After s",
}.items()}


class BodyLimit:
    """ASGI middleware: refuse request bodies larger than ``limit`` bytes with 413, by the
    Content-Length header when there is one and by counting otherwise (chunked uploads)."""

    def __init__(self, app: Callable[..., Awaitable[None]], limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[..., Any],
                       send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"request body larger than the {self.limit} byte limit"
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    too_big = int(value) > self.limit
                except ValueError:
                    too_big = False
                if too_big:
                    await _error(413, message)(scope, receive, send)
                    return
        received, started = 0, False

        async def counting_receive() -> MutableMapping[str, Any]:
            nonlocal received
            event = await receive()
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > self.limit:
                    raise _BodyTooLarge
            return event

        async def tracking_send(event: MutableMapping[str, Any]) -> None:
            nonlocal started
            started = started or event["type"] == "http.response.start"
            await send(event)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await _error(413, message)(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


class RequestLog:
    """ASGI middleware: one line per HTTP request on :data:`ACCESS_LOG`: method, path (as
    sent, percent-encoded, without the query), status and milliseconds."""

    def __init__(self, app: Callable[..., Awaitable[None]]):
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[..., Any],
                       send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500  # 500 unless a response starts

        async def tracking_send(event: MutableMapping[str, Any]) -> None:
            nonlocal status
            if event["type"] == "http.response.start":
                status = event["status"]
            await send(event)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            raw = scope.get("raw_path") or scope["path"].encode("utf-8", "replace")
            path = raw.decode("ascii", "backslashreplace")
            ACCESS_LOG.info("%s %s %d %.1f ms", scope["method"], path, status,
                            (time.perf_counter() - started) * 1000)


# --------------------------------------------------------------------------- images
def png_bytes(image: Image.Image, fields: dict[str, Any], c2pa: C2paSigner | None = None,
              ingredient: bytes | None = None) -> bytes:
    """``image`` as PNG bytes with ``fields`` (and the ganforge version) as text chunks,
    like :func:`ganforge.provenance.metadata.save_png`: the ganforge fields a pipeline put
    in ``image.info`` (its watermark) are written too. With a ``c2pa`` signer, a signed C2PA
    manifest is embedded (``ingredient``: the uploaded file it was made from, if any)."""
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=png_info(image, fields))
    if c2pa is None:
        return out.getvalue()
    kind = "image/png"
    if ingredient is not None:  # an upload decode_upload accepted: its header names its type
        with Image.open(io.BytesIO(ingredient)) as parent:
            kind = Image.MIME.get(parent.format or "", kind)
    return c2pa.sign_bytes(out.getvalue(), fields, ingredient=ingredient, ingredient_type=kind)


def looks_like_image(data: bytes) -> bool:
    """Whether ``data`` starts like a file of an accepted format (its magic bytes): a file
    that does but cannot be decoded is a corrupt image (422), one that does not is no image
    at all (415)."""
    return (data.startswith(IMAGE_SIGNATURES)
            or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"))


def decode_upload(data: bytes, content_type: str | None, config: ServeConfig) -> Image.Image:
    """An uploaded file as a loaded PIL image, or ApiError saying what is wrong with it.

    The pixel count is checked from the header before the pixels are decoded, and PIL's own
    decompression-bomb limit is kept (its warning counts as an error here)."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind not in UPLOAD_TYPES and kind not in UNTYPED_UPLOADS:
        raise ApiError(415, f"upload has content type {kind!r}; expected one of "
                            f"{', '.join(UPLOAD_TYPES)} (or none, to be sniffed)")
    if not data:
        raise ApiError(422, "uploaded image is empty (0 bytes)")
    if len(data) > config.max_upload_bytes:
        raise ApiError(413, f"uploaded image is {len(data)} bytes; the limit is "
                            f"{config.max_upload_bytes}")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=list(dict.fromkeys(
                UPLOAD_TYPES.values())))
            width, height = image.size
            if width < 1 or height < 1 or width * height > config.max_pixels:
                raise ApiError(413, f"image is {width}x{height} = {width * height} pixels; "
                                    f"at most {config.max_pixels} are accepted")
            image.load()
        except ApiError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ApiError(413, f"image refused as a decompression bomb ({exc})") from None
        except Exception as exc:  # any decoder failure on untrusted bytes is the client's
            if not looks_like_image(data):
                raise ApiError(415, "uploaded file is not an image: expected PNG, JPEG, WebP, "
                                    "GIF or BMP") from None
            why = ("unknown format" if isinstance(exc, UnidentifiedImageError)
                   else f"{type(exc).__name__}: {exc}")
            raise ApiError(422, f"uploaded image is corrupt ({why})"[:300]) from None
    return image


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)
           ) -> Image.Image:
    """RGB with transparency composited onto ``background``; 16-bit and float modes mapped."""
    from ganforge.data.images import flatten_alpha

    try:
        if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            image = image.convert("F").point(lambda v: v / 256 if v > 255 else v).convert("L")
        return flatten_alpha(image, background)
    except Exception as exc:
        raise ApiError(422, f"image mode {image.mode} cannot be converted to RGB ({exc})"
                       ) from None


def to_rgb_keeping_alpha(image: Image.Image) -> Image.Image:
    """RGBA when the image has transparent pixels (the pipelines carry the alpha through to
    their outputs), else RGB as :func:`to_rgb` makes it."""
    from ganforge.data.images import alpha_channel

    if image.mode in ("RGBA", "LA", "PA", "P") and alpha_channel(image) is not None:
        return image.convert("RGBA")
    return to_rgb(image)


def centre_square(image: Image.Image) -> Image.Image:
    """The largest centred square (so a 1 x 100000 strip cannot become a huge resize)."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))


# ----------------------------------------------------------------------------- API
class GenerateRequest(BaseModel):
    """Images from a text prompt."""

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS,
                        description="what to draw", examples=["red heart"])
    n: int = Field(4, ge=1, le=MAX_IMAGES_PER_REQUEST, description="number of images")
    seed: int | None = Field(None, ge=0, le=MAX_SEED,
                             description="same prompt, seed and model: same images; "
                                         "omitted: the server picks one and returns it")
    truncation: float | None = Field(None, ge=0.1, le=10, allow_inf_nan=False,
                                     description="truncated noise: less variety (below 0.1 "
                                                 "its rejection sampling would stall)")
    model: str | None = Field(None, max_length=64,
                              description="a text-to-image model name from /api/models")
    skin_tones: Literal["as-named", "varied"] | None = Field(
        None, description="models with the skin_tones option (/api/models: options): "
                          "'varied' spreads people prompts that name no skin tone over the "
                          "default yellow and the five tones, by seed")
    format: Literal["json", "zip"] = Field("json", description="JSON with base64 PNGs, "
                                                                "or a zip of PNGs")


class ImageOut(BaseModel):
    index: int
    seed: int
    png_base64: str = Field(description="PNG with ganforge metadata, base64")


class GenerateResponse(BaseModel):
    model: str
    prompt: str
    seed: int
    images: list[ImageOut]


class ImageResponse(BaseModel):
    model: str
    width: int
    height: int
    png_base64: str
    direction: str | None = None
    style: str | None = None


class ModelInfo(BaseModel):
    name: str
    task: str
    family: str
    size: int | None = None
    default: bool = False
    directions: list[str] = []
    styles: list[str] = []
    options: list[str] = Field([], description="sampling settings /api/generate takes for "
                                               "this model (e.g. skin_tones)")
    trained_steps: int = 0
    card: str | None = Field(None, description="URL of the model card (Markdown: what it was "
                                               "trained on, how well it does), when it has one")


class ModelList(BaseModel):
    models: list[ModelInfo]


class Health(BaseModel):
    status: str
    version: str
    models: int
    queue: int = Field(description="requests waiting for or being served by the model thread")
    queue_limit: int
    auth_required: bool
    upscale: bool
    verify: bool
    generate_batches: int = Field(description="model calls made for generate requests")
    generate_requests: int = Field(description="generate requests those calls served")


@dataclass
class ServedModel:
    name: str
    task: str
    pipeline: Pipeline
    label: str
    default: bool = False

    def card_path(self) -> Path | None:
        """The model card (README.md) saved beside the model's weights, when there is one."""
        card = Path(self.pipeline.name) / "README.md"
        return card if card.is_file() else None

    def describe(self) -> ModelInfo:
        from ganforge.inference import ImageToImageModel

        model = self.pipeline.model
        translator = isinstance(model, ImageToImageModel)
        return ModelInfo(name=self.name, task=self.task, family=model.kind, size=model.size,
                         default=self.default,
                         directions=list(model.directions) if translator else [],
                         styles=list(model.styles) if translator else [],
                         options=[o for o in getattr(model, "sampling_options", ())
                                  if o in API_SAMPLING_OPTIONS],
                         trained_steps=model.trained_steps,
                         card=f"/api/models/{self.name}/card" if self.card_path() else None)


#: the models' sampling settings the HTTP API offers (fields of GenerateRequest)
API_SAMPLING_OPTIONS = ("skin_tones",)


@dataclass
class GenerateJob:
    prompt: str
    n: int
    seed: int
    truncation: float | None
    options: tuple[tuple[str, Any], ...] = ()  # sampling settings, (name, value) sorted


def generate_batch(pipe: TextToImagePipeline, jobs: list[GenerateJob]) -> list[list[Image.Image]]:
    """One forward pass for the requests that share sampling settings: each job's images are
    those ``pipe(job.prompt, num_images=job.n, seed=job.seed, **options)`` gives (same noise,
    same text)."""
    import torch

    out: dict[int, list[Image.Image]] = {}
    for options in dict.fromkeys(job.options for job in jobs):
        group = [(i, job) for i, job in enumerate(jobs) if job.options == options]
        noise = torch.cat([pipe.noise(job.n, job.seed, job.truncation) for _, job in group])
        images = pipe.to_images(pipe.generate_prompts(
            [job.prompt for _, job in group for _ in range(job.n)], noise, **dict(options)))
        start = 0
        for i, job in group:
            out[i] = images[start:start + job.n]
            start += job.n
    return [out[i] for i in range(len(jobs))]


def _slug(text: str, limit: int = 40) -> str:
    slug = "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")
    return "-".join(filter(None, slug.split("-")))[:limit] or "prompt"


class Server:
    """The models a server holds, its model thread and its generate batchers."""

    def __init__(self, config: ServeConfig):
        from ganforge.pipelines import (
            DEFAULT_MODEL,
            DEFAULT_TRANSLATOR,
            ImageToImagePipeline,
            TextToImagePipeline,
        )

        self.config = config.validate()
        self.models: dict[str, ServedModel] = {}
        text_models = config.models or [("default", str(DEFAULT_MODEL))]
        for index, (name, path) in enumerate(text_models):
            pipe = TextToImagePipeline.from_pretrained(path, device=config.device)
            label = DEFAULT_MODEL_LABEL if Path(path) == DEFAULT_MODEL else name
            self._add(ServedModel(name, "text-to-image", pipe, label, default=index == 0))
        translators = config.translators or (
            [("restyle", str(DEFAULT_TRANSLATOR))] if DEFAULT_TRANSLATOR.exists() else [])
        for name, path in translators:
            pipe = ImageToImagePipeline.from_pretrained(path, device=config.device)
            label = (f"ganforge default ({DEFAULT_TRANSLATOR.name})"
                     if Path(path) == DEFAULT_TRANSLATOR else name)
            self._add(ServedModel(name, "image-to-image", pipe, label,
                                  default=not self.by_task("image-to-image")))
        self.upscaler = self._load_upscaler(config.upscaler)
        if self.upscaler is not None:
            self._add(self.upscaler)
        self.worker = ModelWorker(config.queue_size)
        self.batchers = {
            m.name: MicroBatcher(self.worker, lambda jobs, pipe=m.pipeline:
                                 generate_batch(pipe, jobs),
                                 window_s=config.batch_window_ms / 1000,
                                 max_batch=config.max_batch, size_of=lambda job: job.n)
            for m in self.by_task("text-to-image")}

    def _add(self, model: ServedModel) -> None:
        if model.name in self.models:
            raise ConfigError(f"model name {model.name!r} is given twice; name them "
                              f"NAME=PATH to tell them apart")
        self.models[model.name] = model

    def _load_upscaler(self, given: str | None) -> ServedModel | None:
        """``--upscaler [NAME=]PATH``, else the shipped default when this ganforge has one."""
        try:
            from ganforge.pipelines import DEFAULT_UPSCALER, UpscalePipeline
        except ImportError:
            if given is not None:
                raise MissingDependency("--upscaler given, but this ganforge has no "
                                        "UpscalePipeline") from None
            return None
        if given is not None:
            name, path = parse_named_path(given)
            label = name
        elif Path(DEFAULT_UPSCALER).exists():
            name, path = "upscaler", str(DEFAULT_UPSCALER)
            label = f"ganforge default ({Path(DEFAULT_UPSCALER).name})"
        else:
            return None
        pipe = UpscalePipeline.from_pretrained(path, device=self.config.device)
        return ServedModel(name, "upscale", pipe, label, default=True)

    def by_task(self, task: str) -> list[ServedModel]:
        return [m for m in self.models.values() if m.task == task]

    def pick(self, name: str | None, task: str) -> ServedModel:
        """The model ``name`` serving ``task``, or the default for that task."""
        if name:
            model = self.models.get(name)
            if model is None or model.task != task:
                known = ", ".join(m.name for m in self.by_task(task)) or "none"
                raise ApiError(404, f"no {task} model named {name!r}; this server has: "
                                    f"{known}")
            return model
        candidates = self.by_task(task)
        if not candidates:
            raise ApiError(501 if task == "upscale" else 404,
                           f"this server has no {task} model" + (
                               f": {NO_TRANSLATOR_HELP}" if task == "image-to-image" else ""))
        return next((m for m in candidates if m.default), candidates[0])


def create_app(config: ServeConfig | None = None) -> FastAPI:
    """The FastAPI application: API under ``/api``, the web page at ``/``."""
    server = Server(config or ServeConfig())
    cfg = server.config
    app = FastAPI(title="ganforge", version=ganforge.__version__,
                  description="Generate, translate, upscale and verify images with ganforge "
                              "models. Errors are JSON: {\"error\": ..., \"status\": ...}.",
                  docs_url=None, redoc_url=None)  # their pages load assets from a CDN
    app.state.server = server
    app.add_middleware(BodyLimit, limit=cfg.max_upload_bytes + 64 * 1024)
    app.add_middleware(RequestLog)  # outermost: it sees the 413s of BodyLimit too
    static = {path.name: path.read_bytes() for path in STATIC_DIR.iterdir()
              if path.suffix in STATIC_TYPES}
    key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                              description="needed when the server was started with --api-key")

    async def require_key(key: str | None = Depends(key_header)) -> None:
        if cfg.api_key and not hmac.compare_digest((key or "").encode(),
                                                   cfg.api_key.encode()):
            raise ApiError(401, f"missing or wrong API key: send it in the {API_KEY_HEADER} "
                                f"header")

    guarded = [Depends(require_key)]

    async def encode(image: Image.Image, fields: dict[str, Any],
                     ingredient: bytes | None = None) -> bytes:
        """An answer's PNG (:func:`png_bytes`); signing one takes ~0.1 s, so it runs off the
        event loop."""
        if cfg.c2pa is None:
            return png_bytes(image, fields)
        return await run_in_threadpool(png_bytes, image, fields, cfg.c2pa, ingredient)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.headers)

    @app.exception_handler(QueueFull)
    async def queue_full(_: Request, exc: QueueFull) -> JSONResponse:
        return _error(503, str(exc), {"Retry-After": str(exc.retry_after)})

    @app.exception_handler(GanforgeError)
    async def user_error(_: Request, exc: GanforgeError) -> JSONResponse:
        return _error(422, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query"))
            parts.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
        return _error(422, "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def bug(_: Request, exc: Exception) -> JSONResponse:  # ours, never the client's
        return _error(500, f"internal error ({type(exc).__name__}); see the server log")

    # ---------------------------------------------------------------- page
    def _static(name: str) -> Response:
        if name not in static:  # only files shipped in the package, never a client path
            raise ApiError(404, f"no page asset named {name!r}")
        return Response(static[name], media_type=STATIC_TYPES[Path(name).suffix],
                        headers={"Content-Security-Policy":
                                 "default-src 'self'; img-src 'self' data: blob:; "
                                 "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
                                 "X-Content-Type-Options": "nosniff",
                                 "Cache-Control": "no-cache"})

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return _static("index.html")

    @app.get("/static/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        return _static(name)

    # ----------------------------------------------------------------- API
    @app.get("/api/health", response_model=Health, tags=["server"])
    async def health() -> Health:
        """Liveness and load: how many requests the model thread has waiting."""
        return Health(status="ok", version=ganforge.__version__, models=len(server.models),
                      queue=server.worker.pending, queue_limit=cfg.queue_size,
                      auth_required=bool(cfg.api_key), upscale=server.upscaler is not None,
                      verify=_verify_function() is not None,
                      generate_batches=sum(b.stats.batches for b in server.batchers.values()),
                      generate_requests=sum(b.stats.items for b in server.batchers.values()))

    @app.get("/api/models", response_model=ModelList, dependencies=guarded,
             responses={401: ERRORS[401]}, tags=["server"])
    async def models() -> ModelList:
        """The models this server holds, by the names requests use."""
        return ModelList(models=[m.describe() for m in server.models.values()])

    @app.get("/api/models/{name}/card", dependencies=guarded,
             responses={401: ERRORS[401], 404: ERRORS[404],
                        200: {"content": {"text/markdown": {}}, "description": "Markdown"}},
             response_class=Response, tags=["server"])
    async def model_card(name: str) -> Response:
        """A served model's model card (Markdown): what it was trained on, how well it does
        and where it fails."""
        served = server.models.get(name)
        card = served.card_path() if served is not None else None
        if card is None:
            with_cards = [m.name for m in server.models.values() if m.card_path()]
            raise ApiError(404, f"no model card for {name[:64]!r}; models with one: "
                                f"{', '.join(with_cards) or 'none'}")
        return Response(card.read_bytes(), media_type="text/markdown; charset=utf-8")

    @app.post("/api/generate", response_model=GenerateResponse, dependencies=guarded,
              responses={**{c: ERRORS[c] for c in (401, 404, 413, 422, 503)},
                         200: {"content": {"application/zip": {}},
                               "description": "JSON with base64 PNGs, or a zip of PNGs"}},
              tags=["images"])
    async def generate(request: GenerateRequest) -> Any:
        """Images for a prompt; concurrent requests share forward passes (micro-batching)."""
        from ganforge.text import check_prompts

        model = server.pick(request.model, "text-to-image")
        try:
            prompt = check_prompts(request.prompt)[0]
        except ConfigError:
            raise ApiError(422, "prompt is empty or only whitespace; expected some text"
                           ) from None
        seed = request.seed if request.seed is not None else secrets.randbelow(MAX_SEED)
        model.pipeline.noise(1, seed, request.truncation)  # settings the model refuses: 422
        options = tuple((name, getattr(request, name)) for name in API_SAMPLING_OPTIONS
                        if getattr(request, name) is not None)
        refused = [name for name, _ in options
                   if name not in getattr(model.pipeline.model, "sampling_options", ())]
        if refused:
            raise ApiError(422, f"model {model.name} ({model.pipeline.model.kind}) takes no "
                           f"{', '.join(refused)} setting; see options in /api/models")
        images = await server.batchers[model.name].submit(
            GenerateJob(prompt, request.n, seed, request.truncation, options))
        fields = {"model": model.label, "model_id": f"{model.pipeline.watermark_id:04x}",
                  "prompt": prompt, "seed": seed, "truncation": request.truncation,
                  **dict(options)}
        pngs = [await encode(image, {**fields, "index": j}) for j, image in enumerate(images)]
        if request.format == "zip":
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
                for j, data in enumerate(pngs):
                    archive.writestr(f"{_slug(prompt)}_s{seed}_{j:03d}.png", data)
            return Response(buffer.getvalue(), media_type="application/zip", headers={
                "Content-Disposition": f'attachment; filename="{_slug(prompt)}_s{seed}.zip"'})
        return GenerateResponse(model=model.name, prompt=prompt, seed=seed, images=[
            ImageOut(index=j, seed=seed, png_base64=base64.b64encode(data).decode())
            for j, data in enumerate(pngs)])

    def _image_answer(data: bytes, fmt: str, body: ImageResponse) -> Response:
        if fmt == "json":
            return JSONResponse(body.model_dump())
        return Response(data, media_type="image/png")

    image_200 = {200: {"content": {"image/png": {}},
                       "description": "the PNG (or JSON with it base64 when format=json)"}}
    upload_errors = {c: ERRORS[c] for c in (401, 404, 413, 415, 422, 503)}

    @app.post("/api/translate", response_model=ImageResponse, dependencies=guarded,
              responses={**upload_errors, **image_200}, tags=["images"])
    async def translate(
        image: Annotated[UploadFile, File(description="PNG, JPEG, WebP, GIF or BMP")],
        model: Annotated[str | None, Form(max_length=64)] = None,
        direction: Annotated[str | None, Form(max_length=64)] = None,
        style: Annotated[str | None, Form(max_length=64)] = None,
        format: Annotated[Literal["png", "json"], Form()] = "png",
    ) -> Response:
        """Translate or restyle an image with an image-to-image model; a transparent upload
        gives a transparent result."""
        served = server.pick(model, "image-to-image")
        pipe = served.pipeline
        upload = await image.read()
        picture = decode_upload(upload, image.content_type, cfg)
        directions = pipe.directions
        direction = direction or (directions[0] if directions else None)
        if directions and direction not in directions:
            raise ApiError(422, f"direction {direction!r} is unknown to model {served.name}; "
                                f"known: {', '.join(directions)}")
        options = {"style": style} if style else {}
        square = centre_square(to_rgb_keeping_alpha(picture))  # the pipeline composites it
        out = (await server.worker.call(lambda: pipe([square], direction=direction,
                                                     **options)))[0]
        data = await encode(out, {"model": served.label,
                                  "model_id": f"{pipe.watermark_id:04x}",
                                  "direction": direction, "style": style, "source": "upload"},
                            upload)
        return _image_answer(data, format, ImageResponse(
            model=served.name, width=out.width, height=out.height, direction=direction,
            style=style, png_base64=base64.b64encode(data).decode()))

    @app.post("/api/upscale", response_model=ImageResponse, dependencies=guarded,
              responses={**upload_errors, 501: ERRORS[501], **image_200}, tags=["images"])
    async def upscale(
        image: Annotated[UploadFile, File(description="PNG, JPEG, WebP, GIF or BMP")],
        model: Annotated[str | None, Form(max_length=64)] = None,
        format: Annotated[Literal["png", "json"], Form()] = "png",
    ) -> Response:
        """Upscale an image with the server's upscaler. The ganforge metadata of an upload
        (prompt, seed, model, ...) is carried over, with the upscale added to ``steps``."""
        served = server.pick(model, "upscale")
        upload = await image.read()
        picture = decode_upload(upload, image.content_type, cfg)
        if max(picture.size) > cfg.max_upscale_side:
            raise ApiError(413, f"image is {picture.width}x{picture.height}; upscale accepts "
                                f"at most {cfg.max_upscale_side} px a side")
        rgb = to_rgb_keeping_alpha(picture)
        out = (await server.worker.call(lambda: served.pipeline([rgb])))[0]
        step = upscale_step(served.pipeline, rgb.size, label=served.label)
        data = await encode(out, upscaled_fields(
            {**picture.info, **(getattr(picture, "text", None) or {})}, step), upload)
        return _image_answer(data, format, ImageResponse(
            model=served.name, width=out.width, height=out.height,
            png_base64=base64.b64encode(data).decode()))

    @app.post("/api/verify", dependencies=guarded,
              responses={**upload_errors, 501: ERRORS[501]}, tags=["images"])
    async def verify(
        image: Annotated[UploadFile, File(description="PNG, JPEG, WebP, GIF or BMP")],
    ) -> dict[str, Any]:
        """What ganforge can tell about an image: its metadata, watermark and detector."""
        data = await image.read()
        decode_upload(data, image.content_type, cfg)  # size, type and bomb checks first
        verify_image = _verify_function()
        if verify_image is None:
            raise ApiError(501, "verify is not available in this ganforge build "
                                "(ganforge.provenance.verify is missing)")
        def run() -> dict[str, Any]:
            try:
                return verify_image(data, c2pa_trust=cfg.c2pa_trust).as_dict()
            except CheckpointError as exc:  # no detector here: watermark and metadata answer
                result = verify_image(data, use_detector=False,
                                      c2pa_trust=cfg.c2pa_trust).as_dict()
                return {**result, "detector_unavailable": str(exc)}

        return _jsonable(await server.worker.call(run))

    return app


def _verify_function() -> Callable[..., Any] | None:
    try:
        from ganforge.provenance.verify import verify_image  # type: ignore[import-not-found]
    except ImportError:
        return None
    return verify_image


def _jsonable(value: Any) -> Any:
    """Plain JSON values (numpy scalars, paths and tuples included)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if hasattr(value, "item"):
        return _jsonable(value.item())
    return str(value)


# ------------------------------------------------------------------------------ run
def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one), or ConfigError."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot resolve host {host!r} ({exc})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(config: ServeConfig, host: str = "127.0.0.1", port: int = 7860,
          log_level: str = "warning", access_log: bool = True) -> None:
    """Load the models and serve until interrupted; ``access_log``: one line per request on
    stderr (method, path, status, ms).

    Binding to anything but loopback needs an API key: the endpoints run models on this
    machine's CPU/GPU for anyone who can reach the port."""
    if not is_loopback(host) and not config.api_key:
        raise ConfigError(f"--host {host} would expose the server beyond this machine without "
                          f"authentication; give --api-key KEY (or GANFORGE_API_KEY), or "
                          f"bind to 127.0.0.1")
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be in 0..65535, got {port}")
    import uvicorn

    app = create_app(config)
    sock = listen(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    print(f"ganforge: serving {len(app.state.server.models)} model(s) on "
          f"http://{shown}:{bound}/ (API schema: /openapi.json; Ctrl-C stops)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False,
                                           timeout_graceful_shutdown=5))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("ganforge: %(message)s"))
    if access_log:
        ACCESS_LOG.addHandler(handler)
        ACCESS_LOG.setLevel(logging.INFO)
    try:
        server.run(sockets=[sock])
    finally:
        ACCESS_LOG.removeHandler(handler)
        app.state.server.worker.shutdown()
        sock.close()
