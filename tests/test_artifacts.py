"""The one saved-model format, the inference layer's independence from training code, the
loop's ownership of gradients, and start-up without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from ganforge.errors import CheckpointError
from ganforge.inference import load_model
from ganforge.inference.dfgan import DFGANInferenceConfig, DFGANModel
from ganforge.pipelines import TextToImagePipeline

TINY = DFGANInferenceConfig(size=16, noise_dim=8, generator_channels=4, text_encoder="tiny",
                            text_dim=16, text_layers=1, max_tokens=16, truncation=0.7)


def tiny_model() -> DFGANModel:
    torch.manual_seed(0)
    return DFGANModel.create(TINY, {"trained_steps": 12})


def test_round_trip_keeps_config_weights_and_images(tmp_path: Path) -> None:
    model = tiny_model()
    model.save_pretrained(tmp_path / "m")
    header = json.loads((tmp_path / "m" / "config.json").read_text())
    assert header["format"] == "ganforge-artifact" and header["kind"] == "dfgan"
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded, DFGANModel) and loaded.config == TINY
    assert loaded.trained_steps == 12
    first = TextToImagePipeline(model)(["red square"], num_images=2, seed=1)
    again = TextToImagePipeline.from_pretrained(tmp_path / "m")(["red square"], num_images=2,
                                                                 seed=1)
    assert [im.tobytes() for im in first] == [im.tobytes() for im in again]
    (tmp_path / "m" / "README.md").write_text("model card")
    model.save_pretrained(tmp_path / "m")  # saving again keeps the card beside the weights
    assert (tmp_path / "m" / "README.md").read_text() == "model card"


def test_wrong_weights_name_what_is_missing_and_unexpected(tmp_path: Path) -> None:
    model = tiny_model()
    model.save_pretrained(tmp_path / "m")
    tensors = model.tensors()
    tensors["generator.extra.weight"] = torch.zeros(2)
    del tensors["generator.stem.weight"]
    save_file(tensors, str(tmp_path / "m" / "model.safetensors"))
    with pytest.raises(CheckpointError) as err:
        load_model(tmp_path / "m")
    message = str(err.value)
    assert "missing: stem.weight" in message and "unexpected: extra.weight" in message


def test_kind_version_and_missing_folder_are_clear(tmp_path: Path) -> None:
    model = tiny_model()
    model.save_pretrained(tmp_path / "m")
    header = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**header, "version": 99}))
    with pytest.raises(CheckpointError, match=r"version 99.*upgrade ganforge"):
        load_model(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text(json.dumps({**header, "kind": "nonsense"}))
    with pytest.raises(CheckpointError, match="unknown model kind 'nonsense'"):
        load_model(tmp_path / "m")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nowhere")


def test_models_saved_before_artifacts_still_load(tmp_path: Path) -> None:
    """A ganforge-pipeline-v1 folder (training config + info dict) loads as the typed model."""
    model = tiny_model()
    folder = tmp_path / "old"
    folder.mkdir()
    save_file(model.tensors(), str(folder / "model.safetensors"))
    old = {"format": "ganforge-pipeline-v1", "ganforge_version": "0.1.0",
           "task": "text-to-image", "family": "dfgan", "trained_steps": 7,
           "model": {"size": 16, "noise_dim": 8, "generator_channels": 4,
                     "text_encoder": "tiny", "text_dim": 16, "text_layers": 1,
                     "max_tokens": 16, "lr_generator": 1e-4, "gp_weight": 2.0},
           "info": {"size": 16, "noise_dim": 8, "truncation": 0.7}}
    (folder / "config.json").write_text(json.dumps(old))
    loaded = load_model(folder)
    assert loaded.config == TINY and loaded.trained_steps == 7
    images = TextToImagePipeline.from_pretrained(folder)(["red square"], seed=1)
    assert images[0].tobytes() == TextToImagePipeline(model)(["red square"], seed=1)[0].tobytes()


def test_a_pipeline_refuses_a_model_of_another_task(tmp_path: Path) -> None:
    from ganforge.pipelines import ImageToImagePipeline

    tiny_model().save_pretrained(tmp_path / "m")
    with pytest.raises(CheckpointError, match="'text-to-image' model; expected"):
        ImageToImagePipeline.from_pretrained(tmp_path / "m")


def test_artifact_save_is_atomic_and_keeps_the_old_folder_on_failure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model()
    model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "README.md").write_text("card")
    before = sorted((p.name, p.read_bytes()) for p in (tmp_path / "m").iterdir())
    import ganforge.core.artifact as artifact

    def half_written(tensors: dict, filename: str, metadata: dict) -> None:
        Path(filename).write_bytes(b"half a file")  # the disk fills up mid-write
        raise OSError("No space left on device")

    monkeypatch.setattr(artifact, "save_file", half_written)
    torch.manual_seed(1)
    with pytest.raises(OSError):
        DFGANModel.create(TINY).save_pretrained(tmp_path / "m")
    assert sorted((p.name, p.read_bytes()) for p in (tmp_path / "m").iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary folder left behind


def test_loop_minimize_gives_gradients_to_the_named_optimizer_only() -> None:
    """The loop, not the recipe, keeps a generator's update out of the critic."""
    from ganforge.train import distributed as dist_utils
    from ganforge.train.loop import LoopOptimization

    generator, critic = nn.Linear(3, 3), nn.Linear(3, 1)
    optimizers = {"generator": torch.optim.SGD(generator.parameters(), lr=0.1),
                  "discriminator": torch.optim.SGD(critic.parameters(), lr=0.1)}
    opt = LoopOptimization(optimizers, dist_utils.ProcessGroup(), torch.device("cpu"),
                           bf16=False, accum=1)
    before = critic.weight.detach().clone()
    opt.last_micro = False  # keep the gradients to look at them
    opt.minimize("generator", critic(generator(torch.ones(4, 3))).sum())
    assert generator.weight.grad is not None and critic.weight.grad is None
    opt.last_micro = True
    opt.minimize("discriminator", critic(generator(torch.ones(4, 3)).detach()).sum())
    assert not torch.equal(critic.weight, before)


def _imported_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; "
                          "print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_loading_and_sampling_import_no_training_code(tmp_path: Path) -> None:
    tiny_model().save_pretrained(tmp_path / "m")
    modules = _imported_after(
        "from ganforge.pipelines import TextToImagePipeline\n"
        f"TextToImagePipeline.from_pretrained({str(tmp_path / 'm')!r})(['a red square'])")
    training = sorted(m for m in modules if m.startswith(("ganforge.models", "ganforge.train")))
    assert training == []


def test_help_and_verify_without_detector_never_import_torch(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (32, 32), "white").save(tmp_path / "plain.png")
    for argv in (["--help"], ["verify", "--no-detector", str(tmp_path / "plain.png")]):
        code = ("import sys\nfrom ganforge.cli import main\n"
                f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass")
        modules = _imported_after(code)
        assert "torch" not in modules, argv
