"""The registry of inference models: saved kind -> class, imported only when used.

Loading a model imports its family's inference module and nothing of training. Adding a
family is one file in this folder and one line below.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

from ganforge.core.artifact import ARTIFACT_FORMAT, read_header
from ganforge.errors import CheckpointError
from ganforge.inference.base import (
    ImageToImageModel,
    InferenceModel,
    TextToImageModel,
    UpscaleModel,
)

#: kind (the family's name) -> "module:class"
MODELS = {
    "dfgan": "ganforge.inference.dfgan:DFGANModel",
    "maskgit": "ganforge.inference.maskgit:MaskGITModel",
    "cyclegan": "ganforge.inference.cyclegan:CycleGANModel",
    "unit": "ganforge.inference.unit:UNITModel",
    "pix2pix": "ganforge.inference.pix2pix:Pix2PixModel",
    "ragan": "ganforge.inference.ragan:RAGANModel",
    "stargan": "ganforge.inference.stargan:StarGANModel",
    "esrgan": "ganforge.inference.esrgan:ESRGANModel",
    "relight": "ganforge.inference.relight:RelightModel",
    "vqgan": "ganforge.inference.vqgan:ImageTokenizer",
    "tokenizer": "ganforge.inference.vqgan:ImageTokenizer",  # the family's name before 0.2
}


def model_class(kind: str) -> type[InferenceModel]:
    """The inference class of a saved ``kind``."""
    try:
        module, name = MODELS[kind].split(":")
    except KeyError:
        raise CheckpointError(f"unknown model kind {kind!r}; known: "
                              f"{', '.join(sorted(MODELS))}") from None
    return getattr(importlib.import_module(module), name)


def saved_kind(path: str | Path) -> tuple[Path, type[InferenceModel]]:
    """The folder of a saved model (or of the model a run folder exported) and its class,
    read from its config without loading weights (its ``task`` says what it does)."""
    folder, header = read_header(path)
    kind = header.get("kind") if header["format"] == ARTIFACT_FORMAT else header.get("family")
    return folder, model_class(str(kind))


def load_model(path: str | Path, device: str | torch.device = "cpu") -> InferenceModel:
    """Load any saved model folder (or the model a run folder exported), of any family."""
    folder, cls = saved_kind(path)
    return cls.from_pretrained(folder, device)


__all__ = ["MODELS", "ImageToImageModel", "InferenceModel", "TextToImageModel",
           "UpscaleModel", "load_model", "model_class", "saved_kind"]
