"""A small CNN that labels images with an attribute (category, skin tone, class, ...).

The audit trusts its labels only as far as its held-out accuracy allows, so training always
keeps part of the data apart and measures per-class recall and the confusion matrix there.
Saved as a ganforge artifact (``ganforge.core.artifact``): the classes and the network's shape
as its config, the held-out figures as its metadata, written atomically. Folders written before
artifacts (``classifier.json`` and ``classifier.safetensors``) still load.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ganforge.core.artifact import ARTIFACT_FORMAT, Artifact
from ganforge.errors import CheckpointError, ConfigError, DataError

#: the format of classifiers saved before artifacts (read, never written)
CLASSIFIER_FORMAT = "ganforge-attribute-classifier-v1"


class ClassifierNet(nn.Module):
    """Images [B, 3, H, W] in [-1, 1] (any H, W: resized to ``input_size``) -> logits [B, C].

    Five 3x3 convolutions with batch norm (two of them stride 2), global average pooling and a
    linear layer: about 0.2 M parameters at ``width`` 32.
    """

    def __init__(self, num_classes: int, input_size: int = 32, width: int = 32):
        super().__init__()
        self.input_size = input_size

        def conv(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
                    nn.ReLU(inplace=True)]

        w = width
        self.features = nn.Sequential(*conv(3, w), *conv(w, 2 * w, 2), *conv(2 * w, 2 * w),
                                      *conv(2 * w, 4 * w, 2), *conv(4 * w, 4 * w),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(4 * w, num_classes))

    def resize(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, 3, input_size, input_size] (antialiased bilinear)."""
        if images.shape[-2:] == (self.input_size, self.input_size):
            return images
        return F.interpolate(images, size=(self.input_size, self.input_size), mode="bilinear",
                             antialias=True, align_corners=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.resize(images)))


@dataclass
class ClassifierReport:
    """How well the classifier labels images it never trained on.

    ``confusion[i][j]``: held-out images of class i predicted as class j; ``recall[i]``: the
    share of class i it gets right (None where class i has no held-out image);
    ``holdout_tv``: total variation distance between the predicted and the true class shares
    of the held-out images: the distortion the classifier alone brings to a distribution.
    """

    attribute: str
    classes: list[str]
    train_count: int
    holdout_count: int
    accuracy: float
    balanced_accuracy: float
    recall: list[float | None]
    confusion: list[list[int]]
    holdout_tv: float
    data: str = ""
    epochs: int = 0

    @classmethod
    def measure(cls, attribute: str, classes: list[str], true: torch.Tensor,
                predicted: torch.Tensor, train_count: int, data: str = "",
                epochs: int = 0) -> ClassifierReport:
        """Figures from held-out labels ``true`` [N] and predictions ``predicted`` [N]."""
        k = len(classes)
        confusion = torch.zeros(k, k, dtype=torch.long)
        confusion.index_put_((true, predicted), torch.ones_like(true), accumulate=True)
        per_class = confusion.sum(1)
        recall = [float(confusion[i, i] / per_class[i]) if per_class[i] else None
                  for i in range(k)]
        known = [r for r in recall if r is not None]
        n = max(len(true), 1)
        tv = float((confusion.sum(0) - per_class).abs().sum() / (2 * n))
        return cls(attribute=attribute, classes=classes, train_count=train_count,
                   holdout_count=len(true), accuracy=float(confusion.trace() / n),
                   balanced_accuracy=sum(known) / max(len(known), 1), recall=recall,
                   confusion=confusion.tolist(), holdout_tv=tv, data=data, epochs=epochs)


@dataclass
class ClassifierConfig:
    """What a classifier labels (``attribute``, one of ``classes``) and its network's shape."""

    attribute: str = ""
    classes: list[str] = field(default_factory=list)
    input_size: int = 32
    width: int = 32


class AttributeClassifier(Artifact):
    """A trained attribute classifier: ``predict(images) -> class indices`` into ``classes``.

    One module, ``net`` (:class:`ClassifierNet`); ``metadata["report"]`` holds its held-out
    figures (:attr:`report`).
    """

    kind = "attribute-classifier"
    Config = ClassifierConfig
    legacy_formats = (CLASSIFIER_FORMAT,)
    legacy_files = ("classifier.json", "classifier.safetensors")

    @classmethod
    def build_modules(cls, config: ClassifierConfig) -> dict[str, nn.Module]:
        if len(config.classes) < 2:
            raise ConfigError(f"an attribute classifier needs at least 2 classes, got "
                              f"{list(config.classes)}")
        return {"net": ClassifierNet(len(config.classes), config.input_size, config.width)}

    @classmethod
    def upgrade(cls, header: dict[str, Any], folder: Path) -> dict[str, Any]:
        """A ``ganforge-attribute-classifier-v1`` header: the network's shape at the top level,
        the attribute and classes inside its held-out report."""
        try:
            report = dict(header["report"])
            config = {"attribute": report["attribute"], "classes": list(report["classes"]),
                      "input_size": int(header["input_size"]), "width": int(header["width"])}
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{folder / cls.legacy_files[0]} cannot be read "
                                  f"({type(exc).__name__}: {exc})") from None
        return {"format": ARTIFACT_FORMAT, "kind": cls.kind, "version": cls.version,
                "ganforge_version": header.get("ganforge_version", "unknown"),
                "config": config, "metadata": {"report": report}}

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu",
                        attribute: str | None = None) -> Self:
        """Load a saved classifier; ``attribute``: when given, it must have been trained for
        it (ConfigError otherwise)."""
        model = super().from_pretrained(path, device)
        if attribute is not None and model.config.attribute != attribute:
            raise ConfigError(f"classifier {path} labels {model.config.attribute!r}, "
                              f"not {attribute!r}")
        return model

    @property
    def classes(self) -> list[str]:
        return list(self.config.classes)

    @property
    def report(self) -> ClassifierReport:
        """Its held-out figures (recorded when it was trained)."""
        try:
            return ClassifierReport(**self.metadata["report"])
        except (KeyError, TypeError) as exc:
            raise CheckpointError(f"classifier of {self.config.attribute!r} has no usable "
                                  f"held-out report ({type(exc).__name__}: {exc})") from None

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Class indices [B] (long, on the CPU) of images [B, 3, H, W] in [-1, 1]."""
        net = self.modules["net"]
        was_training = net.training
        net.eval()
        out = [net(chunk.to(self.device).float()).argmax(1).cpu()
               for chunk in images.split(batch_size)]
        net.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def holdout_split(labels: torch.Tensor, fraction: float, seed: int,
                  groups: Sequence[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, held-out indices) of samples with class ``labels`` [N].

    Without ``groups`` each class is split on its own (stratified; a class of one sample stays
    in training). With ``groups`` (one key per sample) whole groups go to one side, so that
    near-duplicates, e.g. the skin-tone variants of one emoji, do not inflate the accuracy.
    """
    if not 0 < fraction < 1:
        raise ConfigError(f"held-out fraction must be in (0, 1), got {fraction}")
    gen = torch.Generator().manual_seed(seed)
    held = torch.zeros(len(labels), dtype=torch.bool)
    if groups is None:
        for value in labels.unique():
            members = (labels == value).nonzero().flatten()
            members = members[torch.randperm(len(members), generator=gen)]
            take = round(fraction * len(members)) if len(members) > 1 else 0
            held[members[:take]] = True
    else:
        keys = sorted(set(groups))
        order = torch.randperm(len(keys), generator=gen).tolist()
        chosen = {keys[i] for i in order[:round(fraction * len(keys))]}
        held = torch.tensor([g in chosen for g in groups], dtype=torch.bool)
    return (~held).nonzero().flatten(), held.nonzero().flatten()


def _shift(images: torch.Tensor, gen: torch.Generator, pixels: int) -> torch.Tensor:
    """Translate each image of [B, 3, H, W] by up to ``pixels`` (edge values repeat)."""
    if pixels == 0:
        return images
    h, w = images.shape[-2:]
    padded = F.pad(images, (pixels,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * pixels + 1, (len(images), 2), generator=gen).tolist()
    return torch.stack([p[:, dy:dy + h, dx:dx + w] for p, (dy, dx) in zip(padded, offsets,
                                                                          strict=True)])


def train_attribute_classifier(
    images: torch.Tensor, labels: torch.Tensor, classes: list[str], attribute: str,
    holdout_fraction: float = 0.2, groups: Sequence[str] | None = None, epochs: int = 15,
    batch_size: int = 32, lr: float = 2e-3, input_size: int = 32, width: int = 32,
    seed: int = 0, device: str | torch.device = "cpu", data: str = "", progress: bool = False,
) -> tuple[AttributeClassifier, ClassifierReport]:
    """Train a classifier of ``attribute`` on part of the data; measure it on the rest (the
    report is also recorded in the classifier's metadata, so that it is saved with it).

    ``images``: uint8 [N, 3, H, W]; ``labels``: long [N], indices into ``classes``;
    ``groups``: see :func:`holdout_split`. Plain cross-entropy (no class weights), so that the
    classifier's errors follow the data's own class shares; random shifts of up to 1/16 of the
    image as augmentation. Weights, batch order and augmentation all follow ``seed``.
    """
    if len(images) != len(labels):
        raise ValueError("images and labels must have the same length")
    if epochs < 1:
        raise ConfigError(f"classifier epochs must be at least 1, got {epochs}")
    train_idx, held_idx = holdout_split(labels, holdout_fraction, seed, groups)
    if len(train_idx) == 0 or len(held_idx) == 0:
        raise DataError(f"{data or 'the data'}: {len(images)} image(s) are too few to train and "
                        f"test a classifier of {attribute!r}")
    gen = torch.Generator().manual_seed(seed + 1)
    shift = images.shape[-1] // 16
    steps_per_epoch = -(-len(train_idx) // batch_size)
    with torch.random.fork_rng(devices=[]):  # weights and dropout follow the seed
        torch.manual_seed(seed)
        model = AttributeClassifier.create(ClassifierConfig(attribute, list(classes), input_size,
                                                            width)).to(device)
        net = model.modules["net"].train()
        optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr,
                                                       total_steps=epochs * steps_per_epoch)
        for _ in tqdm(range(epochs), desc=f"classifier ({attribute})", disable=not progress):
            order = train_idx[torch.randperm(len(train_idx), generator=gen)]
            for batch in order.split(batch_size):
                x = _shift(images[batch].float().div(127.5).sub(1.0), gen, shift)
                loss = F.cross_entropy(net(x.to(device)), labels[batch].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
    net.eval()
    predicted = model.predict(images[held_idx].float().div(127.5).sub(1.0))
    report = ClassifierReport.measure(attribute, classes, labels[held_idx], predicted,
                                      len(train_idx), data=data, epochs=epochs)
    model.metadata["report"] = asdict(report)
    return model, report
