"""What every inference pipeline shares: a loaded inference model, watermarked PIL output,
transparency carried from input to output.

Pipelines follow diffusers' contract (``save_pretrained`` / ``from_pretrained``); the folder
format itself is ``ganforge.core.artifact``'s, and the networks and their typed configs are
the families' inference models in ``ganforge.inference``: no training code is imported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Self

import torch
from PIL import Image
from torch import nn

from ganforge.core.artifact import read_header
from ganforge.data.images import to_pil
from ganforge.inference import InferenceModel, load_model
from ganforge.inference.base import check_task
from ganforge.provenance.watermark import mark_images, model_id_of


def put_alpha(images: Sequence[Image.Image], alphas: Sequence[Image.Image | None]
              ) -> list[Image.Image]:
    """Outputs with their inputs' alpha bands (resized to fit, bicubic); None keeps RGB."""
    out = []
    for image, alpha in zip(images, alphas, strict=True):
        if alpha is not None:
            info = dict(image.info)  # the watermark's record survives the mode change
            image = image.copy()
            image.putalpha(alpha if alpha.size == image.size
                           else alpha.resize(image.size, Image.BICUBIC))
            image.info.update(info)
        out.append(image)
    return out


class Pipeline:
    """Base of the inference pipelines: an inference model (``ganforge.inference``) and what
    turns its tensors into the images a user gets (checked inputs, watermark, alpha).

    ``Pipeline.from_pretrained(path)`` loads any saved model folder or run folder of the
    pipeline's task; ``save_pretrained(path)`` writes the model (one artifact format)."""

    task: ClassVar[str]

    def __init__(self, model: InferenceModel, name: str | None = None):
        check_task(model, self.task, name or model.kind)
        self.model = model
        self.model.modules.eval().requires_grad_(False)
        self.name = name or model.kind

    @property
    def networks(self) -> nn.ModuleDict:
        """The model's networks by name."""
        return self.model.modules

    @property
    def family(self) -> str:
        return self.model.kind

    @property
    def trained_steps(self) -> int:
        return self.model.trained_steps

    @property
    def background(self) -> str:
        """Colour transparent inputs are composited onto (the training images' background)."""
        return self.model.background

    @property
    def device(self) -> torch.device:
        return self.model.device

    def to(self, device: str | torch.device) -> Self:
        """Move the networks to ``device``."""
        self.model.to(device)
        return self

    #: mark every image handed out with the invisible ganforge watermark (set False to turn
    #: it off); ``image.info["ganforge:watermark"]`` says what an image carries
    watermark: bool = True

    @property
    def watermark_id(self) -> int:
        """The 16-bit model id in this pipeline's watermark (a hash of its weights).

        Hashing every weight costs ~25 ms for a 20 MB model, once per batch: the id is kept
        until a tensor is replaced or changed in place (its storage or version counter moves).
        """
        state = self.model.modules.state_dict(keep_vars=True)
        key = tuple((name, t.data_ptr(), t._version) for name, t in state.items())
        cached = getattr(self, "_watermark_cache", None)
        if cached is None or cached[0] != key:
            cached = (key, model_id_of(self.model.tensors()))
            self._watermark_cache = cached
        return cached[1]

    def to_images(self, images: torch.Tensor) -> list[Image.Image]:
        """What a pipeline hands out: [B, 3, H, W] in [-1, 1] -> PIL images.

        Every image a pipeline returns goes through here, and is watermarked here unless
        ``self.watermark`` is False (see ``ganforge.provenance.watermark``)."""
        pils = to_pil(images)
        return mark_images(pils, self.watermark_id) if self.watermark else mark_images(pils, None)

    def save_pretrained(self, path: str | Path) -> Path:
        """Write the model's ``config.json`` and ``model.safetensors`` to ``path``."""
        return self.model.save_pretrained(path)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> Self:
        """Load a saved model folder, or the model exported into a run folder."""
        folder, _ = read_header(path)
        return cls(load_model(folder, device), name=str(folder))
