"""Inference models: what a trained family leaves behind to sample or translate with.

One small class per family (``ganforge/inference/<family>.py``): a typed config, the networks
that inference needs (never the critics or optimisers), and ``generate`` / ``translate`` /
``upscale``. They are saved artifacts (``ganforge.core.artifact``) and import no training
code: pipelines, the server, metrics and audits load them through ``ganforge.inference``,
and only ``ganforge.train`` imports the training recipes that export them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import torch
from PIL import Image

from ganforge.core.artifact import ARTIFACT_FORMAT, Artifact
from ganforge.data.image_files import shrink_about_centre
from ganforge.errors import CheckpointError, ConfigError

#: the format every pipeline folder had before saved artifacts (read, never written)
PIPELINE_V1 = "ganforge-pipeline-v1"


class InferenceModel(Artifact):
    """Base of the per-family inference models (``kind`` is the family's name)."""

    task: ClassVar[str]
    legacy_formats = (PIPELINE_V1,)

    @classmethod
    def upgrade(cls, header: dict[str, Any], folder: Path) -> dict[str, Any]:
        """A ``ganforge-pipeline-v1`` header (the training config's ``model`` section plus an
        ``info`` dict) as this kind's typed config: both are merged and the config's own
        fields kept, so a run exported before artifacts loads unchanged."""
        merged = {**header.get("model", {}), **header.get("info", {})}
        names = {f.name for f in dataclasses.fields(cls.Config)}
        return {"format": ARTIFACT_FORMAT, "kind": header.get("family"), "version": 1,
                "ganforge_version": header.get("ganforge_version", "unknown"),
                "config": {k: v for k, v in merged.items() if k in names},
                "metadata": {"trained_steps": header.get("trained_steps", 0)}}

    @property
    def trained_steps(self) -> int:
        return int(self.metadata.get("trained_steps", 0))

    @property
    def size(self) -> int:
        """Side of the square images the networks read or write."""
        return int(self.config.size)

    @property
    def background(self) -> str:
        """Colour transparent input is composited onto (what training images were)."""
        return str(getattr(self.config, "background", "white"))


def reject_options(kind: str, options: dict[str, Any]) -> None:
    """Refuse sampling options a model does not take, naming them."""
    if options:
        raise ConfigError(f"{kind} models take no {', '.join(sorted(options))} option")


class TextToImageModel(InferenceModel):
    """Prompts to images. ``generate(condition, noise)`` -> [B, 3, S, S] in [-1, 1]."""

    task = "text-to-image"
    #: the text encoder's output the model reads: sentence embeddings or token states
    uses_tokens: ClassVar[bool] = False
    #: the sampling settings ``generate`` takes as keyword options (the server offers these)
    sampling_options: ClassVar[tuple[str, ...]] = ()

    @property
    def noise_dim(self) -> int | None:
        """Length of the noise vector (None: the model draws from per-image seeds)."""
        return None

    @property
    def default_truncation(self) -> float | None:
        """Truncation used when a caller asks for none (chosen when the model was trained)."""
        return None

    def text_encoder_settings(self) -> dict[str, Any]:
        """What ``ganforge.text.build_text_encoder`` needs for a frozen encoder."""
        raise NotImplementedError

    def generate(self, condition: Any, noise: torch.Tensor, **options: Any) -> torch.Tensor:
        """Images [B, 3, S, S] in [-1, 1], one per row of ``condition`` and ``noise``."""
        raise NotImplementedError

    def interpolate(self, ends: Any, weights: torch.Tensor, noise: torch.Tensor,
                    compositions: list[Any] | None = None, **options: Any
                    ) -> torch.Tensor | None:
        """Images [steps, 3, S, S] from the first prompt's condition (``ends`` row 0) to the
        second's at ``weights`` [steps] in [0, 1], with the same noise rows; None: the model
        has no way of its own, and the pipeline blends the conditions."""
        return None

    def compositions(self, prompts: list[str], encode: Any) -> list[Any] | None:
        """What the model reads from each prompt's words beyond its embedding (passed back to
        ``generate`` as ``compositions``, one per row), or None: it reads nothing more."""
        return None


class ImageToImageModel(InferenceModel):
    """Images to images: ``translate(images, direction)`` in [-1, 1], [B, 3, S, S]."""

    task = "image-to-image"

    @property
    def directions(self) -> dict[str, str]:
        """Direction name -> network, for models with fixed directions ({} for none)."""
        return {}

    @property
    def styles(self) -> list[str]:
        """Target styles of a multi-style model ([] for none)."""
        return []

    def default_direction(self) -> str | None:
        return "a2b" if self.directions else None

    @property
    def subject_scale(self) -> float:
        """The size at which the output draws the input's subject, as a share of the input's
        (1: in place; pix2pix ``--input-scale``: smaller), so that an input's alpha can be
        fitted to the output."""
        return 1.0

    def fit_alpha(self, alpha: Image.Image, image: torch.Tensor) -> Image.Image:
        """An input's alpha band (size x size, mode L) fitted to where the output draws the
        subject; ``image``: that input, [3, size, size] in [-1, 1]. The default shrinks it
        about the centre by ``subject_scale`` (a relight model waves a flag's)."""
        return shrink_about_centre(alpha, self.subject_scale)

    def translate(self, images: torch.Tensor, direction: str | None = None,
                  **options: Any) -> torch.Tensor:
        """The default: one network per direction (CycleGAN, pix2pix)."""
        table = self.directions
        if direction not in table:
            raise ConfigError(f"direction {direction!r} is unknown to this model; "
                              f"known: {', '.join(table)}")
        reject_options(self.kind, options)
        return self.modules[table[direction]](images)


class UpscaleModel(InferenceModel):
    """Low resolution to high: ``upscale(images [B, 3, h, w])`` -> [B, 3, h*s, w*s]."""

    task = "super-resolution"

    @property
    def scale(self) -> int:
        return int(self.config.scale)

    @property
    def size(self) -> int | None:
        """None: an upscaler takes any input size (large ones in tiles)."""
        return None

    def upscale(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def check_task(model: InferenceModel, task: str, where: Path | str) -> None:
    """Refuse a model of another task with a message naming both."""
    if model.task != task:
        raise CheckpointError(f"model {where} is a {model.task!r} model; expected a "
                              f"{task!r} model")
