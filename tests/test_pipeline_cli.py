"""Pipelines (save/load, translate) and the command line as a user runs it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import ganforge
from ganforge.cli import main
from ganforge.errors import CheckpointError, ConfigError
from ganforge.pipelines import ImageToImagePipeline
from ganforge.train.checkpoint import checkpoint_steps, load_checkpoint
from ganforge.train.loop import train
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory, shapes16) -> Path:
    run = tmp_path_factory.mktemp("run") / "run"
    train(tiny_config(shapes16, steps=4), run)
    return run


def test_save_and_load_round_trip_gives_the_same_images(trained_run: Path, shapes16,
                                                         tmp_path: Path) -> None:
    pipe = ImageToImagePipeline.from_pretrained(trained_run)
    sources = sorted(shapes16[0].glob("*.png"))[:3]
    first = pipe(sources, direction="a2b")
    saved = pipe.save_pretrained(tmp_path / "saved")
    assert sorted(p.name for p in saved.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((saved / "config.json").read_text())
    assert config["kind"] == "cyclegan" and config["config"]["size"] == 16
    assert set(k.split(".")[0] for k in load_file(saved / "model.safetensors")) == {"g_ab",
                                                                                    "g_ba"}
    again = ImageToImagePipeline.from_pretrained(saved)(sources, direction="a2b")
    assert all(a.tobytes() == b.tobytes() for a, b in zip(first, again, strict=True))
    assert first[0].size == (16, 16) and first[0].mode == "RGB"
    back = pipe([Image.open(sources[0])], direction="b2a")
    assert len(back) == 1


def test_pipeline_refuses_missing_foreign_and_mismatched_models(trained_run: Path,
                                                                tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        ImageToImagePipeline.from_pretrained(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no saved model"):
        ImageToImagePipeline.from_pretrained(tmp_path / "empty")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text('{"architectures": ["BertModel"]}')
    (foreign / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="not a ganforge model config"):
        ImageToImagePipeline.from_pretrained(foreign)
    mismatched = ImageToImagePipeline.from_pretrained(trained_run).save_pretrained(
        tmp_path / "mismatched")
    config = json.loads((mismatched / "config.json").read_text())
    config["config"]["generator_channels"] = 4
    (mismatched / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"do not fit network 'g_ab'.*wrong shape: \S+ "
                       r"saved \[\d+"):
        ImageToImagePipeline.from_pretrained(mismatched)
    with pytest.raises(ConfigError, match="direction 'sideways' is unknown"):
        ImageToImagePipeline.from_pretrained(trained_run)([], direction="sideways")


def test_translate_command_writes_images_with_provenance(trained_run: Path, shapes16,
                                                         tmp_path: Path, capsys) -> None:
    (tmp_path / "in").mkdir()
    for src in sorted(shapes16[0].glob("*.png"))[:2]:
        (tmp_path / "in" / src.name).write_bytes(src.read_bytes())
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png")
    code = main(["translate", str(tmp_path / "in"), "--model", str(trained_run),
                 "--direction", "b2a", "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "translated 2 image(s) b2a" in captured.out and "skipped 1" in captured.out
    assert "broken.png" in captured.err
    out = sorted((tmp_path / "out").glob("*.png"))
    assert len(out) == 2
    info = Image.open(out[0]).info
    assert info["ganforge:direction"] == "b2a"
    assert info["ganforge:version"] == ganforge.__version__
    assert info["ganforge:model"] == "run" and "ganforge:source" not in info  # no paths


def test_evaluate_translation_command_reports_paired_metrics(trained_run: Path, shapes16,
                                                             tmp_path: Path, capsys) -> None:
    code = main(["evaluate", "translation", "--model", str(trained_run), "--a",
                 str(shapes16[0]), "--b", str(shapes16[1]), "--json", str(tmp_path / "r.json"),
                 "--no-progress", "--fid-weights", str(tmp_path / "no-such-weights.pt")])
    out = capsys.readouterr().out
    assert code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["count"] == 24 and {"l1", "psnr", "ssim"} <= set(report["translation"])
    assert report["identity"]["l1"] > 0.2  # the two colour schemes differ a lot
    assert "FID/KID not computed" in out and "no-such-weights.pt" in out


def test_user_errors_are_one_line_without_traceback(tmp_path: Path, shapes16, capsys) -> None:
    (tmp_path / "empty").mkdir()
    cases = [
        (["train", "cyclegan", "--domain-a", str(tmp_path / "empty"), "--domain-b",
          str(shapes16[1]), "--out", str(tmp_path / "r1")], "holds no images"),
        (["train", "cyclegan", "--domain-a", str(tmp_path / "missing"), "--domain-b",
          str(shapes16[1]), "--out", str(tmp_path / "r2")], "does not exist"),
        (["train", "cyclegan", "--domain-a", str(shapes16[0]), "--domain-b", str(shapes16[1]),
          "--size", "64", "--out", str(tmp_path / "r3")], "smaller than the training size 64"),
        (["train", "cyclegan", "--domain-a", str(shapes16[0]), "--domain-b", str(shapes16[1]),
          "--size", "16", "--norm", "weird", "--out", str(tmp_path / "r4")], "--norm 'weird'"),
        (["train", "cyclegan", "--resume", str(tmp_path / "nothing-here")],
         "run config .*nothing-here/config.json does not exist"),
        (["translate", "x.png", "--model", str(tmp_path / "no-model"), "--out",
          str(tmp_path / "o")], "model .*no-model does not exist"),
    ]
    for argv, message in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err.strip()
        assert re.search(message, err), (argv, err)
        assert "Traceback" not in err and err.startswith("ganforge: error:")
    with pytest.raises(SystemExit) as exc:
        main(["train", "cyclegan", "--no-such-option", "1"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err


def test_train_command_trains_and_resume_changes_only_loop_options(tmp_path: Path, shapes16,
                                                                    capsys) -> None:
    base = ["train", "cyclegan", "--domain-a", str(shapes16[0]), "--domain-b", str(shapes16[1]),
            "--size", "16", "--generator-blocks", "1", "--generator-channels", "8",
            "--discriminator-channels", "8", "--discriminator-layers", "2", "--batch-size", "2",
            "--checkpoint-every", "2", "--no-progress", "--no-flip"]
    assert main([*base, "--steps", "2", "--out", str(tmp_path / "run")]) == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["data"]["flip"] is False and saved["model"]["generator_blocks"] == 1
    assert main(["train", "cyclegan", "--resume", str(tmp_path / "run"), "--steps", "4",
                 "--no-progress"]) == 0
    assert "to step 4" in capsys.readouterr().out
    assert main(["train", "cyclegan", "--resume", str(tmp_path / "run"), "--size", "32"]) == 1
    assert "--size cannot change when resuming" in capsys.readouterr().err


def test_sigkill_never_leaves_a_half_checkpoint_and_resume_continues(tmp_path: Path,
                                                                     shapes16) -> None:
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "ganforge.cli", "train", "cyclegan", "--domain-a",
            str(shapes16[0]), "--domain-b", str(shapes16[1]), "--size", "16",
            "--generator-blocks", "1", "--generator-channels", "8", "--discriminator-channels",
            "8", "--discriminator-layers", "2", "--batch-size", "2", "--checkpoint-every", "1",
            "--sample-every", "1000", "--steps", "100000", "--no-progress"]
    proc = subprocess.Popen([*argv, "--out", str(run)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while len(checkpoint_steps(run / "checkpoints")) < 2 and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.37)  # land somewhere inside a later checkpoint write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    steps = checkpoint_steps(run / "checkpoints")
    assert steps, "no checkpoint was written before the kill"
    for _, path in steps:
        load_checkpoint(path, family="cyclegan")  # every visible checkpoint is whole
    last = steps[-1][0]
    code = subprocess.run([sys.executable, "-m", "ganforge.cli", "train", "cyclegan",
                           "--resume", str(run), "--steps", str(last + 2), "--no-progress"],
                          capture_output=True, text=True, timeout=120)
    assert code.returncode == 0, code.stderr
    assert checkpoint_steps(run / "checkpoints")[-1][0] == last + 2
    assert not list((run / "checkpoints").glob(".*.tmp"))
    assert torch.load(checkpoint_steps(run / "checkpoints")[-1][1], weights_only=True)["step"] \
        == last + 2


def test_evaluate_command_writes_a_report(trained_run: Path, shapes16, tmp_path: Path,
                                          capsys) -> None:
    out = tmp_path / "report"
    assert main(["evaluate", "--model", str(trained_run), "--data", str(shapes16[0]),
                 "--target", str(shapes16[1]), "--out", str(out), "--resamples", "2",
                 "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--device", "cpu"]) == 0
    assert {"report.html", "report.md", "metrics.json"} <= {p.name for p in out.iterdir()}
    metrics = json.loads((out / "metrics.json").read_text())
    assert "l1" in json.dumps(metrics)
    assert main(["evaluate", "--model", str(trained_run)]) == 1
    assert "evaluate needs --data" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_cuda_without_a_gpu_is_one_clear_line(trained_run: Path, shapes16,
                                                         tmp_path: Path, capsys) -> None:
    assert main(["translate", str(shapes16[0]), "--model", str(trained_run), "--out",
                 str(tmp_path), "--device", "cuda"]) == 1
    assert "asked for, but this machine has no CUDA GPU" in capsys.readouterr().err
