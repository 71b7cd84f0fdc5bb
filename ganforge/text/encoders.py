"""The interface every text encoder gives: prompts in, a sentence embedding and token states out.

Text-to-image models (DF-GAN conditions on the sentence embedding, MaskGIT cross-attends to the
token states) depend only on :class:`TextEncoder`; which encoder is used is a config value
(``{"kind": "tiny", ...}``) resolved by :func:`build_text_encoder`.
"""

from __future__ import annotations

import inspect
import os
import sys
import unicodedata
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ganforge.errors import ConfigError

#: how many truncated prompts one warning names before it only counts them
_NAMED_IN_WARNING = 3
#: frames in these folders are skipped so that a warning points at the code that encoded
_INTERNAL_FOLDERS = tuple(str(Path(f).parent) + os.sep for f in (__file__, nn.__file__))


@dataclass
class TextEmbedding:
    """What an encoder returns for a batch of B prompts.

    ``sentence``: [B, D], one vector per prompt. ``tokens``: [B, T, E], one state per token,
    T being the longest prompt of the batch in tokens (special tokens included); padded
    positions are zero. ``mask``: [B, T] bool, True where ``tokens`` holds a real token.
    """

    sentence: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor

    def to(self, device: torch.device | str) -> TextEmbedding:
        """The same embedding with every tensor on ``device``."""
        return TextEmbedding(self.sentence.to(device), self.tokens.to(device),
                             self.mask.to(device))


def check_prompts(prompts: str | Sequence[str]) -> list[str]:
    """Validate prompts and return them stripped and in Unicode NFC form.

    Accepts one str or a sequence of str. Raises ConfigError for an empty sequence, an item that
    is not text (bytes included) and an empty or whitespace-only prompt, naming its index.
    """
    if isinstance(prompts, str):
        prompts = [prompts]
    elif isinstance(prompts, bytes | bytearray) or not isinstance(prompts, Sequence):
        raise ConfigError(
            f"prompts must be text: a str or a list of str, not {type(prompts).__name__}")
    if not prompts:
        raise ConfigError("prompts is an empty list; expected at least one prompt")
    cleaned = []
    for index, prompt in enumerate(prompts):
        if isinstance(prompt, bytes | bytearray):
            try:
                bytes(prompt).decode("utf-8")
            except UnicodeDecodeError:
                raise ConfigError(
                    f"prompt {index} is bytes that are not valid UTF-8; prompts must be str"
                ) from None
            raise ConfigError(f"prompt {index} is bytes; prompts must be str (decode it first)")
        if not isinstance(prompt, str):
            raise ConfigError(
                f"prompt {index} is {type(prompt).__name__} {prompt!r}; prompts must be str")
        try:
            prompt.encode("utf-8")
        except UnicodeEncodeError:  # e.g. command-line bytes that were not UTF-8
            raise ConfigError(f"prompt {index} is not valid UTF-8 text: {prompt!r}") from None
        text = unicodedata.normalize("NFC", prompt.strip())
        if not text:
            raise ConfigError(f"prompt {index} is empty; expected some text")
        cleaned.append(text)
    return cleaned


def warn_truncated(dropped: dict[int, int], prompts: Sequence[str], max_tokens: int) -> None:
    """One warning for all prompts of a call cut at ``max_tokens``.

    ``dropped`` maps a prompt's index to the number of its tokens that were dropped.
    """
    if not dropped:
        return
    named = [f"prompt {i} ({_beginning(prompts[i])!r}) lost {n} token(s)"
             for i, n in list(dropped.items())[:_NAMED_IN_WARNING]]
    more = len(dropped) - len(named)
    warnings.warn(
        f"{len(dropped)} prompt(s) longer than max_tokens={max_tokens} were truncated: "
        + "; ".join(named) + (f"; and {more} more" if more > 0 else ""),
        stacklevel=_caller_stacklevel(),
    )


def _beginning(prompt: str, chars: int = 30) -> str:
    return prompt if len(prompt) <= chars else prompt[:chars] + "..."


def _caller_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside this package and torch.nn, as seen from
    the caller of this function's caller."""
    level, frame = 2, sys._getframe(2)
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_INTERNAL_FOLDERS):
        level, frame = level + 1, frame.f_back
    return level


class TextEncoder(nn.Module, ABC):
    """Base class of text encoders: ``encode(prompts) -> TextEmbedding`` on the module's device.

    A subclass registers itself under a config kind: ``class Mine(TextEncoder, kind="mine")``.
    Its ``__init__`` keyword arguments are its config, so ``config()`` must return them (plus
    ``kind``) for :func:`build_text_encoder` to rebuild it. Trained weights travel separately
    through ``state_dict``.
    """

    kind: ClassVar[str]
    registry: ClassVar[dict[str, type[TextEncoder]]] = {}

    def __init_subclass__(cls, kind: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if kind is not None:
            cls.kind = kind
            TextEncoder.registry[kind] = cls

    def __init__(self) -> None:
        super().__init__()
        # An empty non-persistent buffer tells the module's device; it is never saved.
        self.register_buffer("_device_anchor", torch.empty(0), persistent=False)

    @property
    def device(self) -> torch.device:
        """The device ``encode`` returns its tensors on."""
        return self._device_anchor.device

    @property
    @abstractmethod
    def dim(self) -> int:
        """D, the size of the sentence embedding."""

    @property
    @abstractmethod
    def token_dim(self) -> int:
        """E, the size of each token state."""

    @property
    @abstractmethod
    def max_tokens(self) -> int:
        """The most tokens (special tokens included) a prompt keeps; longer ones are cut."""

    @property
    @abstractmethod
    def trainable(self) -> bool:
        """Whether the encoder is meant to be trained with the image model."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-ready settings, ``kind`` included, that rebuild this encoder."""

    @abstractmethod
    def forward(self, prompts: Sequence[str]) -> TextEmbedding:
        """Encode already checked prompts (see :meth:`encode`)."""

    def encode(self, prompts: str | Sequence[str]) -> TextEmbedding:
        """Embed prompts: checks them with :func:`check_prompts`, then runs the module."""
        return self(check_prompts(prompts))

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TextEncoder:
        """Build the encoder that ``config["kind"]`` names, with the other keys as arguments."""
        if not isinstance(config, dict) or "kind" not in config:
            raise ConfigError(f"text encoder config {config!r} needs a 'kind' "
                              f"(one of {', '.join(sorted(cls.registry))})")
        settings = dict(config)
        kind = settings.pop("kind")
        if kind not in cls.registry:
            raise ConfigError(f"unknown text encoder kind {kind!r}; "
                              f"known: {', '.join(sorted(cls.registry))}")
        encoder_cls = cls.registry[kind]
        try:
            inspect.signature(encoder_cls).bind(**settings)
        except TypeError as exc:
            accepted = ", ".join(inspect.signature(encoder_cls).parameters)
            raise ConfigError(f"text encoder {kind!r} config {config!r}: {exc}; "
                              f"accepted settings: {accepted}") from None
        return encoder_cls(**settings)


def text_encoder_settings(kind: str, dim: int, layers: int, max_tokens: int) -> dict[str, Any]:
    """The ``build_text_encoder`` config of a family's options: frozen MiniLM, or the tiny
    trainable encoder of width ``dim`` (with as many heads as divide it, up to 4)."""
    if kind == "minilm":
        return {"kind": "minilm"}
    heads = next(h for h in (4, 2, 1) if dim % h == 0)
    return {"kind": "tiny", "dim": dim, "layers": layers, "heads": heads,
            "max_tokens": max_tokens}


def build_text_encoder(config: dict[str, Any]) -> TextEncoder:
    """The text encoder described by ``config`` (as returned by ``TextEncoder.config()``)."""
    return TextEncoder.from_config(config)
