"""Text-to-image with a masked generative transformer (MaskGIT, Chang et al. 2022; Muse-style
text conditioning) over the codes of a trained image tokenizer (:mod:`ganforge.models.vqgan`).

Training: the images are turned into code grids once, with the tokenizer; each step masks a
share cos(pi/2 r), r ~ U(0, 1), of every grid and the bidirectional transformer predicts the
masked codes (cross-entropy with label smoothing), reading the caption's token states by
cross-attention. With probability ``caption_dropout`` a sample's caption is dropped (the
transformer sees only its learned null token), which gives classifier-free guidance an
unconditional model for free.

Sampling (iterative parallel decoding with classifier-free guidance) and the networks are in
``ganforge.inference.maskgit``. The exported model holds the tokenizer's codebook and decoder
(network ``decoder``, frozen, copied from the tokenizer at training time), so a saved model
folder is self-contained.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.config import option
from ganforge.data.captions import CaptionedImages
from ganforge.errors import ConfigError
from ganforge.inference.maskgit import (
    MaskGITInferenceConfig,
    MaskGITModel,
    TokenizerMismatch,
    build_networks,
    check_sampling,
    check_tokenizer,
    decode_tokens,
)
from ganforge.inference.vqgan import ImageTokenizer
from ganforge.models.base import Family, Optimization
from ganforge.models.dfgan import CaptionsDataConfig, load_captions
from ganforge.text import TextEmbedding, TextEncoder, build_text_encoder
from ganforge.text.encoders import text_encoder_settings


@dataclass
class MaskGITConfig:
    """Transformer, text encoder and sampling defaults of the masked generative model."""

    tokenizer: str = option("", "run folder or saved model of a trained image tokenizer "
                            "('ganforge train tokenizer')")
    dim: int = option(256, "width of the transformer")
    layers: int = option(4, "transformer blocks")
    heads: int = option(4, "attention heads (must divide --dim)")
    text_encoder: str = option("tiny", "tiny (trainable transformer) or minilm (frozen, "
                               "needs ganforge[minilm])")
    text_dim: int = option(256, "width of the tiny text encoder")
    text_layers: int = option(4, "layers of the tiny text encoder")
    max_tokens: int = option(64, "longest prompt the tiny encoder reads, in UTF-8 bytes")
    caption_dropout: float = option(0.1, "share of training samples whose caption is dropped "
                                    "(the unconditional model that guidance needs)")
    label_smoothing: float = option(0.1, "label smoothing of the masked-token cross-entropy")
    lr: float = option(3e-4, "AdamW learning rate")
    weight_decay: float = option(0.01, "AdamW weight decay")
    beta1: float = option(0.9, "AdamW beta1")
    beta2: float = option(0.96, "AdamW beta2")
    decode_steps: int = option(12, "default parallel decoding steps when sampling")
    guidance: float = option(2.0, "default classifier-free guidance scale (0 = unconditional, "
                             "1 = plain conditional)")
    temperature: float = option(1.0, "default sampling temperature (0 = most likely code)")
    choice_temperature: float = option(4.5, "randomness of which sampled codes are kept early "
                                       "in decoding (MaskGIT's Gumbel noise scale)")

    def validate(self) -> MaskGITConfig:
        """Check values; raise ConfigError naming the first bad one."""
        if not self.tokenizer:
            raise ConfigError("--tokenizer is required: the run folder of a trained tokenizer "
                              "(ganforge train tokenizer)")
        for name in ("dim", "layers", "heads", "text_dim", "text_layers", "max_tokens",
                     "decode_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        if self.dim % self.heads:
            raise ConfigError(f"--heads {self.heads} must divide --dim {self.dim}")
        if self.text_encoder not in ("tiny", "minilm"):
            raise ConfigError(f"--text-encoder {self.text_encoder!r} is unknown; "
                              "known: tiny, minilm")
        if not 0.0 <= self.caption_dropout < 1.0:
            raise ConfigError(f"--caption-dropout must be in [0, 1), got {self.caption_dropout}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        check_sampling(self.guidance, self.temperature, self.decode_steps)
        return self

    def text_encoder_config(self) -> dict[str, Any]:
        """What ``build_text_encoder`` needs."""
        return text_encoder_settings(self.text_encoder, self.text_dim, self.text_layers,
                                     self.max_tokens)


def tokenizer_header(path: str | Path) -> dict[str, Any]:
    """The saved header of the tokenizer at ``path`` (a run folder or its exported model),
    checked to be a tokenizer's: ConfigError naming what it is otherwise."""
    folder, header, _ = ImageTokenizer.locate(path)
    if header.get("kind") != ImageTokenizer.kind:
        raise ConfigError(f"--tokenizer {path}: {folder} holds a {header.get('kind')!r} model, "
                          "expected an image tokenizer (ganforge train tokenizer)")
    return header


def decoder_digest(decoder: nn.Module) -> str:
    """A short fingerprint of a token decoder's weights (to notice a changed tokenizer)."""
    digest = hashlib.blake2b(digest_size=8)
    for name, value in sorted(decoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


class TokenizedCaptions:
    """Captioned images as code grids: batch {"codes": [B, g*g] int64, "captions": [B str]}.

    Batches come from :class:`CaptionedImages` (so flips, balancing and caption choice are
    its own); each image is looked up by its pixels in a table of codes computed once.
    """

    def __init__(self, data: CaptionedImages, table: dict[bytes, torch.Tensor]):
        self.data, self.table = data, table

    @staticmethod
    def key(image: torch.Tensor) -> bytes:
        """The table key of one uint8 image [3, H, W]."""
        return hashlib.blake2b(image.contiguous().numpy().tobytes(), digest_size=16).digest()

    def codes_of(self, images: torch.Tensor) -> torch.Tensor:
        """Codes [B, g*g] of float images [B, 3, H, W] in [-1, 1] from this dataset."""
        pixels = images.add(1).mul(127.5).round().to(torch.uint8).cpu()
        return torch.stack([self.table[self.key(image)] for image in pixels])

    def __len__(self) -> int:
        return len(self.data)

    def batch(self, indices: torch.Tensor, epoch: int) -> dict[str, Any]:
        batch = self.data.batch(indices, epoch)
        return {"codes": self.codes_of(batch["images"]), "captions": batch["captions"]}

    def preview(self, count: int) -> dict[str, Any]:
        batch = self.data.preview(count)
        return {"images": batch["images"], "codes": self.codes_of(batch["images"]),
                "captions": batch["captions"]}


class MaskGIT(Family):
    """Text-to-image masked generative transformer over the codes of an image tokenizer."""

    name = "maskgit"
    task = "text-to-image"
    ModelConfig = MaskGITConfig
    DataConfig = CaptionsDataConfig
    Inference = MaskGITModel
    ema_networks = ("transformer", "text_encoder", "decoder")
    compile_networks = ("transformer",)
    train_defaults: ClassVar[dict[str, Any]] = {
        "batch_size": 32, "lr_decay_start": 0.8, "ema_decay": 0.999, "sample_every": 500,
        "checkpoint_every": 1000, "num_samples": 8}

    def __init__(self, model_config: MaskGITConfig):
        super().__init__(model_config)
        self.frozen_text: TextEncoder | None = None
        if "text_encoder" not in self.networks:
            self.frozen_text = build_text_encoder(model_config.text_encoder_config())
        self.tokenizer_digest = decoder_digest(self.networks["decoder"])

    @classmethod
    def build(cls, model_config: MaskGITConfig) -> dict[str, nn.Module]:
        tokenizer_header(model_config.tokenizer)  # a clear error for another kind of model
        tokenizer = ImageTokenizer.from_pretrained(model_config.tokenizer)
        nets = build_networks(model_config, tokenizer.config)
        nets["decoder"] = tokenizer.token_decoder()
        return nets

    @classmethod
    def inference_config(cls, model_config: MaskGITConfig,
                         data_config: CaptionsDataConfig) -> MaskGITInferenceConfig:
        c = model_config
        return MaskGITInferenceConfig(
            tokenizer=dict(tokenizer_header(c.tokenizer)["config"]),
            background=data_config.background, dim=c.dim, layers=c.layers, heads=c.heads,
            text_encoder=c.text_encoder, text_dim=c.text_dim, text_layers=c.text_layers,
            max_tokens=c.max_tokens, decode_steps=c.decode_steps, guidance=c.guidance,
            temperature=c.temperature, choice_temperature=c.choice_temperature)

    def export(self, nets: Mapping[str, nn.Module], data_config: CaptionsDataConfig,
               trained_steps: int) -> MaskGITModel:
        """The transformer and text encoder as trained (their EMA copies) with the tokenizer's
        frozen codebook and decoder, the tokenizer's config and its weights' digest: the
        saved model samples without the tokenizer's folder."""
        config = self.inference_config(self.config, data_config)
        modules = {name: nets[name] for name in ("text_encoder", "transformer") if name in nets}
        modules["decoder"] = nets["decoder"]
        check_tokenizer(modules["transformer"], modules["decoder"], config.grid,
                        f"maskgit tokenizer {self.config.tokenizer}")
        return MaskGITModel(config, modules, {"trained_steps": trained_steps,
                                              "tokenizer_digest": self.tokenizer_digest})

    def load_data(self, data_config: CaptionsDataConfig, seed: int) -> TokenizedCaptions:
        device = next(self.networks["transformer"].parameters()).device
        tokenizer = ImageTokenizer.from_pretrained(self.config.tokenizer, device)
        data = load_captions(data_config, tokenizer.size, self.config.text_encoder,
                             self.config.max_tokens, seed)
        images = data.images
        if data_config.flip:
            images = torch.cat([images, images.flip(-1)])
        codes = tokenizer.encode(images.float().div(127.5).sub(1)).flatten(1).cpu()
        table = {TokenizedCaptions.key(image): row for image, row in zip(images, codes,
                                                                         strict=True)}
        return TokenizedCaptions(data, table)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c, n = self.config, self.networks
        params = list(n["transformer"].parameters())
        if "text_encoder" in n:
            params += list(n["text_encoder"].parameters())
        return {"transformer": torch.optim.AdamW(params, lr=c.lr, betas=(c.beta1, c.beta2),
                                                 weight_decay=c.weight_decay)}

    def encode_text(self, nets: Mapping[str, nn.Module], prompts: Sequence[str]
                    ) -> TextEmbedding:
        """Token states of the prompts (a frozen encoder runs without gradients)."""
        if "text_encoder" in nets:
            with warnings.catch_warnings():  # truncation was reported once at load time
                warnings.simplefilter("ignore")
                return nets["text_encoder"].encode(prompts)
        assert self.frozen_text is not None
        with torch.no_grad():
            device = next(self.networks.parameters()).device
            return self.frozen_text.to(device).encode(prompts)

    def step(self, nets: Mapping[str, nn.Module], batch: dict[str, Any],
             opt: Optimization) -> dict[str, torch.Tensor]:
        c = self.config
        codes = batch["codes"]
        b, n = codes.shape
        transformer = nets["transformer"]
        device = codes.device
        ratio = torch.cos(torch.rand(b, device=device) * math.pi / 2)
        count = (ratio * n).ceil().clamp(1, n)
        rank = torch.rand(b, n, device=device).argsort(1).argsort(1)
        masked = rank < count[:, None]
        inputs = codes.masked_fill(masked, transformer.mask_id)
        keep_text = torch.rand(b, device=device) >= c.caption_dropout
        with opt.autocast():
            text = self.encode_text(nets, batch["captions"])
            context, context_mask = transformer.context(text.tokens, text.mask, keep_text)
            logits = transformer(inputs, context, context_mask)
            loss = F.cross_entropy(logits[masked].float(), codes[masked],
                                   label_smoothing=c.label_smoothing)
        opt.minimize("transformer", loss)
        accuracy = (logits[masked].argmax(-1) == codes[masked]).float().mean()
        return {"ce": loss.detach(), "masked_accuracy": accuracy.detach()}

    @torch.no_grad()
    def sample_rows(self, nets: Mapping[str, nn.Module],
                    batch: dict[str, Any]) -> list[torch.Tensor]:
        real, codes = batch["images"], batch["codes"]
        decoder = nets["decoder"]
        grid = math.isqrt(codes.shape[1])
        text = self.encode_text(nets, batch["captions"])
        seeds = torch.arange(len(codes))
        c = self.config
        generated = decode_tokens(nets["transformer"], text, seeds, c.decode_steps, c.guidance,
                                  c.temperature, c.choice_temperature)
        return [real, decoder.decode(codes.view(-1, grid, grid)),
                decoder.decode(generated.view(-1, grid, grid))]

    def state_dict(self) -> dict[str, Any]:
        return {"tokenizer_digest": self.tokenizer_digest}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("tokenizer_digest")
        if saved is not None and saved != self.tokenizer_digest:
            raise TokenizerMismatch(
                f"tokenizer {Path(self.config.tokenizer)} has changed since this run started "
                "(its codebook or decoder weights differ): its codes would not be the ones the "
                "transformer learnt; resume with the original tokenizer or start a new run")
