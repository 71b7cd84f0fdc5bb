"""Saved models for inference: a folder with ``config.json`` and ``model.safetensors``.

The same contract as diffusers: ``save_pretrained(path)`` / ``from_pretrained(path)``, weights
in safetensors (never pickle), and a JSON config that says which family builds the networks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import torch
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

import ganforge
from ganforge.config import from_dict
from ganforge.data.images import to_pil
from ganforge.errors import CheckpointError
from ganforge.train.checkpoint import atomic_replace_dir

PIPELINE_FORMAT = "ganforge-pipeline-v1"
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


def state_mismatch(expected: dict[str, torch.Tensor], saved: dict[str, torch.Tensor],
                   shown: int = 3) -> str:
    """What keeps ``saved`` tensors from loading into a network whose state is ``expected``:
    missing and unexpected names and shape mismatches, a few of each ('' when they fit)."""
    def some(names: list[str]) -> str:
        more = f" (+{len(names) - shown} more)" if len(names) > shown else ""
        return ", ".join(names[:shown]) + more

    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    shapes = [f"{k} saved {list(saved[k].shape)}, expected {list(v.shape)}"
              for k, v in expected.items() if k in saved and saved[k].shape != v.shape]
    parts = [f"missing: {some(missing)}" if missing else "",
             f"unexpected: {some(unexpected)}" if unexpected else "",
             f"wrong shape: {some(shapes)}" if shapes else ""]
    return "; ".join(p for p in parts if p)


def write_pipeline(path: str | Path, task: str, family: str, model_config: dict[str, Any],
                   info: dict[str, Any], networks: dict[str, nn.Module],
                   trained_steps: int) -> Path:
    """Write a pipeline folder atomically (a reader never sees half of it)."""
    config = {"format": PIPELINE_FORMAT, "ganforge_version": ganforge.__version__,
              "task": task, "family": family, "model": model_config, "info": info,
              "trained_steps": trained_steps}
    tensors = {f"{name}.{key}": value.detach().cpu().contiguous()
               for name, net in networks.items() for key, value in net.state_dict().items()}

    def fill(tmp: Path) -> None:
        save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": PIPELINE_FORMAT})
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")

    atomic_replace_dir(path, fill)
    return Path(path)


def resolve_pipeline_dir(path: str | Path) -> Path:
    """A pipeline folder, or a run folder whose exported ``model/`` is used."""
    path = Path(path)
    for candidate in (path, path / "model"):
        if (candidate / CONFIG_NAME).is_file() and (candidate / WEIGHTS_NAME).is_file():
            return candidate
    if not path.exists():
        raise CheckpointError(f"model {path} does not exist")
    raise CheckpointError(f"no saved model at {path}: expected {CONFIG_NAME} and {WEIGHTS_NAME} "
                          f"there or in {path / 'model'} (a run writes it at its first checkpoint)")


def read_pipeline_config(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """Locate and read a pipeline's config, checking it is one of ours."""
    folder = resolve_pipeline_dir(path)
    try:
        config = json.loads((folder / CONFIG_NAME).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{folder / CONFIG_NAME} is not valid JSON ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != PIPELINE_FORMAT:
        raise CheckpointError(f"{folder / CONFIG_NAME} is not a ganforge model config")
    return folder, config


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
    """Base of the inference pipelines: holds a family's inference networks and settings."""

    task: ClassVar[str]

    def __init__(self, family: str, model_config: dict[str, Any], info: dict[str, Any],
                 networks: dict[str, nn.Module], trained_steps: int = 0):
        self.family, self.model_config, self.info = family, model_config, info
        self.networks = nn.ModuleDict(networks).eval().requires_grad_(False)
        self.trained_steps = trained_steps
        self.name = family

    @property
    def device(self) -> torch.device:
        return next(self.networks.parameters()).device

    def to(self, device: str | torch.device) -> Self:
        """Move the networks to ``device``."""
        self.networks.to(device)
        return self

    #: mark every image handed out with the invisible ganforge watermark (set False to turn
    #: it off); ``image.info["ganforge:watermark"]`` says what an image carries
    watermark: bool = True

    @property
    def watermark_id(self) -> int:
        """The 16-bit model id in this pipeline's watermark (a hash of its weights)."""
        from ganforge.provenance.watermark import model_id_of

        return model_id_of({f"{name}.{key}": value for name, net in self.networks.items()
                            for key, value in net.state_dict().items()})

    def to_images(self, images: torch.Tensor) -> list[Image.Image]:
        """What a pipeline hands out: [B, 3, H, W] in [-1, 1] -> PIL images.

        Every image a pipeline returns goes through here, and is watermarked here unless
        ``self.watermark`` is False (see ``ganforge.provenance.watermark``)."""
        from ganforge.provenance.watermark import mark_images

        pils = to_pil(images)
        return mark_images(pils, self.watermark_id) if self.watermark else mark_images(pils, None)

    def save_pretrained(self, path: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` to ``path`` (atomically)."""
        return write_pipeline(path, self.task, self.family, self.model_config, self.info,
                              dict(self.networks.items()), self.trained_steps)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> Self:
        """Load a saved pipeline folder, or the model exported into a run folder."""
        from ganforge.models import get_family

        folder, config = read_pipeline_config(path)
        if config.get("task") != cls.task:
            raise CheckpointError(f"model {folder} is a {config.get('task')!r} model; "
                                  f"{cls.__name__} serves {cls.task!r} models")
        family = get_family(config["family"])
        model_config = from_dict(family.ModelConfig, config["model"], where=str(folder))
        networks = family.build_inference(model_config, config.get("info", {}))
        try:
            tensors = load_file(str(folder / WEIGHTS_NAME))
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"weights {folder / WEIGHTS_NAME} cannot be read ({exc})"
                                  ) from None
        for name, net in networks.items():
            prefix = f"{name}."
            state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            problems = state_mismatch(net.state_dict(), state)
            if problems:
                raise CheckpointError(
                    f"weights {folder / WEIGHTS_NAME} do not fit network {name!r} of its "
                    f"config ({problems}); was it saved by another ganforge version "
                    f"(it says {config.get('ganforge_version', 'unknown')}) or edited?")
            net.load_state_dict(state)
        from ganforge.train.loop import resolve_device

        target = resolve_device(str(device))  # 'auto', 'cpu', 'cuda', 'cuda:N', checked
        pipe = cls(config["family"], config["model"], config.get("info", {}), networks,
                   config.get("trained_steps", 0))
        pipe.name = str(folder)
        return pipe.to(target)
