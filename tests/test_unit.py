"""UNIT: it learns a translation, serves it (mean and latent samples) through the same
pipeline and commands as CycleGAN, and refuses bad input clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from ganforge.cli import main
from ganforge.config import RunConfig
from ganforge.data.synthetic import write_shape_domains
from ganforge.errors import ConfigError
from ganforge.inference.cyclegan import CycleGANModel
from ganforge.metrics.translation import evaluate_translation
from ganforge.models import get_family
from ganforge.models.cyclegan import CycleGAN, CycleGANConfig, UnpairedDataConfig
from ganforge.models.unit import UNIT, UNITConfig
from ganforge.pipelines import ImageToImagePipeline
from ganforge.train.loop import Trainer, train
from tests.conftest import TINY_MODEL

TINY_UNIT = {"channels": 8, "blocks": 2, "shared_blocks": 1, "discriminator_channels": 8,
             "discriminator_layers": 2}
INFERENCE_NETWORKS = {"enc_a", "enc_b", "enc_shared", "dec_shared", "dec_a", "dec_b"}


def unit_config(domains: tuple[Path, Path], size: int = 16, **train_values: object) -> RunConfig:
    """A UNIT run config small enough for unit tests."""
    return RunConfig(family="unit", model=dict(TINY_UNIT),
                     data={"domain_a": str(domains[0]), "domain_b": str(domains[1]),
                           "size": size},
                     train={"steps": 4, "batch_size": 2, "log_every": 2, "sample_every": 4,
                            "checkpoint_every": 4, "progress": False, "seed": 0,
                            **train_values})


@pytest.fixture(scope="module")
def unit_run(tmp_path_factory: pytest.TempPathFactory, shapes16) -> Path:
    run = tmp_path_factory.mktemp("unit") / "run"
    train(unit_config(shapes16), run)
    return run


def test_unit_learns_the_colour_mapping_both_ways(tmp_path: Path) -> None:
    """120 CPU steps on the synthetic pair: both directions land close to the true answer
    (0.073 / 0.077 L1 when written; identity 0.32)."""
    train_dirs = write_shape_domains(tmp_path / "train", count=120, size=24, seed=0)
    val_a, val_b = write_shape_domains(tmp_path / "val", count=16, size=24, seed=1)
    config = unit_config(train_dirs, size=24, steps=120, batch_size=4, checkpoint_every=120,
                         sample_every=120, log_every=40, lr_decay_start=0.7, ema_decay=0.99)
    config.model["lr"] = 3e-4
    run_dir = tmp_path / "run"

    untrained = Trainer(config, run_dir)
    family = UNIT(untrained.model_config)
    untrained_pipe = ImageToImagePipeline(family.export(family.networks, untrained.data_config,
                                                        trained_steps=0))
    before = evaluate_translation(untrained_pipe, val_a, val_b, fid_weights=tmp_path / "none",
                                  progress=False)
    train(config, run_dir)
    pipe = ImageToImagePipeline.from_pretrained(run_dir)
    a2b = evaluate_translation(pipe, val_a, val_b, fid_weights=tmp_path / "none",
                               progress=False)
    b2a = evaluate_translation(pipe, val_b, val_a, direction="b2a",
                               fid_weights=tmp_path / "none", progress=False)
    assert before.translation["l1"] > 0.25, before.table()
    for report in (a2b, b2a):
        assert report.translation["l1"] < 0.12, report.table()
        assert report.translation["l1"] < 0.5 * report.identity["l1"], report.table()
    # latent samples vary the output a little, not the translation
    sources = pipe.preprocess(sorted(val_a.glob("*.png"))[:4])
    mean = pipe.translate_tensor(sources, "a2b")
    drawn = pipe.translate_tensor(sources, "a2b", generator=torch.Generator().manual_seed(1))
    assert 0 < (drawn - mean).abs().mean() < 0.1
    assert (run_dir / "samples" / "step_0000120.png").is_file()


def test_pipeline_round_trip_and_reproducible_latent_samples(unit_run: Path, shapes16,
                                                             tmp_path: Path) -> None:
    pipe = ImageToImagePipeline.from_pretrained(unit_run)
    assert pipe.family == "unit" and pipe.directions == ["a2b", "b2a"]
    sources = sorted(shapes16[0].glob("*.png"))[:3]
    first = pipe(sources, direction="a2b")
    saved = pipe.save_pretrained(tmp_path / "saved")
    assert {k.split(".")[0] for k in load_file(saved / "model.safetensors")} == \
        INFERENCE_NETWORKS  # no critics in an exported model
    again = ImageToImagePipeline.from_pretrained(saved)
    assert all(a.tobytes() == b.tobytes()
               for a, b in zip(first, again(sources, direction="a2b"), strict=True))
    assert first[0].size == (16, 16) and len(pipe(sources[:1], direction="b2a")) == 1

    images = pipe.preprocess(sources)

    def draw(seed: int, batch: torch.Tensor = images) -> torch.Tensor:
        gens = [torch.Generator().manual_seed(seed) for _ in batch]
        return pipe.translate_tensor(batch, "a2b", generator=gens)

    assert torch.equal(draw(5), draw(5))
    assert not torch.equal(draw(5), draw(6))
    assert not torch.equal(draw(5), pipe.translate_tensor(images, "a2b"))
    # one generator per image: an image's sample does not depend on the rest of the batch
    torch.testing.assert_close(draw(5)[1:2], draw(5, images[1:2]))


def test_train_translate_samples_and_evaluate_from_the_command_line(shapes16, tmp_path: Path,
                                                                    capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", "unit", "--domain-a", str(shapes16[0]), "--domain-b",
                 str(shapes16[1]), "--out", str(run), "--size", "16", "--channels", "8",
                 "--blocks", "2", "--discriminator-channels", "8", "--discriminator-layers",
                 "2", "--steps", "2", "--batch-size", "2", "--no-progress"]) == 0
    assert "trained unit to step 2" in capsys.readouterr().out
    sources = sorted(shapes16[0].glob("*.png"))[:2]
    (tmp_path / "in").mkdir()
    for src in sources:
        (tmp_path / "in" / src.name).write_bytes(src.read_bytes())
    argv = ["translate", str(tmp_path / "in"), "--model", str(run), "--direction", "b2a",
            "--samples", "3", "--seed", "7"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 0
    assert "translated 2 image(s) b2a" in capsys.readouterr().out
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted(f"{s.stem}_s{i}.png" for s in sources for i in range(3))
    info = Image.open(tmp_path / "out" / names[1]).info
    assert (info["ganforge:seed"], info["ganforge:sample"]) == ("7", "1")
    # the same seed gives the same files, even one image at a time
    assert main([*argv, "--out", str(tmp_path / "again"), "--batch-size", "1"]) == 0
    for name in names:
        assert (Image.open(tmp_path / "out" / name).tobytes()
                == Image.open(tmp_path / "again" / name).tobytes())
    assert main(["translate", str(tmp_path / "in"), "--model", str(run), "--out",
                 str(tmp_path / "mean")]) == 0
    assert sorted(p.name for p in (tmp_path / "mean").iterdir()) == [s.name for s in sources]

    assert main(["evaluate", "translation", "--model", str(run), "--a", str(shapes16[0]),
                 "--b", str(shapes16[1]), "--json", str(tmp_path / "r.json"), "--no-progress",
                 "--fid-weights", str(tmp_path / "no-weights.pt")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["count"] == 24 and {"l1", "psnr", "ssim"} <= set(report["translation"])


def test_bad_inputs_get_one_clear_line(unit_run: Path, shapes16, tmp_path: Path,
                                       capsys) -> None:
    cyclegan = CycleGANModel.create(CycleGAN.inference_config(
        CycleGANConfig(**TINY_MODEL), UnpairedDataConfig(size=16))).save_pretrained(
            tmp_path / "cyclegan")
    train_base = ["train", "unit", "--domain-a", str(shapes16[0]), "--domain-b",
                  str(shapes16[1]), "--out", str(tmp_path / "r"), "--steps", "1"]
    cases = [
        (["translate", str(shapes16[0]), "--model", str(cyclegan), "--out", str(tmp_path / "o"),
          "--samples", "2"], "cyclegan models take no generator option"),
        (["translate", str(shapes16[0]), "--model", str(unit_run), "--out", str(tmp_path / "o"),
          "--samples", "0"], "--samples must be at least 1"),
        (["translate", str(shapes16[0]), "--model", str(unit_run), "--out", str(tmp_path / "o"),
          "--samples", "2", "--direction", "sideways"], "direction 'sideways' is unknown"),
        ([*train_base, "--blocks", "2", "--shared-blocks", "3"],
         "--shared-blocks 3 cannot exceed --blocks 2"),
        ([*train_base, "--kl-weight", "-1"], "--kl-weight must be >= 0"),
        ([*train_base, "--norm", "group"], "--norm 'group' is unknown"),
        ([*train_base, "--size", "16", "--downsamplings", "5", "--channels", "2",
          "--discriminator-channels", "2"], "--size 16 is not a multiple of 32"),
    ]
    for argv, message in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert err.startswith("ganforge: error: ") and message in err, err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()

    pipe = ImageToImagePipeline.from_pretrained(unit_run)
    images = pipe.preprocess(sorted(shapes16[0].glob("*.png"))[:2])
    with pytest.raises(ConfigError, match="unit models take no style option"):
        pipe.translate_tensor(images, "a2b", style="google")
    with pytest.raises(ConfigError, match="one per image"):
        pipe.translate_tensor(images, "a2b", generator=[torch.Generator()])
    assert get_family("unit") is UNIT
    with pytest.raises(ConfigError, match="--channels must be at least 1"):
        UNITConfig(channels=0).validate()
