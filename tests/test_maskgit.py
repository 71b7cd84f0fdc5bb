"""Image tokenizer + masked generative transformer: they learn, decode, round-trip, refuse
mismatches."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ganforge.cli import main
from ganforge.config import RunConfig, to_dict
from ganforge.data.captions import CaptionedImages
from ganforge.data.synthetic import CAPTION_COLOURS, write_captioned_shapes
from ganforge.errors import ConfigError
from ganforge.inference import load_model
from ganforge.inference.maskgit import MaskGITModel, TokenizerMismatch, decode_tokens
from ganforge.inference.vqgan import ImageTokenizer
from ganforge.models.maskgit import MaskGITConfig
from ganforge.models.vqgan import VQGANConfig
from ganforge.nn.quantize import VectorQuantizer
from ganforge.pipelines import TextToImagePipeline
from ganforge.train.loop import train

TOKENIZER = {"size": 16, "downsample": 1, "channels": 16, "codebook_size": 32, "code_dim": 8,
             "discriminator_channels": 8, "adversarial_start": 10_000, "lr": 2e-3}
MASKGIT = {"dim": 64, "layers": 2, "heads": 4, "text_dim": 32, "text_layers": 1, "lr": 2e-3,
           "caption_dropout": 0.1, "decode_steps": 6}


def _train_config(steps: int, batch: int = 16, **extra: object) -> dict[str, object]:
    return {"steps": steps, "batch_size": batch, "progress": False, "sample_every": steps,
            "checkpoint_every": steps, "lr_decay_start": 1.0, **extra}


def _tokenizer(captions: Path, out: Path, steps: int, seed: int = 0, **model: object) -> Path:
    config = RunConfig(family="tokenizer", model={**TOKENIZER, **model},
                       data={"captions": str(captions)},
                       train=_train_config(steps, seed=seed, ema_decay=0.0))
    train(config, out)
    return out


def _maskgit(captions: Path, tokenizer: Path, out: Path, steps: int, **model: object
             ) -> RunConfig:
    return RunConfig(family="maskgit",
                     model={**MASKGIT, "tokenizer": str(tokenizer), **model},
                     data={"captions": str(captions)},
                     train=_train_config(steps, batch=32, ema_decay=0.95))


@pytest.fixture(scope="module")
def captions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_captioned_shapes(tmp_path_factory.mktemp("mgdata"), 96, 16, seed=0)


@pytest.fixture(scope="module")
def tokenizer_run(tmp_path_factory: pytest.TempPathFactory, captions: Path) -> Path:
    return _tokenizer(captions, tmp_path_factory.mktemp("tok") / "run", 120)


@pytest.fixture(scope="module")
def maskgit_run(tmp_path_factory: pytest.TempPathFactory, captions: Path,
                tokenizer_run: Path) -> Path:
    run = tmp_path_factory.mktemp("mg") / "run"
    train(_maskgit(captions, tokenizer_run, run, 60), run)
    return run


def test_tokenizer_reconstructs_and_uses_its_codebook(captions: Path,
                                                      tokenizer_run: Path) -> None:
    tokenizer = ImageTokenizer.from_pretrained(tokenizer_run)
    images = CaptionedImages.load(captions, 16).images.float() / 127.5 - 1
    codes = tokenizer.encode(images)
    assert codes.shape == (len(images), 8, 8) and codes.dtype == torch.long
    error = (tokenizer.decode(codes) - images).abs().mean().item()
    blank = (images - images.mean(0)).abs().mean().item()  # the mean image as a guess
    assert error < 0.12 < blank, (error, blank)
    used = codes.unique().numel() / tokenizer.codebook_size
    assert used >= 0.6, used


def test_dead_codes_are_restarted_from_the_batch() -> None:
    torch.manual_seed(0)
    latents = torch.randn(8, 4, 4, 4).abs()  # all in the positive orthant
    far = -torch.rand(16, 4) - 0.1  # codes in the opposite orthant ...
    far[0] = 1.0  # ... but one: every latent picks it
    state = {"codebook.weight": far, "usage_average": torch.full((16,), 1 / 16)}
    stuck = VectorQuantizer(16, 4, decay=0.5, dead_threshold=0.0).train()
    restarting = VectorQuantizer(16, 4, decay=0.5).train()
    for quantizer in (stuck, restarting):
        quantizer.load_state_dict(state)
        restarted = sum(float(quantizer(latents).restarted) for _ in range(10))
    assert restarted == 15  # the 15 unused codes, once each
    assert stuck.eval()(latents).usage.item() == 1 / 16
    assert restarting.eval()(latents).usage.item() >= 0.75


def _ink_colour(image) -> np.ndarray | None:  # type: ignore[no-untyped-def]
    pixels = np.asarray(image).reshape(-1, 3).astype(float)
    ink = pixels[(255 - pixels).sum(axis=1) > 120]
    return ink.mean(axis=0) if len(ink) else None


def test_generated_colour_follows_the_text(maskgit_run: Path) -> None:
    """The colour named in the prompt is the colour drawn, well above the 25% of chance."""
    pipe = TextToImagePipeline.from_pretrained(maskgit_run)
    names = list(CAPTION_COLOURS)
    reference = np.array([CAPTION_COLOURS[n] for n in names], dtype=float)
    hits = total = 0
    for name in names:
        for image in pipe([f"a {name} circle", f"a {name} square"], num_images=6, seed=1):
            ink = _ink_colour(image)
            total += 1
            if ink is not None:
                hits += names[int(np.argmin(((reference - ink) ** 2).sum(1)))] == name
    assert hits / total >= 0.5, hits / total


def test_one_step_and_many_step_decoding_give_valid_grids(maskgit_run: Path) -> None:
    pipe = TextToImagePipeline.from_pretrained(maskgit_run)
    transformer = pipe.networks["transformer"]
    text = pipe.encode(["a red circle", "a blue square"])
    seeds = pipe.noise(2, seed=3)
    for steps in (1, 6, 64):
        codes = decode_tokens(transformer, text, seeds, steps, 2.0, 1.0, 4.5)
        assert codes.shape == (2, 64)
        assert codes.min() >= 0 and codes.max() < transformer.codebook_size
    greedy = decode_tokens(transformer, text, seeds, 1, 1.0, 0.0, 0.0)
    assert torch.equal(greedy, decode_tokens(transformer, text, seeds, 1, 1.0, 0.0, 0.0))
    with pytest.raises(ConfigError, match="decode steps"):
        pipe("a red circle", decode_steps=0)
    with pytest.raises(ConfigError, match="guidance"):
        pipe("a red circle", guidance=-1)


def test_guidance_zero_is_the_unconditional_model(maskgit_run: Path) -> None:
    pipe = TextToImagePipeline.from_pretrained(maskgit_run)
    red = pipe("a red circle", num_images=2, seed=5, guidance=0)
    blue = pipe("a blue square", num_images=2, seed=5, guidance=0)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(red, blue,
                                                                            strict=True))
    transformer = pipe.networks["transformer"]
    codes = decode_tokens(transformer, None, pipe.noise(2, 5), 6, 1.0, 1.0, 4.5)
    unconditional = pipe.to_images(pipe.networks["decoder"].decode(codes.view(2, 8, 8)))
    assert all(np.array_equal(np.asarray(a), np.asarray(b))
               for a, b in zip(red, unconditional, strict=True))
    guided = pipe("a red circle", num_images=2, seed=5, guidance=3)
    assert not all(np.array_equal(np.asarray(a), np.asarray(b))
                   for a, b in zip(red, guided, strict=True))


def test_pipeline_round_trip_and_per_image_seeds(maskgit_run: Path, tokenizer_run: Path,
                                                 tmp_path: Path) -> None:
    pipe = TextToImagePipeline.from_pretrained(maskgit_run)
    first = pipe(["a green triangle", "a red square"], num_images=3, seed=7)
    saved = pipe.save_pretrained(tmp_path / "saved")
    hidden = tokenizer_run.with_name("hidden")
    tokenizer_run.rename(hidden)  # the saved folder holds the decoder it needs
    try:
        again = TextToImagePipeline.from_pretrained(saved)
        second = again(["a green triangle", "a red square"], num_images=3, seed=7)
    finally:
        hidden.rename(tokenizer_run)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(first, second,
                                                                            strict=True))
    alone = again("a red square", num_images=2, seed=7)  # image j depends on (seed, j) only
    assert np.array_equal(np.asarray(alone[1]), np.asarray(second[4]))
    with pytest.raises(ConfigError, match="no noise vector"):
        again("a red square", truncation=0.5)


def test_cli_generate_with_sampling_options(maskgit_run: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "gen"
    assert main(["generate", "a red circle", "-n", "2", "--model", str(maskgit_run),
                 "--guidance", "1.5", "--temperature", "0.5", "--decode-steps", "4",
                 "--out", str(out)]) == 0
    assert len(list(out.glob("a-red-circle_s0_*.png"))) == 2
    assert main(["generate", "a red circle", "--model", str(maskgit_run),
                 "--decode-steps", "99", "--out", str(out)]) == 1
    assert "decode steps must be in 1..64" in capsys.readouterr().err


def test_tokenizer_mismatches_are_refused(captions: Path, tokenizer_run: Path, maskgit_run: Path,
                                          tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    pipe = TextToImagePipeline.from_pretrained(maskgit_run)
    other = ImageTokenizer.from_pretrained(_tokenizer(captions, tmp_path / "tok16", 1,
                                                      codebook_size=16))
    pipe.networks["decoder"] = other.token_decoder()
    with pytest.raises(TokenizerMismatch, match=r"16 codes on a 8x8 grid.*32 codes"):
        pipe("a red circle")

    # --tokenizer must name a tokenizer
    assert main(["train", "maskgit", "--tokenizer", str(maskgit_run), "--captions",
                 str(captions), "--out", str(tmp_path / "bad"), "--steps", "1"]) == 1
    assert "expected an image tokenizer" in capsys.readouterr().err

    # resuming after the tokenizer changed (same shapes, other weights)
    tok = _tokenizer(captions, tmp_path / "tokA", 1)
    run = tmp_path / "mgA"
    train(_maskgit(captions, tok, run, 1), run)
    shutil.rmtree(tok)
    _tokenizer(captions, tok, 1, seed=1)
    assert main(["train", "maskgit", "--resume", str(run), "--steps", "2"]) == 1
    assert "has changed since this run started" in capsys.readouterr().err


def _as_pipeline_v1(model_dir: Path, out: Path, task: str, family: str,
                    model: dict[str, object], info: dict[str, object]) -> Path:
    """A copy of a saved model in the format pipelines had before saved artifacts (same
    weight names, the training config's model section and an info dict in the header)."""
    out.mkdir()
    shutil.copy(model_dir / "model.safetensors", out / "model.safetensors")
    (out / "config.json").write_text(json.dumps({
        "format": "ganforge-pipeline-v1", "ganforge_version": "0.1.0", "task": task,
        "family": family, "model": model, "info": info, "trained_steps": 7}))
    return out


def test_models_saved_before_artifacts_load(tokenizer_run: Path, maskgit_run: Path,
                                            tmp_path: Path) -> None:
    tokenizer = ImageTokenizer.from_pretrained(tokenizer_run)
    old_tokenizer = ImageTokenizer.from_pretrained(_as_pipeline_v1(
        tokenizer_run / "model", tmp_path / "tok", "image-tokenizer", "tokenizer",
        to_dict(VQGANConfig(**TOKENIZER)),
        {"size": 16, "grid": 8, "codebook_size": 32, "background": "white"}))
    assert old_tokenizer.config == tokenizer.config and old_tokenizer.trained_steps == 7
    assert all(torch.equal(a, b) for a, b in zip(old_tokenizer.tensors().values(),
                                                 tokenizer.tensors().values(), strict=True))

    model = load_model(maskgit_run)
    assert isinstance(model, MaskGITModel) and model.config.tokenizer_config == tokenizer.config
    old = load_model(_as_pipeline_v1(
        maskgit_run / "model", tmp_path / "mg", "text-to-image", "maskgit",
        to_dict(MaskGITConfig(**MASKGIT, tokenizer=str(tokenizer_run))),
        {"size": 16, "grid": 8, "codebook_size": 32, "text_condition": "tokens",
         "tokenizer": to_dict(VQGANConfig(**TOKENIZER)), "background": "white",
         "decode_steps": 6, "guidance": 2.0, "temperature": 1.0, "choice_temperature": 4.5}))
    assert isinstance(old, MaskGITModel) and old.config.tokenizer_config == tokenizer.config
    assert (old.config.size, old.config.grid, old.config.decode_steps) == (16, 8, 6)
    text = model.modules["text_encoder"].encode(["a red circle", "a blue square"])
    seeds = torch.tensor([3, 4])
    with torch.no_grad():
        assert torch.equal(old.generate(text, seeds), model.generate(text, seeds))
    with pytest.raises(ConfigError, match="take no strength option"):
        model.generate(text, seeds, strength=1.0)
