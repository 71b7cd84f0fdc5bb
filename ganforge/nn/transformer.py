"""A bidirectional transformer over image tokens that reads text by cross-attention (MaskGIT/Muse).

Each block: pre-norm self-attention over all image positions (no causal mask), pre-norm
cross-attention from image positions to the text token states, pre-norm GELU MLP. The text
context always begins with a learned *null* token that every position may attend to: with all
text positions masked out (caption dropout, or guidance's unconditional pass) the model sees
the null token alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class Attention(nn.Module):
    """Multi-head attention of queries [B, N, dim] over a context [B, T, dim]."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.to_q, self.to_kv = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``context_mask``: [B, T] bool, True where the context may be attended to."""
        q = rearrange(self.to_q(x), "b n (h d) -> b h n d", h=self.heads)
        k, v = rearrange(self.to_kv(context), "b t (two h d) -> two b h t d", two=2,
                         h=self.heads)
        mask = None if context_mask is None else context_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(rearrange(out, "b h n d -> b n (h d)"))


class Block(nn.Module):
    """Self-attention, cross-attention to text, MLP; each pre-norm with a residual."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.norm_self, self.self_attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm_cross, self.cross_attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(),
                                 nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor, context: torch.Tensor,
                context_mask: torch.Tensor) -> torch.Tensor:
        h = self.norm_self(x)
        x = x + self.self_attn(h, h)
        x = x + self.cross_attn(self.norm_cross(x), context, context_mask)
        return x + self.mlp(self.norm_mlp(x))


class MaskedTokenTransformer(nn.Module):
    """(tokens [B, N] in 0..K with K = [MASK], text [B, T, E], text mask [B, T]) -> logits
    [B, N, K] over the codebook.

    ``codebook_size`` K, ``positions`` N (the token grid flattened), ``text_dim`` E.
    """

    def __init__(self, codebook_size: int, positions: int, text_dim: int, dim: int = 256,
                 layers: int = 4, heads: int = 4):
        super().__init__()
        self.codebook_size, self.positions = codebook_size, positions
        self.mask_id = codebook_size
        self.token_embed = nn.Embedding(codebook_size + 1, dim)
        self.position = nn.Parameter(torch.randn(positions, dim) * 0.02)
        self.text_in = nn.Sequential(nn.LayerNorm(text_dim), nn.Linear(text_dim, dim))
        self.null_text = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.to_logits = nn.Linear(dim, codebook_size)
        nn.init.normal_(self.token_embed.weight, std=0.02)

    def context(self, text: torch.Tensor, text_mask: torch.Tensor,
                keep_text: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Text context [B, 1 + T, dim] and its mask [B, 1 + T]: the null token, then the
        projected text states; ``keep_text`` [B] bool False drops a sample's text."""
        b = text.shape[0]
        states = self.text_in(text.to(self.null_text.dtype))
        context = torch.cat([self.null_text.expand(b, -1, -1), states], dim=1)
        mask = text_mask.bool()
        if keep_text is not None:
            mask = mask & keep_text[:, None]
        mask = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=mask.device), mask], dim=1)
        return context, mask

    def unconditional_context(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The context of no text: the null token alone, [B, 1, dim] and mask [B, 1]."""
        mask = torch.ones(batch, 1, dtype=torch.bool, device=self.null_text.device)
        return self.null_text.expand(batch, -1, -1), mask

    def forward(self, tokens: torch.Tensor, context: torch.Tensor,
                context_mask: torch.Tensor) -> torch.Tensor:
        """Logits [B, N, K] for tokens [B, N] given a context from :meth:`context`."""
        x = self.token_embed(tokens) + self.position
        for block in self.blocks:
            x = block(x, context, context_mask)
        return self.to_logits(self.norm(x))
