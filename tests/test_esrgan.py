"""Super-resolution GAN (ESRGAN school): learning, tiled inference, pipeline, CLI, errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from ganforge.cli import main
from ganforge.config import RunConfig
from ganforge.data.images import pil_to_float
from ganforge.errors import CheckpointError, ConfigError, DataError
from ganforge.inference import load_model
from ganforge.inference.esrgan import ESRGANInferenceConfig, ESRGANModel
from ganforge.metrics.image import psnr
from ganforge.models.esrgan import (
    bicubic_downscale,
    bicubic_upscale,
    gradient_frequency_loss,
    relativistic_loss,
)
from ganforge.pipelines import DEFAULT_UPSCALER, UpscalePipeline
from ganforge.pipelines.upscale import upscale_tiled
from ganforge.train.loop import train

TINY = {"channels": 16, "growth": 8, "blocks": 1, "discriminator_channels": 8}


def texture(seed: int, size: int = 64) -> Image.Image:
    """A synthetic glyph-like texture: black and white rectangles and discs with black
    outlines, sharp edges that bicubic up-sampling blurs."""
    rng = random.Random(seed)
    im = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(im)
    for _ in range(5):
        x0, y0 = rng.randrange(size * 3 // 4), rng.randrange(size * 3 // 4)
        box = (x0, y0, x0 + rng.randrange(size // 5, size // 2),
               y0 + rng.randrange(size // 5, size // 2))
        fill = "black" if rng.random() < 0.5 else "white"
        (draw.rectangle if rng.random() < 0.5 else draw.ellipse)(box, fill=fill,
                                                                  outline="black", width=2)
    return im


def psnr_gain(pipe: UpscalePipeline, images: list[Image.Image]) -> tuple[float, float]:
    """Mean PSNR (dB) of the model's and of bicubic x4 reconstructions of ``images``."""
    lows = [bicubic_downscale(im, 4) for im in images]
    target = pil_to_float(images).add(1).div(2)
    ours = pil_to_float(pipe(lows)).add(1).div(2)
    bicubic = pil_to_float([bicubic_upscale(im, 4) for im in lows]).add(1).div(2)
    return psnr(ours, target).mean().item(), psnr(bicubic, target).mean().item()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny seeded run on 16 textures: 120 steps, the first 110 L1-only warm-up."""
    root = tmp_path_factory.mktemp("esrgan")
    (root / "images").mkdir()
    for i in range(16):
        texture(i).save(root / "images" / f"{i:02d}.png")
    config = RunConfig(
        family="esrgan", model={**TINY, "warmup_steps": 110, "lr_generator": 2e-3},
        data={"images": str(root / "images"), "size": 64, "crop": 32},
        train={"steps": 120, "batch_size": 8, "log_every": 5, "sample_every": 120,
               "checkpoint_every": 120, "progress": False, "seed": 0, "lr_decay_start": 1.0,
               "ema_decay": 0.5})
    train(config, root / "run")
    return root / "run"


def test_sr_beats_bicubic_on_synthetic_textures(trained: Path) -> None:
    held_out = [texture(100 + i) for i in range(6)]
    ours, bicubic = psnr_gain(UpscalePipeline.from_pretrained(trained), held_out)
    untrained, _ = psnr_gain(_pipe(zero_last=True), held_out)  # torch bicubic, not PIL's
    assert ours > bicubic + 0.2, (ours, bicubic)
    assert ours > untrained + 0.2, (ours, untrained)


def test_warmup_is_l1_only_then_the_critic_trains(trained: Path) -> None:
    rows = [json.loads(line) for line in (trained / "logs" / "scalars.jsonl").open()]
    warm = [r for r in rows if r["step"] <= 110]
    gan = [r for r in rows if r["step"] > 110]
    assert warm and gan
    assert all(r["loss/critic"] == 0 and r["loss/feature"] == 0 for r in warm)
    assert all(r["loss/critic"] > 0 and r["loss/feature"] > 0 for r in gan)


def test_losses() -> None:
    x = torch.rand(2, 3, 16, 16)
    assert gradient_frequency_loss(x, x).item() == 0
    assert gradient_frequency_loss(x, x.flip(-1)).item() > 0
    confident = torch.full((2, 1, 4, 4), 5.0)
    # the critic is right (real high, fake low): small critic loss, large generator loss
    assert relativistic_loss(confident, -confident, fake_is_real=False) < 0.01
    assert relativistic_loss(confident, -confident, fake_is_real=True) > 5


def _pipe(seed: int = 0, zero_last: bool = False) -> UpscalePipeline:
    """An untrained upscaler: bicubic up-sampling exactly with ``zero_last``, else its output
    layer is randomised (so that it is not just bicubic)."""
    torch.manual_seed(seed)
    model = ESRGANModel.create(ESRGANInferenceConfig(channels=16, growth=8, blocks=1))
    if not zero_last:
        torch.nn.init.normal_(model.modules["generator"].conv_last.weight, std=0.05)
    return UpscalePipeline(model)


@pytest.mark.parametrize("model", ["random", "shipped"])
def test_tiled_matches_untiled(model: str) -> None:
    pipe = _pipe() if model == "random" else UpscalePipeline.from_pretrained()
    images = pil_to_float([texture(7, 80).crop((0, 0, 72, 56))])
    whole = pipe.upscale_tensor(images, tile=None)
    assert whole.shape == (1, 3, 224, 288)
    assert torch.equal(pipe.upscale_tensor(images, tile=128), whole)  # one tile: no seams
    tiled = pipe.upscale_tensor(images, tile=32, tile_overlap=12)
    error = (tiled - whole).abs()
    assert error.mean() < 2e-3 and error.max() < 0.1, (error.mean(), error.max())


def test_pipeline_round_trip(tmp_path: Path) -> None:
    pipe = _pipe()
    pipe.save_pretrained(tmp_path / "model")
    loaded = UpscalePipeline.from_pretrained(tmp_path / "model")
    rgba = Image.new("RGBA", (20, 12), (0, 0, 0, 0))
    rgba.paste((200, 30, 30, 255), (4, 4, 12, 10))
    rgba.save(tmp_path / "in.png")
    first = pipe([rgba, tmp_path / "in.png"])
    second = loaded(tmp_path / "in.png")
    assert [im.size for im in first] == [(80, 48), (80, 48)]
    assert first[0].tobytes() == first[1].tobytes() == second[0].tobytes()
    corner = first[0].getpixel((0, 0))  # the network saw white; the input's alpha is kept
    assert first[0].mode == "RGBA" and min(corner[:3]) > 200 and corner[3] == 0


def test_shipped_upscaler_loads_as_a_model_and_round_trips(tmp_path: Path) -> None:
    """The shipped folder (saved before artifacts) is an ESRGANModel; saved again in the
    artifact format it gives the same output."""
    model = load_model(DEFAULT_UPSCALER)
    assert isinstance(model, ESRGANModel) and model.scale == 4 and model.background == "white"
    images = pil_to_float([texture(3, 16)])
    with torch.no_grad():
        out = model.upscale(images)
        assert out.shape == (1, 3, 64, 64) and out.dtype == torch.float32
        again = load_model(model.save_pretrained(tmp_path / "model"))
        assert again.config == model.config and torch.equal(again.upscale(images), out)


def test_bad_inputs(tmp_path: Path) -> None:
    pipe = _pipe()
    with pytest.raises(DataError, match="too small"):
        pipe(Image.new("RGB", (5, 40)))
    with pytest.raises(DataError, match="pixel"):
        pipe(Image.new("RGB", (1100, 1000)))
    for tile, overlap in [(16, 16), (8, 16), (0, 0), (-4, 0), (32, -1)]:
        with pytest.raises(ConfigError, match="tile"):
            pipe(Image.new("RGB", (16, 16)), tile=tile, tile_overlap=overlap)
    with pytest.raises(DataError, match="does not exist"):
        pipe(tmp_path / "nope.png")
    with pytest.raises(CheckpointError, match="does not exist"):
        UpscalePipeline.from_pretrained(tmp_path / "missing")
    with pytest.raises(ConfigError):
        upscale_tiled(pipe.networks["generator"], torch.zeros(1, 3, 16, 16), 4, 8, 8)


@pytest.mark.parametrize("argv,message", [
    (["--tile", "16", "--tile-overlap", "16"], "larger than the tile overlap"),
    (["--tile", "0"], "must be positive"),
    (["--model", "/nonexistent/model"], "does not exist"),
])
def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 argv: list[str], message: str) -> None:
    texture(0, 16).save(tmp_path / "in.png")
    assert main(["upscale", str(tmp_path / "in.png"), "--out", str(tmp_path / "out"),
                 *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ganforge: error:") and message in err and "\n" not in err


def test_cli_too_small_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Image.new("RGB", (4, 4)).save(tmp_path / "tiny.png")
    assert main(["upscale", str(tmp_path / "tiny.png"), "--out", str(tmp_path / "out")]) == 1
    assert "too small" in capsys.readouterr().err


def test_shipped_default_beats_bicubic() -> None:
    assert (DEFAULT_UPSCALER / "README.md").is_file()
    assert (DEFAULT_UPSCALER / "model.safetensors").stat().st_size < 5 * 1024 * 1024
    ours, bicubic = psnr_gain(UpscalePipeline.from_pretrained(),
                              [texture(200 + i, 96) for i in range(4)])
    assert ours > bicubic, (ours, bicubic)


def test_cli_upscale_and_generate_chain(tmp_path: Path) -> None:
    texture(1, 32).save(tmp_path / "a.png")
    assert main(["upscale", str(tmp_path / "a.png"), "--out", str(tmp_path / "up"),
                 "--tile", "16", "--tile-overlap", "4"]) == 0
    assert Image.open(tmp_path / "up" / "a.png").size == (128, 128)
    assert main(["generate", "red heart", "-n", "1", "--out", str(tmp_path / "gen"),
                 "--upscale"]) == 0
    outputs = [p for p in (tmp_path / "gen").glob("*.png") if p.name != "grid.png"]
    assert len(outputs) == 1 and Image.open(outputs[0]).size == (256, 256)
