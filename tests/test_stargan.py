"""Multi-domain translation (StarGAN v2 school): learning styles, references, round-trips,
errors, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ganforge.cli import main
from ganforge.config import RunConfig
from ganforge.data.images import ImageFolder, uint8_to_float
from ganforge.data.multidomain import PALETTES, domain_names, write_palette_domains
from ganforge.errors import ConfigError
from ganforge.models.stargan import StarGAN
from ganforge.pipelines import ImageToImagePipeline
from ganforge.train.loop import train

SIZE = 16
TINY = {"num_domains": 3, "size": SIZE, "channels": 8, "max_channels": 32, "downsamplings": 1,
        "bottleneck_blocks": 1, "style_dim": 16, "latent_dim": 8, "mapping_layers": 2,
        "mapping_channels": 32, "lr": 1e-3, "mapping_lr": 1e-3, "diversity_weight": 0.1}


def palette_of(images: torch.Tensor) -> torch.Tensor:
    """Index [B] of the palette (background + shape colours) closest to each image's pixels."""
    colours = torch.tensor([[bg, *shapes] for bg, shapes in PALETTES.values()]).float()
    colours = colours / 127.5 - 1  # [P, 3 colours, 3]
    pixels = images.float().permute(0, 2, 3, 1).reshape(len(images), -1, 1, 1, 3)
    distance = (pixels - colours).norm(dim=-1).min(dim=-1).values  # [B, pixels, P]
    return distance.mean(dim=1).argmin(dim=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny model trained on the same shapes in three palettes, and held-out paired images."""
    root = tmp_path_factory.mktemp("palettes")
    folders = write_palette_domains(root / "train", count=48, size=SIZE, seed=0)
    val = write_palette_domains(root / "val", count=12, size=SIZE, seed=1)
    config = RunConfig(family="stargan", model=dict(TINY),
                       data={"domains": ",".join(map(str, folders))},
                       train={"steps": 150, "batch_size": 8, "log_every": 50, "seed": 0,
                              "sample_every": 150, "checkpoint_every": 150, "progress": False,
                              "ema_decay": 0.99})
    run = root / "run"
    train(config, run)
    return {"run": run, "val": val, "root": root,
            "sources": [uint8_to_float(ImageFolder.load(f, SIZE).images) for f in val]}


def test_styles_are_learnt_per_target_domain(trained: dict) -> None:
    """Translating any source with style k gives images in palette k (chance: 1/3), closer to
    the true paired image than the source itself is."""
    pipe = ImageToImagePipeline.from_pretrained(trained["run"])
    assert pipe.styles == list(PALETTES) and pipe.directions == []
    sources = trained["sources"]
    hits, count, error, identity = 0, 0, 0.0, 0.0
    for k, style in enumerate(pipe.styles):
        for j, images in enumerate(sources):
            out = pipe.translate_tensor(images, style=style)
            hits += int((palette_of(out) == k).sum())
            count += len(out)
            error += float((out - sources[k]).abs().mean()) / 9
            identity += float((images - sources[k]).abs().mean()) / 9
            # a sampled style (mapping network, seeded latent) is in the same palette
            if j == 0:
                sampled = pipe.translate_tensor(images, style=style, seed=3)
                assert (palette_of(sampled) == k).float().mean() >= 0.75
    assert hits / count >= 0.8, f"palette accuracy {hits / count:.2f}"
    assert error < 0.75 * identity, (error, identity)


def test_reference_image_gives_its_style(trained: dict) -> None:
    pipe = ImageToImagePipeline.from_pretrained(trained["run"])
    sources = trained["sources"]
    for k, style in enumerate(pipe.styles):
        reference = sources[k][:1]
        named = pipe.translate_tensor(sources[(k + 1) % 3], reference=reference, style=style)
        recognised = pipe.translate_tensor(sources[(k + 1) % 3], reference=reference)
        assert (palette_of(named) == k).float().mean() >= 0.75
        assert (palette_of(recognised) == k).float().mean() >= 0.75
    # one reference per image: each output takes its own reference's palette
    mixed = torch.cat([sources[0][:2], sources[1][:2], sources[2][:2]])
    out = pipe.translate_tensor(sources[0][:6], reference=mixed)
    assert (palette_of(out) == torch.tensor([0, 0, 1, 1, 2, 2])).float().mean() >= 0.8


def test_save_and_from_pretrained_give_identical_outputs(trained: dict, tmp_path: Path) -> None:
    pipe = ImageToImagePipeline.from_pretrained(trained["run"])
    pipe.save_pretrained(tmp_path / "saved")
    again = ImageToImagePipeline.from_pretrained(tmp_path / "saved")
    images = trained["sources"][0][:4]
    for options in ({"style": "dark"}, {"style": "cool", "seed": 7},
                    {"reference": trained["sources"][2][:1]}):
        assert torch.equal(pipe.translate_tensor(images, **options),
                           again.translate_tensor(images, **options))
    assert again.model.config.styles == ["warm", "cool", "dark"] and again.directions == []
    # the PIL interface: a style name as the direction is the same as style=
    path = trained["val"][0] / "shape_00000.png"
    assert np.array_equal(np.asarray(pipe(path, "dark")[0]),
                          np.asarray(pipe(path, style="dark")[0]))


def test_clear_errors_for_unknown_style_and_bad_references(trained: dict) -> None:
    pipe = ImageToImagePipeline.from_pretrained(trained["run"])
    images = trained["sources"][0][:2]
    with pytest.raises(ConfigError, match=r"style 'sepia' is unknown.*warm, cool, dark"):
        pipe.translate_tensor(images, style="sepia")
    with pytest.raises(ConfigError, match="style 'a2b' is unknown"):
        pipe.translate_tensor(images, "a2b")
    with pytest.raises(ConfigError, match="name a target style"):
        pipe.translate_tensor(images)
    with pytest.raises(ConfigError, match=r"reference images are 32x32.*16x16"):
        pipe.translate_tensor(images, reference=torch.zeros(1, 3, 32, 32))
    with pytest.raises(ConfigError, match=r"tensor \[B, 3, H, W\]"):
        pipe.translate_tensor(images, reference=torch.zeros(3, 16, 16))
    with pytest.raises(ConfigError, match="3 style references for 2 images"):
        pipe.translate_tensor(images, reference=torch.zeros(3, 3, 16, 16))
    with pytest.raises(ConfigError, match="take no strength option"):
        pipe.translate_tensor(images, style="warm", strength=2)


def test_cli_translate_to_a_style_and_from_a_reference(trained: dict, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    run, val = str(trained["run"]), trained["val"]
    assert main(["translate", str(val[0]), "--model", run, "--to-style", "dark",
                 "--out", str(tmp_path / "dark")]) == 0
    written = sorted((tmp_path / "dark").glob("*.png"))
    assert len(written) == 12
    images = uint8_to_float(ImageFolder.load(tmp_path / "dark", SIZE).images)
    assert (palette_of(images) == 2).float().mean() >= 0.75
    reference = val[1] / "shape_00003.png"
    assert main(["translate", str(val[0]), "--model", run, "--style-reference", str(reference),
                 "--out", str(tmp_path / "ref")]) == 0
    images = uint8_to_float(ImageFolder.load(tmp_path / "ref", SIZE).images)
    assert (palette_of(images) == 1).float().mean() >= 0.75
    capsys.readouterr()
    assert main(["translate", str(val[0]), "--model", run, "--to-style", "sepia",
                 "--out", str(tmp_path / "bad")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ganforge: error: style 'sepia' is unknown") and err.count("\n") == 1
    assert main(["translate", str(val[0]), "--model", run, "--out", str(tmp_path / "bad")]) == 1
    assert "pass --to-style (warm, cool, dark)" in capsys.readouterr().err


def test_domain_names_default_to_the_folders_or_their_parents(tmp_path: Path) -> None:
    assert domain_names(["x/google", "x/twitter"]) == ["google", "twitter"]
    assert domain_names(["e/google/64", "e/twitter/64", "e/fluent3d/256"]) == \
        ["google", "twitter", "fluent3d"]
    assert domain_names(["a", "b"], ["one", "two"]) == ["one", "two"]
    with pytest.raises(ConfigError, match="2 name\\(s\\) for 3"):
        domain_names(["a", "b", "c"], ["one", "two"])
    with pytest.raises(ConfigError, match="must differ"):
        domain_names(["a", "b"], ["one", "one"])


def test_cli_train_errors_are_one_line(tmp_path: Path, trained: dict,
                                       capsys: pytest.CaptureFixture) -> None:
    folders = [str(f) for f in trained["val"]]
    assert main(["train", "stargan", "--domains", folders[0], "--out",
                 str(tmp_path / "one")]) == 1
    assert "two or more comma-separated folders" in capsys.readouterr().err
    assert main(["train", "stargan", "--domains", ",".join(folders[:2]), "--size", "16",
                 "--out", str(tmp_path / "two"), "--steps", "1", "--no-progress"]) == 1
    assert "--domains names 2 folders but the model is built for --num-domains 3" in \
        capsys.readouterr().err
    with pytest.raises(ConfigError, match="--size 24"):
        StarGAN.ModelConfig(size=24).validate()


def test_evaluate_scores_a_style_as_the_direction(trained: dict) -> None:
    """``ganforge evaluate --direction STYLE`` works for a model with styles."""
    from ganforge.metrics.evaluate import run_evaluation

    def mean_colours(images: torch.Tensor) -> np.ndarray:  # stand-in feature network
        return torch.nn.functional.adaptive_avg_pool2d(images, 2).flatten(1).double().numpy()

    mean_colours.fingerprint = "test-mean-colours"  # type: ignore[attr-defined]
    val = trained["val"]
    result = run_evaluation(trained["run"], val[0], None, target=val[2], direction="dark",
                            features=mean_colours, use_cache=False, progress=False,
                            resamples=2)
    assert result.metrics["l1"].value < 0.75 * result.metrics["l1"].baseline
    with pytest.raises(ConfigError, match=r"direction 'a2b' is unknown.*warm, cool, dark"):
        run_evaluation(trained["run"], val[0], None, target=val[2], features=mean_colours,
                       use_cache=False, progress=False)
