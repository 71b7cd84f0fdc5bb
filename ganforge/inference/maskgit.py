"""MaskGIT inference: the masked token transformer, the tokenizer's decoder, and sampling.

Sampling is iterative parallel decoding. All positions start masked; at each of
``decode_steps`` steps every masked position is sampled (temperature), the most confident
samples are kept and the rest re-masked so that the masked share follows the cosine schedule.
Guidance mixes logits: uncond + g (cond - uncond); g = 0 is the unconditional model, g = 1 the
plain conditional one. All randomness of image j comes from one generator seeded by (seed, j).

A saved model holds the tokenizer's codebook and decoder (module ``decoder``, frozen, copied
from the tokenizer at training time) and the tokenizer's config (field ``tokenizer``), so it is
self-contained. The training recipe is ``ganforge.models.maskgit``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ganforge.config import from_dict
from ganforge.errors import CheckpointError, ConfigError
from ganforge.inference.base import TextToImageModel, reject_options
from ganforge.inference.dfgan import MINILM_DIM
from ganforge.inference.vqgan import TokenDecoder, VQGANInferenceConfig
from ganforge.nn.transformer import MaskedTokenTransformer
from ganforge.text import TextEmbedding, build_text_encoder
from ganforge.text.encoders import text_encoder_settings


class TokenizerMismatch(CheckpointError):
    """A tokenizer whose codebook or grid is not the one the transformer was trained for."""


def check_sampling(guidance: float, temperature: float, decode_steps: int,
                   positions: int | None = None) -> None:
    """Raise ConfigError for a negative guidance or temperature, or decoding steps outside
    1..positions."""
    if not math.isfinite(guidance) or guidance < 0:
        raise ConfigError(f"guidance must be a number >= 0, got {guidance}")
    if not math.isfinite(temperature) or temperature < 0:
        raise ConfigError(f"temperature must be a number >= 0, got {temperature}")
    top = positions if positions is not None else 4096
    if not 1 <= decode_steps <= top:
        raise ConfigError(f"decode steps must be in 1..{top}, got {decode_steps}")


def check_tokenizer(transformer: MaskedTokenTransformer, decoder: TokenDecoder, grid: int,
                    where: str) -> None:
    """Raise TokenizerMismatch unless the decoder's codebook and the grid are the
    transformer's."""
    if (decoder.codebook_size, grid * grid) != (transformer.codebook_size, transformer.positions):
        trained = math.isqrt(transformer.positions)
        raise TokenizerMismatch(
            f"{where}: the tokenizer has {decoder.codebook_size} codes on a {grid}x{grid} grid, "
            f"but the transformer was trained for {transformer.codebook_size} codes on a "
            f"{trained}x{trained} grid")


@torch.no_grad()
def decode_tokens(transformer: MaskedTokenTransformer, text: TextEmbedding | None,
                  seeds: torch.Tensor, steps: int, guidance: float, temperature: float,
                  choice_temperature: float) -> torch.Tensor:
    """Iterative parallel decoding: codes [B, N] for B seeds (``text`` None, or guidance 0:
    the unconditional model). Image j's randomness comes from ``seeds[j]`` alone."""
    device = transformer.position.device
    n, k = transformer.positions, transformer.codebook_size
    b = len(seeds)
    uniforms = torch.stack([torch.rand(2, steps, n, generator=torch.Generator().manual_seed(
        int(s))) for s in seeds.tolist()]).to(device)  # [B, 2, steps, N]
    tokens = torch.full((b, n), transformer.mask_id, dtype=torch.long, device=device)
    unconditional = transformer.unconditional_context(b)
    conditional = None
    if text is not None and guidance != 0:
        conditional = transformer.context(text.tokens.to(device), text.mask.to(device))
    for t in range(steps):
        masked = tokens == transformer.mask_id
        if conditional is None:
            logits = transformer(tokens, *unconditional).float()
        else:
            logits = transformer(tokens, *conditional).float()
            if guidance != 1:
                base = transformer(tokens, *unconditional).float()
                logits = base + guidance * (logits - base)
        if temperature == 0:
            sampled = logits.argmax(-1)
            probs = logits.softmax(-1)
        else:
            probs = (logits / temperature).softmax(-1)
            cdf = probs.cumsum(-1)
            sampled = torch.searchsorted(cdf, uniforms[:, 0, t, :, None].contiguous()).squeeze(-1)
            sampled = sampled.clamp_max(k - 1)
        sampled = torch.where(masked, sampled, tokens)
        keep_masked = math.floor(n * math.cos(math.pi / 2 * (t + 1) / steps))
        keep_masked = max(0, min(keep_masked, int(masked.sum(1).min()) - 1))
        if keep_masked == 0:
            tokens = sampled
            continue
        confidence = probs.gather(-1, sampled[..., None]).squeeze(-1).clamp_min(1e-30).log()
        gumbel = -torch.log(-torch.log(uniforms[:, 1, t].clamp(1e-20, 1 - 1e-7)))
        confidence = confidence + choice_temperature * (1 - (t + 1) / steps) * gumbel
        confidence = torch.where(masked, confidence, torch.full_like(confidence, math.inf))
        remask = torch.zeros_like(masked)
        remask.scatter_(1, confidence.argsort(1)[:, :keep_masked], True)
        tokens = torch.where(remask, torch.full_like(tokens, transformer.mask_id), sampled)
    return tokens


def tokenizer_config(values: dict[str, Any], where: str) -> VQGANInferenceConfig:
    """The tokenizer's typed config from the dict a MaskGIT model saved (older models saved
    the tokenizer's whole training config: the fields that shape it are kept)."""
    if not isinstance(values, dict) or not values:
        raise CheckpointError(f"{where} has no 'tokenizer' settings: it was not exported by "
                              "ganforge train maskgit")
    names = {f.name for f in dataclasses.fields(VQGANInferenceConfig)}
    return from_dict(VQGANInferenceConfig, {k: v for k, v in values.items() if k in names},
                     where=where)


def build_networks(config: Any, tokenizer: VQGANInferenceConfig) -> dict[str, nn.Module]:
    """The networks of a config with MaskGIT's shape fields (inference or training): the tiny
    text encoder when it trains, the transformer over ``tokenizer``'s code grid, and a
    (fresh, frozen) token decoder of ``tokenizer``'s shape."""
    nets: dict[str, nn.Module] = {}
    if config.text_encoder == "tiny":
        nets["text_encoder"] = build_text_encoder(text_encoder_settings(
            config.text_encoder, config.text_dim, config.text_layers, config.max_tokens))
    text_dim = config.text_dim if config.text_encoder == "tiny" else MINILM_DIM
    nets["transformer"] = MaskedTokenTransformer(
        tokenizer.codebook_size, tokenizer.grid ** 2, text_dim, config.dim, config.layers,
        config.heads)
    nets["decoder"] = TokenDecoder(tokenizer).requires_grad_(False)
    return nets


@dataclass
class MaskGITInferenceConfig:
    """What sampling a trained MaskGIT needs: the transformer's and text encoder's shape, the
    tokenizer's config (its size and grid follow from it) and the default sampling settings."""

    tokenizer: dict[str, Any] = field(default_factory=dict)
    background: str = "white"
    dim: int = 256
    layers: int = 4
    heads: int = 4
    text_encoder: str = "tiny"
    text_dim: int = 256
    text_layers: int = 4
    max_tokens: int = 64
    decode_steps: int = 12
    guidance: float = 2.0
    temperature: float = 1.0
    choice_temperature: float = 4.5

    @property
    def tokenizer_config(self) -> VQGANInferenceConfig:
        return tokenizer_config(self.tokenizer, "maskgit model config")

    @property
    def size(self) -> int:
        """Side of the images the tokenizer decodes."""
        return self.tokenizer_config.size

    @property
    def grid(self) -> int:
        """Side of the code grid."""
        return self.tokenizer_config.grid


class MaskGITModel(TextToImageModel):
    """A trained MaskGIT: ``transformer``, the tokenizer's ``decoder`` (+ ``text_encoder``
    when it was trained with one). Reads token states; its noise is one seed per image."""

    kind = "maskgit"
    sampling_options = ("guidance", "temperature", "decode_steps", "choice_temperature")
    Config = MaskGITInferenceConfig
    uses_tokens = True

    @classmethod
    def build_modules(cls, config: MaskGITInferenceConfig) -> dict[str, nn.Module]:
        return build_networks(config, config.tokenizer_config)

    def text_encoder_settings(self) -> dict[str, Any]:
        c = self.config
        return text_encoder_settings(c.text_encoder, c.text_dim, c.text_layers, c.max_tokens)

    def generate(self, condition: Any, noise: torch.Tensor, guidance: float | None = None,
                 temperature: float | None = None, decode_steps: int | None = None,
                 choice_temperature: float | None = None, **options: Any) -> torch.Tensor:
        """Images [B, 3, S, S] in [-1, 1] for text token states (a TextEmbedding of B prompts)
        and ``noise``: B per-image seeds (int64). Sampling settings default to the model's."""
        reject_options(self.kind, options)
        c = self.config
        transformer, decoder = self.modules["transformer"], self.modules["decoder"]
        grid = c.grid
        check_tokenizer(transformer, decoder, grid, "maskgit model")
        guidance = float(c.guidance if guidance is None else guidance)
        temperature = float(c.temperature if temperature is None else temperature)
        steps = int(c.decode_steps if decode_steps is None else decode_steps)
        choice = float(c.choice_temperature if choice_temperature is None
                       else choice_temperature)
        check_sampling(guidance, temperature, steps, transformer.positions)
        if not math.isfinite(choice) or choice < 0:
            raise ConfigError(f"choice temperature must be a number >= 0, got {choice}")
        codes = decode_tokens(transformer, condition, noise, steps, guidance, temperature,
                              choice)
        return decoder.decode(codes.view(-1, grid, grid))
