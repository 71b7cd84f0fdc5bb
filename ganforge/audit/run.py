"""``run_audit``: label what a model generates with an attribute classifier and compare the
attribute's distribution with the model's training data.

Text-to-image: by default one image per training caption drawn at random (each training image
once before any twice), so the prompts follow the data; or given prompts, cycled. Image-to-image:
translations of source-domain images, compared with target-domain images that carry the
attribute (a captions file: the translator itself was trained on unlabelled folders).
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from tqdm.auto import tqdm

from ganforge.audit.classifier import (
    AttributeClassifier,
    ClassifierReport,
    train_attribute_classifier,
)
from ganforge.audit.compare import Comparison, compare
from ganforge.audit.report import (
    require_matplotlib,
    sample_grid,
    share_chart,
    write_json,
    write_markdown,
)
from ganforge.config import RunConfig
from ganforge.core.files import atomic_write_text
from ganforge.data.attributes import attribute_of
from ganforge.data.captions import read_caption_rows
from ganforge.data.images import ImageFolder, list_images, load_image, parse_color
from ganforge.errors import ConfigError, DataError
from ganforge.text import check_prompts

CAPTION_PROMPTS = "one training caption per image, drawn at random"


@runtime_checkable
class TextToImageSampler(Protocol):
    """What the audit needs of a text-to-image model (TextToImagePipeline has it)."""

    task: str
    name: str

    @property
    def size(self) -> int: ...

    def noise(self, count: int, seed: int) -> torch.Tensor:
        """Noise [count, Z] drawn from ``seed``."""
        ...

    def generate_prompts(self, prompts: Sequence[str], noise: torch.Tensor,
                         **options: Any) -> torch.Tensor:
        """Images [N, 3, S, S] in [-1, 1], one per prompt, for noise [N, Z]; ``options``:
        the family's sampling settings."""
        ...


@runtime_checkable
class ImageTranslator(Protocol):
    """What the audit needs of an image-to-image model (ImageToImagePipeline has it)."""

    task: str
    name: str

    @property
    def size(self) -> int: ...

    @property
    def background(self) -> str: ...

    @property
    def directions(self) -> list[str]: ...

    @property
    def styles(self) -> list[str]: ...

    def translate_tensor(self, images: torch.Tensor, direction: str = "a2b") -> torch.Tensor:
        """[B, 3, S, S] in [-1, 1] -> translated images, same layout."""
        ...


@dataclass
class AuditResult:
    """The audit's figures (see ``audit.md`` for their reading); ``files``: the paths written,
    by file name (``audit.md``, ``audit.json``, ``shares.png``, ...) and ``classifier``."""

    model: str
    task: str
    attribute: str
    data: str
    num_samples: int
    seed: int
    prompts: str
    classifier: ClassifierReport
    overall: Comparison
    groups: dict[str, Comparison] = field(default_factory=dict)
    group_by: list[str] = field(default_factory=list)
    source_agreement: float | None = None
    #: per value v: of the samples whose prompt came from a training image of value v, the
    #: share labelled v (class-conditional coverage); None where no sample asked for v
    agreement_by_value: dict[str, float | None] = field(default_factory=dict)
    min_share: float = 0.01
    drop_ratio: float = 0.25
    files: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures, shares included."""
        def comparison(c: Comparison) -> dict[str, Any]:
            return {**asdict(c), "reference_share": c.reference_share,
                    "generated_share": c.generated_share, "unexpected": c.unexpected}

        out = asdict(self)
        out["overall"] = comparison(self.overall)
        out["groups"] = {key: comparison(c) for key, c in self.groups.items()}
        return out

    def summary(self) -> str:
        """A few lines for the terminal."""
        o, c = self.overall, self.classifier
        p = o.chi_square.p_value
        return "\n".join([
            f"{self.attribute}: classifier held-out accuracy {c.accuracy:.3f} (balanced "
            f"{c.balanced_accuracy:.3f}, TV on real images {c.holdout_tv:.3f})",
            f"generated vs training: TV {o.tv_distance:.3f}, chi-square p "
            f"{'n/a' if p is None else f'{p:.3g}'}; dropped: {', '.join(o.dropped) or 'none'}",
            *self._asked_line(),
            f"report: {self.files.get('audit.md', '')}"])

    def _asked_line(self) -> list[str]:
        asked = {v: a for v, a in self.agreement_by_value.items() if a is not None}
        if self.source_agreement is None or not asked:
            return []
        worst = min(asked, key=asked.__getitem__)
        return [f"generated as asked: {self.source_agreement:.1%} of samples; lowest for "
                f"{worst} ({asked[worst]:.1%})"]


@dataclass
class _Data:
    """The training data as the audit sees it: one entry per distinct image."""

    file: Path
    background: tuple[int, int, int]
    paths: list[Path]
    captions: list[list[str]]
    fields: list[dict[str, Any]]

    def values(self, attribute: str) -> list[str]:
        """The attribute of every image; DataError naming the file when a row lacks it."""
        try:
            return [attribute_of(f, attribute) for f in self.fields]
        except DataError as exc:
            raise DataError(f"captions file {self.file}: {exc}") from None


def _load_model(model: str | Path | TextToImageSampler | ImageTranslator, device: str
                ) -> tuple[TextToImageSampler | ImageTranslator, RunConfig | None]:
    """The model to audit and, for a run folder, the run's config."""
    if isinstance(model, TextToImageSampler | ImageTranslator):
        return model, None
    from ganforge.inference import saved_kind
    from ganforge.pipelines import ImageToImagePipeline, TextToImagePipeline

    folder, model_cls = saved_kind(model)
    run = RunConfig.load(Path(model) / "config.json") if folder != Path(model) else None
    pipelines = {cls.task: cls for cls in (TextToImagePipeline, ImageToImagePipeline)}
    if model_cls.task not in pipelines:
        raise ConfigError(f"model {folder} is a {model_cls.task!r} model; the audit knows "
                          f"{', '.join(pipelines)}")
    return pipelines[model_cls.task].from_pretrained(folder, device=device), run


def _training_data(data: str | Path | None, image_template: str | None, split: str | None,
                   run: RunConfig | None, task: str, model_name: str) -> _Data:
    """Read the captions file named by ``data``, or by the run's config."""
    background = "white"
    if data is None:
        if task != "text-to-image":
            raise ConfigError(f"model {model_name} translates images and was trained on "
                              "unlabelled folders: pass --data CAPTIONS, a captions file of "
                              "target-domain images with the attribute as a column")
        if run is None or not run.data.get("captions"):
            raise ConfigError(f"model {model_name} is not a run folder whose config names its "
                              "captions file: pass --data CAPTIONS (the captions file it was "
                              "trained on)")
        data = run.data["captions"]
        image_template = run.data.get("image_template") or None
        split = run.data.get("split") or None
        background = run.data.get("background") or "white"
    elif run is not None:
        background = run.data.get("background") or "white"
    entries, _ = read_caption_rows(data, image_template, split)
    return _Data(Path(data), parse_color(background),
                 [p for p, _, _ in entries], [c for _, c, _ in entries],
                 [f for _, _, f in entries])


def _load_images(data: _Data, size: int) -> tuple[torch.Tensor, list[int]]:
    """uint8 [N, 3, size, size] of the readable training images, and their indices."""
    tensors, kept = [], []
    for i, path in enumerate(data.paths):
        try:
            tensors.append(load_image(path, size, data.background, allow_upscale=True))
            kept.append(i)
        except DataError as exc:
            warnings.warn(f"skipping {exc}", stacklevel=3)
    if not tensors:
        raise DataError(f"captions file {data.file}: none of its {len(data.paths)} images "
                        "could be read")
    return torch.stack(tensors), kept


def _caption_prompts(data: _Data, count: int, seed: int) -> tuple[list[str], list[int]]:
    """``count`` prompts drawn from the training captions, and the image each came from:
    images in random order, each once before any twice; a random caption of each."""
    gen = torch.Generator().manual_seed(seed)
    n = len(data.paths)
    order = torch.cat([torch.randperm(n, generator=gen) for _ in range(-(-count // n))])[:count]
    picks = torch.randint(0, 2**62, (count,), generator=gen).tolist()
    sources = order.tolist()
    prompts = [data.captions[i][pick % len(data.captions[i])]
               for i, pick in zip(sources, picks, strict=True)]
    return prompts, sources


def _text_samples(pipe: TextToImageSampler, prompts: list[str], seed: int, batch_size: int,
                  progress: bool, sampling: dict[str, Any]) -> Iterator[torch.Tensor]:
    """Images [b, 3, S, S] in [-1, 1], one per prompt, in chunks; noise row i from ``seed``;
    ``sampling``: the family's sampling settings."""
    noise = pipe.noise(len(prompts), seed)
    for start in tqdm(range(0, len(prompts), batch_size), desc="generating",
                      disable=not progress):
        yield pipe.generate_prompts(prompts[start:start + batch_size],
                                    noise[start:start + batch_size], **sampling).float().cpu()


def _source_images(sources: str | Path | None, run: RunConfig | None, direction: str,
                   count: int, seed: int, pipe: ImageTranslator) -> ImageFolder:
    """Up to ``count`` source images drawn at random from the folder ``sources`` (default: the
    run's source domain for ``direction`` a2b or b2a), at the model's size; unreadable files
    are skipped with a warning."""
    if sources is None:
        key = {"a2b": "domain_a", "b2a": "domain_b"}.get(direction)
        if run is None or key is None or not run.data.get(key):
            why = ("only a run folder names its domains" if run is None else
                   f"its run names no source domain for {direction}")
            raise ConfigError(f"model {pipe.name}: pass sources, a folder of images to "
                              f"translate {direction} ({why})")
        sources = run.data[key]
    files = list_images(sources)
    gen = torch.Generator().manual_seed(seed)
    chosen = [files[i] for i in torch.randperm(len(files), generator=gen)[:count].tolist()]
    background = parse_color(pipe.background)
    return ImageFolder.load(sources, pipe.size, background, allow_upscale=True, files=chosen)


def _translations(pipe: ImageTranslator, sources: torch.Tensor, direction: str,
                  batch_size: int, progress: bool) -> Iterator[torch.Tensor]:
    """Translations [b, 3, S, S] in [-1, 1] of uint8 ``sources`` [N, 3, S, S], in chunks."""
    for chunk in tqdm(sources.split(batch_size), desc="translating", disable=not progress):
        yield pipe.translate_tensor(chunk.float().div(127.5).sub(1.0), direction).float().cpu()


@dataclass
class _Plan:
    """What is generated: one record (prompt or source file) per sample, the images in
    chunks, and for caption prompts the training image behind each prompt."""

    records: list[dict[str, Any]]
    images: Iterator[torch.Tensor]
    described: str
    source_index: list[int] = field(default_factory=list)
    per_prompt: bool = False  # given prompts: each is a group of its own


def _plan(pipe: TextToImageSampler | ImageTranslator, data: _Data, prompts: Sequence[str] | None,
          num_samples: int, seed: int, sources: str | Path | None, run: RunConfig | None,
          direction: str, batch_size: int, progress: bool,
          sampling: dict[str, Any]) -> _Plan:
    """Translations of source images, or one image per prompt (given, or training captions)."""
    if isinstance(pipe, ImageTranslator):
        folder = _source_images(sources, run, direction, num_samples, seed, pipe)
        return _Plan([{"source": str(f)} for f in folder.paths],
                     _translations(pipe, folder.images, direction, batch_size, progress),
                     f"translations {direction} of {len(folder)} source images drawn at random")
    if prompts is None:
        chosen, source_index = _caption_prompts(data, num_samples, seed)
        records = [{"prompt": p, "source": str(data.paths[i])}
                   for p, i in zip(chosen, source_index, strict=True)]
        return _Plan(records, _text_samples(pipe, chosen, seed, batch_size, progress, sampling),
                     CAPTION_PROMPTS + " (each image once before any twice)", source_index)
    given = check_prompts(prompts)
    chosen = [given[i % len(given)] for i in range(num_samples)]
    return _Plan([{"prompt": p} for p in chosen],
                 _text_samples(pipe, chosen, seed, batch_size, progress, sampling),
                 f"the {len(given)} given prompt(s), cycled", per_prompt=True)


def _label(clf: AttributeClassifier, images: Iterator[torch.Tensor], classes: list[str],
           samples_per_class: int, batch_size: int
           ) -> tuple[list[str], dict[str, list[torch.Tensor]]]:
    """The classifier's label of every generated image, and the first ``samples_per_class``
    images (uint8 [3, S, S]) of each label."""
    labels: list[str] = []
    kept: dict[str, list[torch.Tensor]] = {c: [] for c in classes}
    for chunk in images:
        for image, index in zip(chunk, clf.predict(chunk, batch_size).tolist(), strict=True):
            if len(kept[classes[index]]) < samples_per_class:
                kept[classes[index]].append(((image + 1) * 127.5).round().to(torch.uint8))
            labels.append(classes[index])
    return labels, kept


def _classifier(data: _Data, attribute: str, values: list[str], size: int,
                classifier: str | Path | None, holdout_group: str | None, epochs: int,
                seed: int, device: str, progress: bool
                ) -> tuple[AttributeClassifier, ClassifierReport]:
    """Load the classifier at ``classifier``, or train one on the training images."""
    if classifier is not None:
        model = AttributeClassifier.from_pretrained(classifier, device, attribute=attribute)
        report = model.report
        unknown = sorted(set(values) - set(report.classes))
        if unknown:
            raise ConfigError(f"classifier {classifier} does not know the value(s) "
                              f"{', '.join(map(repr, unknown))} of {attribute!r} in {data.file}; "
                              f"it knows {', '.join(report.classes)}")
        return model, report
    counts = Counter(values)
    if len(counts) < 2:
        raise DataError(f"captions file {data.file}: attribute {attribute!r} has the single "
                        f"value {values[0]!r}; there is nothing to audit")
    classes = sorted(counts, key=lambda v: (-counts[v], v))
    images, kept = _load_images(data, size)
    labels = torch.tensor([classes.index(values[i]) for i in kept])
    groups = None
    if holdout_group:
        keys = data.values(holdout_group)
        groups = [keys[i] for i in kept]
    return train_attribute_classifier(images, labels, classes, attribute, groups=groups,
                                      epochs=epochs, input_size=min(size, 32), seed=seed,
                                      device=device, data=str(data.file), progress=progress)


def _compare_all(classes: list[str], values: list[str], labels: list[str], plan: _Plan,
                 group_values: list[list[str]], confusion: list[list[int]], min_share: float,
                 drop_ratio: float
                 ) -> tuple[Comparison, dict[str, Comparison], float | None,
                            dict[str, float | None]]:
    """The overall comparison, one per prompt group, the share of samples labelled as the
    training image behind their prompt, and that share per value (see ``AuditResult``).
    ``values``: the attribute of each training image; ``labels``: the classifier's label of
    each sample; ``group_values``: per prompt attribute, its value for each training image.
    Adds each sample's group to its record."""
    def counts(found: Sequence[str]) -> list[int]:
        tally = Counter(found)
        return [tally[c] for c in classes]

    def grouped(keys: Sequence[str]) -> dict[str, list[str]]:
        """The labels of the samples of each group, largest group first."""
        members: dict[str, list[str]] = {}
        for key, label in zip(keys, labels, strict=True):
            members.setdefault(key, []).append(label)
        return dict(sorted(members.items(), key=lambda kv: -len(kv[1])))

    overall = compare(classes, counts(values), counts(labels), confusion, min_share, drop_ratio)
    groups: dict[str, Comparison] = {}
    agreement, by_value = None, {}
    if plan.source_index:
        asked = [values[s] for s in plan.source_index]
        hits = [want == label for want, label in zip(asked, labels, strict=True)]
        agreement = sum(hits) / len(labels)
        for value in classes:
            mine = [hit for want, hit in zip(asked, hits, strict=True) if want == value]
            by_value[value] = sum(mine) / len(mine) if mine else None
    if group_values:
        image_keys = [" / ".join(parts) for parts in zip(*group_values, strict=True)]
        sample_keys = [image_keys[s] for s in plan.source_index]
        for record, key in zip(plan.records, sample_keys, strict=True):
            record["group"] = key
        for key, members in grouped(sample_keys).items():
            reference = [v for v, k in zip(values, image_keys, strict=True) if k == key]
            groups[key] = compare(classes, counts(reference), counts(members), None,
                                  min_share, drop_ratio)
    elif plan.per_prompt:
        for key, members in grouped([r["prompt"] for r in plan.records]).items():
            groups[key] = compare(classes, counts(values), counts(members), None, min_share,
                                  drop_ratio)
    return overall, groups, agreement, by_value


def _write_report(result: AuditResult, out: Path, kept: dict[str, list[torch.Tensor]],
                  records: list[dict[str, Any]]) -> None:
    """Write the figures, ``samples.jsonl``, ``audit.md`` and ``audit.json`` into ``out``;
    record their paths in ``result.files``."""
    out.mkdir(parents=True, exist_ok=True)
    figures = {"chart": "shares.png"}
    share_chart(result.overall, result.attribute, out / figures["chart"])
    if any(kept.values()):
        figures["samples"] = "samples.png"
        sample_grid(kept, result.overall.classes, out / figures["samples"])
    atomic_write_text(out / "samples.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    names = [*figures.values(), "samples.jsonl", "audit.md", "audit.json"]
    result.files.update({name: str(out / name) for name in names})
    write_markdown(result, out / "audit.md", figures)
    write_json(result, out / "audit.json")


def run_audit(
    model: str | Path | TextToImageSampler | ImageTranslator,
    attribute: str,
    out: str | Path,
    data: str | Path | None = None,
    *,
    image_template: str | None = None,
    split: str | None = "train",
    num_samples: int = 1000,
    prompts: Sequence[str] | None = None,
    group_by_prompt_attribute: Sequence[str] = (),
    classifier: str | Path | None = None,
    holdout_group: str | None = None,
    classifier_epochs: int = 15,
    direction: str = "a2b",
    sources: str | Path | None = None,
    min_share: float = 0.01,
    drop_ratio: float = 0.25,
    samples_per_class: int = 8,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 128,
    progress: bool = False,
    sampling: dict[str, Any] | None = None,
) -> AuditResult:
    """Audit how a model covers the values of ``attribute``; write the report into ``out``.

    ``model``: a run folder, a saved model folder, or a loaded model (see
    :class:`TextToImageSampler`, :class:`ImageTranslator`). ``attribute``: a column of the
    captions file or 'skin-tone'. ``data``: the captions file of the training data (default:
    the one in the run's config; required for a saved model folder and for image-to-image
    models, where it holds target-domain images), read with ``image_template`` and ``split``.

    ``prompts`` (text-to-image): generate from these, cycled, instead of the training
    captions; each prompt is then a group of its own. ``group_by_prompt_attribute``: compare
    the samples of each value of these attributes of the prompt's training image with the
    training images of that value (e.g. 'skin-tone': which tones appear for prompts naming
    none). ``classifier``: a saved classifier folder to use instead of training one (a trained
    one is saved to ``out/classifier``); ``holdout_group``: a column whose rows stay together
    in the classifier's held-out split (e.g. ``base_id`` of emoji). Image-to-image: up to
    ``num_samples`` images of ``sources`` (default: the run's source domain) are translated in
    ``direction``. ``sampling``: the text-to-image family's sampling settings (e.g. ragan's
    ``{"skin_tones": "varied"}``), recorded in the report's prompt description.

    Writes ``audit.json``, ``audit.md``, ``shares.png``, ``samples.png`` and
    ``samples.jsonl`` (each sample's prompt or source and its label).
    """
    if num_samples < 1:
        raise ConfigError(f"number of samples must be at least 1, got {num_samples}")
    if samples_per_class < 0 or not 0 < drop_ratio <= 1 or not 0 <= min_share < 1:
        raise ConfigError("samples per class must be >= 0, drop ratio in (0, 1] and minimum "
                          f"share in [0, 1); got {samples_per_class}, {drop_ratio}, {min_share}")
    require_matplotlib()
    out = Path(out)
    pipe, run = _load_model(model, device)
    sampling = dict(sampling or {})
    if isinstance(pipe, ImageTranslator) and (prompts or group_by_prompt_attribute or sampling):
        raise ConfigError(f"model {pipe.name} translates images: prompts, prompt groups and "
                          "sampling settings apply to text-to-image models only")
    if sampling:  # a setting the family refuses fails now, not after the classifier
        pipe.generate_prompts(["a test prompt"], pipe.noise(1, seed), **sampling)
    known = [*pipe.directions, *pipe.styles] \
        if isinstance(pipe, ImageTranslator) else []
    if known and direction not in known:  # before the classifier is trained
        raise ConfigError(f"direction {direction!r} is unknown to model {pipe.name}; known: "
                          f"{', '.join(known)}")
    if prompts is not None and group_by_prompt_attribute:
        raise ConfigError("given prompts are grouped by prompt already; group by a prompt "
                          "attribute only with prompts drawn from the training captions")
    train_data = _training_data(data, image_template, split, run, pipe.task, pipe.name)
    values = train_data.values(attribute)
    group_values = [train_data.values(a) for a in group_by_prompt_attribute]
    clf, report = _classifier(train_data, attribute, values, pipe.size, classifier,
                              holdout_group, classifier_epochs, seed, device, progress)
    saved = clf.save_pretrained(out / "classifier") if classifier is None else None
    classes = report.classes
    plan = _plan(pipe, train_data, prompts, num_samples, seed, sources, run, direction,
                 batch_size, progress, sampling)
    if sampling:
        plan.described += ", sampled with " + ", ".join(f"{k}={v}" for k, v in
                                                        sorted(sampling.items()))
    labels, kept = _label(clf, plan.images, classes, samples_per_class, batch_size)
    for record, label in zip(plan.records, labels, strict=True):
        record["label"] = label

    overall, groups, agreement, by_value = _compare_all(
        classes, values, labels, plan, group_values, report.confusion, min_share, drop_ratio)
    result = AuditResult(
        model=pipe.name, task=pipe.task, attribute=attribute, data=str(train_data.file),
        num_samples=len(labels), seed=seed, prompts=plan.described, classifier=report,
        overall=overall, groups=groups, group_by=list(group_by_prompt_attribute),
        source_agreement=agreement, agreement_by_value=by_value, min_share=min_share,
        drop_ratio=drop_ratio,
        files={"classifier": str(saved or classifier)})
    _write_report(result, out, kept, plan.records)
    return result
