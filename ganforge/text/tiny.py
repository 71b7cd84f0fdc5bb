"""A small transformer over UTF-8 bytes, trained together with the image model.

It needs no tokenizer files and no download: the text is lower-cased and its UTF-8 bytes are the
tokens, framed by [BOS] and [EOS]. It suits small captioned datasets (emoji, flowers, birds)
where a frozen pretrained encoder is more than needed or not installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ganforge.errors import ConfigError
from ganforge.text.encoders import TextEmbedding, TextEncoder, warn_truncated

BYTE_VOCAB = 256
PAD, BOS, EOS = BYTE_VOCAB, BYTE_VOCAB + 1, BYTE_VOCAB + 2


def tokenize_bytes(prompts: Sequence[str], max_tokens: int) -> tuple[torch.Tensor, dict[int, int]]:
    """Lower-cased UTF-8 bytes framed by [BOS] ... [EOS], padded with [PAD].

    Returns ids [B, T] int64 (T = longest prompt, at most ``max_tokens``) and, for each prompt
    cut to fit, its index mapped to the number of bytes dropped.
    """
    room = max_tokens - 2
    rows, dropped = [], {}
    for index, prompt in enumerate(prompts):
        data = prompt.lower().encode("utf-8")
        if len(data) > room:
            dropped[index] = len(data) - room
            data = data[:room]
        rows.append([BOS, *data, EOS])
    ids = torch.full((len(rows), max(len(r) for r in rows)), PAD, dtype=torch.long)
    for row, tokens in zip(ids, rows, strict=True):
        row[:len(tokens)] = torch.tensor(tokens)
    return ids, dropped


class TinyTransformerEncoder(TextEncoder, kind="tiny"):
    """Byte-level pre-norm transformer: learned positions, ``layers`` blocks, final LayerNorm.

    ``tokens`` are the final states [B, T, dim] of [BOS], the bytes and [EOS]; ``sentence`` is
    their masked mean [B, dim] (a mean uses every state's gradient, which trains faster from
    scratch than a single [CLS] state). Initialised from the global torch RNG, so
    ``torch.manual_seed`` fixes it.
    """

    def __init__(self, dim: int = 256, layers: int = 4, heads: int = 4, max_tokens: int = 64,
                 dropout: float = 0.0):
        super().__init__()
        if dim < 1 or layers < 1 or heads < 1 or dim % heads:
            raise ConfigError(f"tiny text encoder: dim={dim}, layers={layers}, heads={heads} "
                              "must be positive with dim a multiple of heads")
        if not 3 <= max_tokens <= 4096:
            raise ConfigError(f"tiny text encoder: max_tokens={max_tokens} must be in 3..4096")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"tiny text encoder: dropout={dropout} must be in [0, 1)")
        self._dim, self._layers, self._heads = dim, layers, heads
        self._max_tokens, self._dropout = max_tokens, dropout
        self.embed = nn.Embedding(BYTE_VOCAB + 3, dim, padding_idx=PAD)
        self.position = nn.Parameter(torch.randn(max_tokens, dim) * 0.02)
        block = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=4 * dim, dropout=dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def token_dim(self) -> int:
        return self._dim

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    @property
    def trainable(self) -> bool:
        return True

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "dim": self._dim, "layers": self._layers,
                "heads": self._heads, "max_tokens": self._max_tokens, "dropout": self._dropout}

    def forward(self, prompts: Sequence[str]) -> TextEmbedding:
        ids, dropped = tokenize_bytes(prompts, self._max_tokens)
        warn_truncated(dropped, prompts, self._max_tokens)
        ids = ids.to(self.device)
        mask = ids != PAD  # [B, T]
        x = self.embed(ids) + self.position[:ids.shape[1]]
        x = self.norm(self.blocks(x, src_key_padding_mask=~mask))
        tokens = x * mask.unsqueeze(-1)
        sentence = tokens.sum(1) / mask.sum(1, keepdim=True)
        return TextEmbedding(sentence=sentence, tokens=tokens, mask=mask)
