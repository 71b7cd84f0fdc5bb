"""pix2pix: pairing by name, aligned augmentation, a tiny learning test, exact resume, and
transparency (RGBA in, RGBA out) through translate, the shipped restyle model and upscale."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.cli import main
from ganforge.config import RunConfig
from ganforge.data.paired import PairedImages, pair_by_name
from ganforge.data.synthetic import write_shape_domains
from ganforge.errors import ConfigError, DataError
from ganforge.metrics.translation import evaluate_translation
from ganforge.pipelines import DEFAULT_TRANSLATOR, ImageToImagePipeline, UpscalePipeline
from ganforge.train.checkpoint import load_checkpoint
from ganforge.train.loop import train

TINY = {"generator_channels": 8, "generator_max_channels": 32, "generator_depth": 4,
        "discriminator_channels": 8, "discriminator_layers": 2, "dropout": 0.0}


def _config(a: Path, b: Path, steps: int, **train_values: object) -> RunConfig:
    return RunConfig(family="pix2pix", model=dict(TINY),
                     data={"domain_a": str(a), "domain_b": str(b), "size": 16, "jitter": 1},
                     train={"steps": steps, "batch_size": 8, "progress": False, "seed": 0,
                            "log_every": 10, "sample_every": steps, "checkpoint_every": steps,
                            **train_values})


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Paired 16 px shapes: 48 to train on, 24 others (another seed) to score."""
    root = tmp_path_factory.mktemp("pix2pix")
    a, b = write_shape_domains(root / "train", count=48, size=16, seed=0)
    val_a, val_b = write_shape_domains(root / "val", count=24, size=16, seed=1)
    return {"root": root, "a": a, "b": b, "val_a": val_a, "val_b": val_b}


@pytest.fixture(scope="module")
def trained(shapes: dict[str, Path]) -> Path:
    """A tiny pix2pix trained for 500 steps on the colour swap of the shapes (~4 s)."""
    run = shapes["root"] / "run"
    train(_config(shapes["a"], shapes["b"], 500, lr_decay_start=0.7, ema_decay=0.99,
                  eval_every=250), run)
    return run


# ----------------------------------------------------------------------------- pairing
def _png(path: Path, colour: tuple[int, ...] = (200, 30, 30), mode: str = "RGB",
         size: int = 16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (size, size), colour).save(path)
    return path


def test_pairs_by_name_and_reports_the_names_on_one_side(tmp_path: Path) -> None:
    for name in ("x.png", "y.png", "only_a1.png", "only_a2.png", "sub/z.png"):
        _png(tmp_path / "a" / name)
    for name in ("x.webp", "y.png", "only_b.png", "sub/z.png", "z.png"):
        _png(tmp_path / "b" / name)
    with pytest.warns(UserWarning) as caught:
        pairing = pair_by_name(tmp_path / "a", tmp_path / "b")
    assert [(p.relative_to(tmp_path).as_posix(), q.relative_to(tmp_path).as_posix())
            for p, q in pairing.pairs] == [("a/sub/z.png", "b/sub/z.png"),
                                           ("a/x.png", "b/x.webp"), ("a/y.png", "b/y.png")]
    message = str(caught[0].message)
    assert "3 pairs matched" in message
    assert "2 file(s) only in" in message and "only_a1, only_a2" in message
    assert "2 file(s) only in" in message and "only_b, z" in message


def test_no_shared_name_is_an_error_naming_both_folders(tmp_path: Path) -> None:
    _png(tmp_path / "a" / "cat.png")
    _png(tmp_path / "b" / "dog.png")
    with pytest.raises(DataError, match=r"share no file names") as info:
        pair_by_name(tmp_path / "a", tmp_path / "b")
    assert "cat" in str(info.value) and "dog" in str(info.value)


def test_training_warns_about_unpaired_files(shapes: dict[str, Path], tmp_path: Path) -> None:
    b = tmp_path / "b"
    b.mkdir()
    for path in sorted(shapes["b"].glob("*.png"))[:-3]:  # three targets missing
        (b / path.name).write_bytes(path.read_bytes())
    with pytest.warns(UserWarning, match=r"45 pairs matched.*3 file\(s\) only in"):
        result = train(_config(shapes["a"], b, 1), tmp_path / "run")
    assert result.step == 1


def test_augmentation_moves_both_images_of_a_pair_alike() -> None:
    torch.manual_seed(0)
    images = torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8)
    data = PairedImages(images, images.clone(), flip=True, jitter=3)
    batch = data.batch(torch.arange(32), epoch=0)
    assert torch.equal(batch["a"], batch["b"])  # the same shift and flip on both sides
    moved = (batch["a"] != data.preview(32)["a"]).flatten(1).any(1)
    assert moved.float().mean() > 0.5


def test_size_must_suit_the_unet_depth(shapes: dict[str, Path], tmp_path: Path) -> None:
    config = _config(shapes["a"], shapes["b"], 1)
    config.model["generator_depth"] = 5  # 16 px is not a multiple of 32
    with pytest.raises(ConfigError, match="multiple of"):
        train(config, tmp_path / "run")


# ---------------------------------------------------------------------------- learning
def test_learns_a_paired_colour_swap_beyond_the_identity(trained: Path,
                                                         shapes: dict[str, Path]) -> None:
    pipe = ImageToImagePipeline.from_pretrained(trained)
    report = evaluate_translation(pipe, shapes["val_a"], shapes["val_b"], progress=False,
                                  fid_weights=Path("/nonexistent/no-fid.pt"))
    # held-out shapes: the identity is off by ~0.25 per pixel; the model must be far closer
    assert report.identity["l1"] > 0.2
    assert report.translation["l1"] < 0.35 * report.identity["l1"], report.table()
    assert report.translation["ssim"] > report.identity["ssim"]
    logged = [json.loads(line) for line in (trained / "logs" / "scalars.jsonl").open()]
    paired_l1 = [row["quality/paired_l1"] for row in logged if "quality/paired_l1" in row]
    assert len(paired_l1) == 2 and paired_l1[1] < paired_l1[0]  # the loop's quality hook


def test_resize_decoder_with_feature_matching_learns_and_reloads(
        shapes: dict[str, Path], tmp_path: Path) -> None:
    """The checkerboard-free decoder (nearest x2 + conv3x3) with a low L1 weight and the
    critic-feature-matching loss learns the swap too; the saved model rebuilds that decoder."""
    config = _config(shapes["a"], shapes["b"], 500, lr_decay_start=0.7, ema_decay=0.99)
    config.model.update(upsample="resize", l1_weight=10.0, feature_matching_weight=10.0)
    train(config, tmp_path / "run")
    logged = [json.loads(line) for line in (tmp_path / "run" / "logs" / "scalars.jsonl").open()]
    fm = [row["loss/fm"] for row in logged if "loss/fm" in row]
    assert fm and fm[-1] < fm[0]
    pipe = ImageToImagePipeline.from_pretrained(tmp_path / "run")
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in pipe.networks.modules())
    report = evaluate_translation(pipe, shapes["val_a"], shapes["val_b"], progress=False,
                                  fid_weights=Path("/nonexistent/no-fid.pt"))
    assert report.translation["l1"] < 0.35 * report.identity["l1"], report.table()
    bad = _config(shapes["a"], shapes["b"], 1)
    bad.model["upsample"] = "bilinear"
    with pytest.raises(ConfigError, match="--upsample 'bilinear' is unknown"):
        train(bad, tmp_path / "bad")


def test_residual_unet_starts_as_the_identity_and_learns(
        shapes: dict[str, Path], tmp_path: Path) -> None:
    """--residual: an untrained U-Net returns its input exactly; trained, it learns the swap
    beyond the identity, and the saved model rebuilds the residual network."""
    from ganforge.models.pix2pix import Pix2Pix, Pix2PixConfig

    untrained = Pix2Pix.build(Pix2PixConfig(**TINY, residual=True, upsample="resize"))
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(untrained["generator"](images), images)
    config = _config(shapes["a"], shapes["b"], 500, lr_decay_start=0.7, ema_decay=0.99)
    config.model.update(upsample="resize", residual=True)
    train(config, tmp_path / "run")
    pipe = ImageToImagePipeline.from_pretrained(tmp_path / "run")
    assert pipe.model.config.residual
    report = evaluate_translation(pipe, shapes["val_a"], shapes["val_b"], progress=False,
                                  fid_weights=Path("/nonexistent/no-fid.pt"))
    # a whole-image colour swap is the residual form's hardest case (its last layer starts
    # at zero, so it learns later): half the identity's error in the same 500 steps
    assert report.translation["l1"] < 0.55 * report.identity["l1"], report.table()


def test_residual_blur_only_shades_smoothly_and_reloads(shapes: dict[str, Path],
                                                       tmp_path: Path) -> None:
    """--residual-blur 4: whatever the trained network, its change to the input is constant
    over 4 x 4 blocks brought back by bilinear up-sampling (no noise, no new edges); the saved
    model keeps the setting. Without --residual it is refused."""
    import torch.nn.functional as F

    from ganforge.models.pix2pix import Pix2PixConfig

    with pytest.raises(ConfigError, match="residual-blur"):
        Pix2PixConfig(residual_blur=4).validate()
    config = _config(shapes["a"], shapes["b"], 30)
    config.model.update(upsample="resize", residual=True, residual_blur=4)
    train(config, tmp_path / "run")
    pipe = ImageToImagePipeline.from_pretrained(tmp_path / "run")
    assert pipe.model.config.residual_blur == 4
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        change = pipe.model.modules["generator"](images) - images
    # the change lies in the span of bilinear up-samplings of a 4 x 4 grid: project onto it
    basis = F.interpolate(torch.eye(16).view(16, 1, 4, 4), size=(16, 16), mode="bilinear",
                          align_corners=False).view(16, 256).T
    flat = change.reshape(-1, 256).T
    projected = basis @ torch.linalg.lstsq(basis, flat).solution
    assert change.abs().max() > 1e-3  # it learnt a change
    assert torch.allclose(projected, flat, atol=1e-4)
    noise = torch.rand(256, 1)  # (a change with detail does not fit)
    assert not torch.allclose(basis @ torch.linalg.lstsq(basis, noise).solution, noise,
                              atol=1e-2)


def _shrunk_copies(source: Path, out: Path, scale: float) -> Path:
    """Each image of ``source`` drawn at ``scale`` of its size in the middle of a white
    canvas (a target domain that draws its subject smaller)."""
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*.png")):
        with Image.open(path) as im:
            side = round(im.width * scale)
            canvas = Image.new("RGB", im.size, (255, 255, 255))
            canvas.paste(im.convert("RGB").resize((side, side), Image.LANCZOS),
                         ((im.width - side) // 2, (im.height - side) // 2))
            canvas.save(out / path.name)
    return out


def test_input_scale_reframes_the_input_and_helps_a_smaller_target(
        shapes: dict[str, Path], tmp_path: Path) -> None:
    """--input-scale: the U-Net sees its input shrunk about the centre (an untrained
    residual U-Net returns exactly that), and on targets drawn at half size it learns what
    beyond the identity map, and the saved model keeps the scale."""
    from ganforge.models.pix2pix import Pix2Pix, Pix2PixConfig

    with pytest.raises(ConfigError, match="input-scale"):
        Pix2PixConfig(input_scale=1.5).validate()
    untrained = Pix2Pix.build(Pix2PixConfig(**TINY, residual=True, input_scale=0.5))
    square = torch.ones(1, 3, 16, 16)
    square[..., 4:12, 4:12] = -1  # a black 8 px square on white
    out = untrained["generator"](square)
    assert torch.allclose(out[..., 6:10, 6:10], torch.full((1, 3, 4, 4), -1.0))
    assert torch.allclose(out[..., :5, :], torch.ones(1, 3, 5, 16))  # white around a 4 px one

    small_b = _shrunk_copies(shapes["b"], tmp_path / "small_b", 0.5)
    small_val_b = _shrunk_copies(shapes["val_b"], tmp_path / "small_val_b", 0.5)
    config = _config(shapes["a"], small_b, 400, lr_decay_start=0.7, ema_decay=0.99)
    config.model.update(upsample="resize", input_scale=0.5)
    config.data.update(jitter=0, flip=False)
    train(config, tmp_path / "run")
    pipe = ImageToImagePipeline.from_pretrained(tmp_path / "run")
    assert pipe.model.config.input_scale == 0.5
    report = evaluate_translation(pipe, shapes["val_a"], small_val_b, progress=False,
                                  fid_weights=Path("/nonexistent/no-fid.pt"))
    assert report.translation["l1"] < 0.5 * report.identity["l1"], report.table()
    # an RGBA input's transparency is shrunk like the subject: opaque only in the middle
    icon = Image.new("RGBA", (16, 16), (200, 30, 30, 255))
    icon.putpixel((0, 0), (0, 0, 0, 0))  # (an all-opaque image counts as RGB)
    alpha = np.asarray(pipe([icon])[0].getchannel("A"))
    assert alpha[6:10, 6:10].min() == 255 and alpha[:3].max() == 0 and alpha[:, :3].max() == 0


def test_resume_continues_exactly(shapes: dict[str, Path], tmp_path: Path) -> None:
    """Stopped after 2 steps and resumed from the command line to 4: the same weights as a
    straight 4-step run."""
    config = _config(shapes["a"], shapes["b"], 4, checkpoint_every=2)
    train(config, tmp_path / "straight")
    assert train(config, tmp_path / "split", until=2).step == 2
    assert main(["train", "pix2pix", "--resume", str(tmp_path / "split")]) == 0

    def weights(run: Path) -> dict[str, torch.Tensor]:
        state = load_checkpoint(sorted((run / "checkpoints").glob("step_*.pt"))[-1])
        return {**state["networks"], **{f"ema.{k}": v for k, v in
                                        state["ema"]["generator"].items()}}

    straight, resumed = weights(tmp_path / "straight"), weights(tmp_path / "split")
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


# -------------------------------------------------------------------------- transparency
def _icon(path: Path, size: int = 16) -> Path:
    """An RGBA icon: a red disc on a transparent background."""
    yy, xx = np.mgrid[:size, :size]
    inside = (yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2 < (size / 3) ** 2
    pixels = np.zeros((size, size, 4), np.uint8)
    pixels[inside] = (220, 40, 40, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGBA").save(path)
    return path


def test_rgba_in_gives_rgba_out_with_the_inputs_alpha(trained: Path, tmp_path: Path) -> None:
    icon = _icon(tmp_path / "icon.png")
    pipe = ImageToImagePipeline.from_pretrained(trained)
    out = pipe(icon)[0]
    assert out.mode == "RGBA" and out.size == (16, 16)
    assert np.array_equal(np.asarray(out)[..., 3], np.asarray(Image.open(icon))[..., 3])
    assert out.info.get("ganforge:watermark")  # the record survives the added alpha
    assert pipe(_png(tmp_path / "opaque.png"))[0].mode == "RGB"  # no alpha: none added
    assert main(["translate", str(icon), "--model", str(trained), "--out",
                 str(tmp_path / "out")]) == 0
    written = Image.open(tmp_path / "out" / "icon.png")
    assert written.mode == "RGBA" and written.getextrema()[3] == (0, 255)


def test_translate_without_model_uses_the_shipped_restyle_model(tmp_path: Path) -> None:
    assert DEFAULT_TRANSLATOR.is_dir()
    icon = _icon(tmp_path / "heart.png", size=20)
    assert main(["translate", str(icon), "--out", str(tmp_path / "out")]) == 0
    out = Image.open(tmp_path / "out" / "heart.png")
    size = ImageToImagePipeline.from_pretrained(None).size
    assert out.mode == "RGBA" and out.size == (size, size)
    alpha = np.asarray(out)[..., 3]
    assert alpha[0, 0] == 0 and alpha[size // 2, size // 2] == 255
    assert "restyle-3d-64" in out.text["ganforge:model"]


def test_serve_offers_the_shipped_restyle_model_by_default(tmp_path: Path) -> None:
    pytest.importorskip("fastapi", reason="the 'serve' extra is not installed")
    from ganforge.serve.app import ServeConfig, Server
    from tests.test_serve import save_tiny_models

    t2i, _ = save_tiny_models(tmp_path)
    server = Server(ServeConfig(models=[("tiny", str(t2i))]))
    served = server.pick(None, "image-to-image")
    assert served.name == "restyle" and "restyle-3d-64" in served.label


def test_upscale_keeps_transparency(tmp_path: Path) -> None:
    icon = _icon(tmp_path / "icon.png", size=12)
    out = UpscalePipeline.from_pretrained(None)(icon)[0]
    assert out.mode == "RGBA" and out.size == (48, 48)
    expected = Image.open(icon).getchannel("A").resize((48, 48), Image.BICUBIC)
    assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(expected))
