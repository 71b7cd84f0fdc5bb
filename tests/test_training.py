"""The generic loop with CycleGAN: learning, checkpoints, exact resume, divergence."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from ganforge.core.seeding import seed_everything
from ganforge.data.synthetic import write_shape_domains
from ganforge.errors import CheckpointError, ConfigError, TrainingDiverged
from ganforge.metrics.translation import evaluate_translation
from ganforge.models import FAMILIES
from ganforge.models.cyclegan import CycleGAN
from ganforge.pipelines import ImageToImagePipeline
from ganforge.train.checkpoint import checkpoint_steps, load_checkpoint
from ganforge.train.loop import Trainer, train
from tests.conftest import tiny_config


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    state = load_checkpoint(sorted((run_dir / "checkpoints").glob("step_*.pt"))[-1])
    return {**{f"net.{k}": v for k, v in state["networks"].items()},
            **{f"ema.{n}.{k}": v for n, sd in state["ema"].items() for k, v in sd.items()}}


def test_cyclegan_learns_the_colour_mapping(tmp_path: Path) -> None:
    """After a few hundred CPU steps the a->b translation is close to the true answer."""
    train_dirs = write_shape_domains(tmp_path / "train", count=120, size=24, seed=0)
    val_a, val_b = write_shape_domains(tmp_path / "val", count=16, size=24, seed=1)
    config = tiny_config(train_dirs, steps=300, batch_size=4, checkpoint_every=300,
                         sample_every=300, lr_decay_start=0.7, ema_decay=0.99)
    config.model.update(generator_blocks=2, generator_channels=12, discriminator_channels=12)
    config.data["size"] = 24
    run_dir = tmp_path / "run"

    untrained = Trainer(config, run_dir)
    family = CycleGAN(untrained.model_config)
    untrained_pipe = ImageToImagePipeline(family.export(family.networks, untrained.data_config,
                                                        trained_steps=0))
    before = evaluate_translation(untrained_pipe, val_a, val_b, fid_weights=tmp_path / "none",
                                  progress=False)
    train(config, run_dir)
    after = evaluate_translation(ImageToImagePipeline.from_pretrained(run_dir), val_a, val_b,
                                 fid_weights=tmp_path / "none", progress=False)
    assert before.translation["l1"] > 0.25, before.table()
    assert after.translation["l1"] < 0.12, after.table()
    assert after.translation["l1"] < 0.5 * after.identity["l1"]
    assert (run_dir / "samples" / "step_0000300.png").is_file()
    assert any((run_dir / "logs").glob("events.out.tfevents.*"))


def test_resume_continues_exactly_where_it_stopped(tmp_path: Path, shapes16) -> None:
    straight = tmp_path / "straight"
    train(tiny_config(shapes16, steps=8, checkpoint_every=4), straight)

    split = tmp_path / "split"
    config = tiny_config(shapes16, steps=8, checkpoint_every=4)
    assert train(config, split, until=4).step == 4  # as if killed after step 4
    result = train(config, split, resume=True)
    assert result.step == 8
    a, b = _weights(straight), _weights(split)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from a straight run"


def test_same_seed_same_weights_other_seed_other_weights(tmp_path: Path, shapes16) -> None:
    train(tiny_config(shapes16, steps=3, seed=1), tmp_path / "one")
    train(tiny_config(shapes16, steps=3, seed=1), tmp_path / "two")
    train(tiny_config(shapes16, steps=3, seed=2), tmp_path / "three")
    one, two, three = (_weights(tmp_path / n) for n in ("one", "two", "three"))
    assert all(torch.equal(one[k], two[k]) for k in one)
    assert not all(torch.equal(one[k], three[k]) for k in one)


def test_checkpoints_are_pruned_and_carry_everything_resume_needs(tmp_path: Path,
                                                                  shapes16) -> None:
    run = tmp_path / "run"
    train(tiny_config(shapes16, steps=9, checkpoint_every=2, keep_checkpoints=2), run)
    assert [s for s, _ in checkpoint_steps(run / "checkpoints")] == [8, 9]
    state = load_checkpoint(run / "checkpoints" / "step_0000009.pt", family="cyclegan")
    assert {"networks", "ema", "optimizers", "schedulers", "ranks", "step"} <= set(state)
    assert state["ranks"][0]["family"]["pool_a"].shape[0] == 4  # image pool is saved
    assert not list((run / "checkpoints").glob(".*.tmp"))


def test_a_new_run_never_overwrites_an_existing_one(tmp_path: Path, shapes16) -> None:
    run = tmp_path / "run"
    train(tiny_config(shapes16, steps=2), run)
    before = (run / "checkpoints" / "step_0000002.pt").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run; continue it with --resume"):
        train(tiny_config(shapes16, steps=2), run)
    assert (run / "checkpoints" / "step_0000002.pt").read_bytes() == before


def test_resume_falls_back_from_a_damaged_checkpoint(tmp_path: Path, shapes16) -> None:
    run = tmp_path / "run"
    train(tiny_config(shapes16, steps=6, checkpoint_every=3), run)
    (run / "checkpoints" / "step_0000006.pt").write_bytes(b"half a file")
    with pytest.warns(UserWarning, match="step_0000006.pt cannot be read"):
        result = train(tiny_config(shapes16, steps=6, checkpoint_every=3), run, resume=True)
    assert result.step == 6


def test_resume_without_checkpoint_or_with_a_foreign_one_fails_clearly(tmp_path: Path,
                                                                       shapes16) -> None:
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(tiny_config(shapes16), tmp_path / "empty", resume=True)
    foreign = tmp_path / "foreign" / "checkpoints"
    foreign.mkdir(parents=True)
    torch.save({"weights": torch.zeros(3)}, foreign / "step_0000003.pt")
    with pytest.raises(CheckpointError, match="no readable checkpoint"), \
            pytest.warns(UserWarning, match="not a ganforge checkpoint"):
        train(tiny_config(shapes16), tmp_path / "foreign", resume=True)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    other = tmp_path / "other"
    train(tiny_config(shapes16, steps=2), other)
    state = load_checkpoint(other / "checkpoints" / "step_0000002.pt")
    torch.save({**state, "family": "dfgan"}, other / "checkpoints" / "step_0000002.pt")
    with pytest.raises(CheckpointError, match="belongs to a 'dfgan' model, not 'cyclegan'"):
        train(tiny_config(shapes16, steps=4), other, resume=True)


class _DivergingCycleGAN(CycleGAN):
    """CycleGAN whose critic loss turns NaN from its 5th step on."""

    name = "diverging"

    def step(self, nets, batch, opt):  # type: ignore[no-untyped-def]
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls >= 5:
            batch = {k: v * float("nan") for k, v in batch.items()}
        return super().step(nets, batch, opt)


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(
        tmp_path: Path, shapes16, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(FAMILIES, "diverging", _DivergingCycleGAN)
    config = dataclasses.replace(tiny_config(shapes16, steps=12, checkpoint_every=2,
                                             log_every=1), family="diverging")
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"NaN or infinite by step 5; the last good "
                                               r"checkpoint .*step_0000004.pt is kept"):
        train(config, run)
    assert [s for s, _ in checkpoint_steps(run / "checkpoints")] == [2, 4]
    state = load_checkpoint(run / "checkpoints" / "step_0000004.pt")
    assert all(torch.isfinite(v).all() for v in state["networks"].values())


def test_gradient_accumulation_matches_the_full_batch(tmp_path: Path, shapes16) -> None:
    """Two micro-batches of 2 give the same networks as one batch of 4 (no pool, no flips).

    Compared by what the generators output: Adam magnifies the rounding noise of parameters
    whose gradient is zero in exact arithmetic (biases right before instance norm).
    """
    sources = sorted(shapes16[0].glob("*.png"))[:4]
    outputs = {}
    for accum in (1, 2):
        # fp32: bf16 rounds each micro-batch's activations differently from the whole batch's
        config = tiny_config(shapes16, steps=3, batch_size=4, grad_accum=accum,
                             precision="fp32")
        config.model["pool_size"] = 0
        config.data["flip"] = False
        train(config, tmp_path / f"accum{accum}")
        pipe = ImageToImagePipeline.from_pretrained(tmp_path / f"accum{accum}")
        outputs[accum] = pipe.translate_tensor(pipe.preprocess(sources))
    untrained = Trainer(tiny_config(shapes16), tmp_path / "untrained")
    seed_everything(0)  # the initial weights of both runs
    initial = CycleGAN.build(untrained.model_config)["g_ab"]
    pipe_input = ImageToImagePipeline.from_pretrained(tmp_path / "accum1").preprocess(sources)
    with torch.no_grad():
        before = initial(pipe_input)
    assert (outputs[1] - outputs[2]).abs().max() < 2e-3
    assert (outputs[1] - before).abs().max() > 10 * (outputs[1] - outputs[2]).abs().max()


def test_precision_auto_takes_bf16_only_where_the_device_has_it(tmp_path: Path, shapes16) -> None:
    """bf16 autocast is ~2-4x faster on a CPU with AMX and slower where it is emulated."""
    from ganforge.core.device import native_bf16

    trainer = Trainer(tiny_config(shapes16), tmp_path / "auto")
    trainer.setup()
    assert trainer.bf16 == native_bf16(torch.device("cpu"))
    pinned = Trainer(tiny_config(shapes16, precision="fp32"), tmp_path / "fp32")
    pinned.setup()
    assert not pinned.bf16


def test_channels_last_auto_follows_the_cpu_for_families_that_gain(tmp_path: Path, shapes16,
                                                                  monkeypatch) -> None:
    """channels_last made DF-GAN 17 % faster on an AVX-512 Xeon and 13 % slower on an AVX2
    EPYC: ``auto`` takes it on a CPU only for a family that opts in, and only with AVX-512."""
    import ganforge.train.loop as loop
    from ganforge.models.dfgan import DFGAN

    assert DFGAN.channels_last_on_avx512 and "channels_last" not in DFGAN.train_defaults
    seen = {}
    for opted, avx512 in ((False, True), (True, False), (True, True)):
        monkeypatch.setattr(CycleGAN, "channels_last_on_avx512", opted)
        monkeypatch.setattr(loop, "cpu_has_avx512", lambda value=avx512: value)
        trainer = Trainer(tiny_config(shapes16), tmp_path / f"cl-{opted}-{avx512}")
        trainer.setup()
        seen[opted, avx512] = trainer.channels_last
    assert seen == {(False, True): False, (True, False): False, (True, True): True}
    pinned = Trainer(tiny_config(shapes16, channels_last="on"), tmp_path / "on")
    pinned.setup()
    assert pinned.channels_last
