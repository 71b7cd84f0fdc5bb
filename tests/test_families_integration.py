"""The generic tools on the newer families: evaluate, audit, interpolation, serve and resume
on tiny runs of maskgit (over a tiny tokenizer), UNIT and StarGAN."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.audit import run_audit
from ganforge.cli import main
from ganforge.config import RunConfig
from ganforge.data.multidomain import write_palette_domains
from ganforge.data.synthetic import write_captioned_shapes, write_shape_domains
from ganforge.errors import ConfigError
from ganforge.pipelines import TextToImagePipeline
from ganforge.train.checkpoint import load_checkpoint
from ganforge.train.loop import train
from tests.test_evaluate import QuadrantColours
from tests.test_maskgit import MASKGIT, TOKENIZER
from tests.test_stargan import TINY as TINY_STARGAN
from tests.test_unit import TINY_UNIT

STEPS = 4


def _train_values(**extra: object) -> dict[str, object]:
    return {"steps": STEPS, "batch_size": 4, "progress": False, "sample_every": STEPS,
            "checkpoint_every": 2, "lr_decay_start": 1.0, "seed": 0, **extra}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Captioned shapes with a ``colour`` column, a paired a/b pair and three palettes."""
    root = tmp_path_factory.mktemp("families")
    captions = write_captioned_shapes(root / "captions", 24, 16, seed=0)
    rows = [json.loads(line) for line in captions.read_text().splitlines()]
    for row in rows:
        _, row["colour"], row["shape"] = row["caption"].split()
    captions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    a, b = write_shape_domains(root / "shapes", count=12, size=16, seed=0)
    warm, cool, dark = write_palette_domains(root / "palettes", count=12, size=16, seed=0)
    return {"root": root, "captions": captions, "a": a, "b": b, "warm": warm, "cool": cool,
            "dark": dark}


def _configs(data: dict[str, Path]) -> dict[str, RunConfig]:
    tokenizer = data["root"] / "tokenizer"
    return {
        "tokenizer": RunConfig(family="tokenizer", model=dict(TOKENIZER),
                               data={"captions": str(data["captions"])},
                               train=_train_values(ema_decay=0.0)),
        "maskgit": RunConfig(family="maskgit",
                             model={**MASKGIT, "dim": 32, "decode_steps": 2,
                                    "tokenizer": str(tokenizer)},
                             data={"captions": str(data["captions"])}, train=_train_values()),
        "unit": RunConfig(family="unit", model=dict(TINY_UNIT),
                          data={"domain_a": str(data["a"]), "domain_b": str(data["b"]),
                                "size": 16}, train=_train_values(batch_size=2)),
        "stargan": RunConfig(family="stargan", model=dict(TINY_STARGAN),
                             data={"domains": ",".join(str(data[k])
                                                       for k in ("warm", "cool", "dark"))},
                             train=_train_values()),
    }


@pytest.fixture(scope="module")
def runs(data: dict[str, Path]) -> dict[str, Path]:
    """A few steps of each family (the tokenizer first: maskgit reads it)."""
    out = {}
    for name, config in _configs(data).items():
        out[name] = data["root"] / name
        train(config, out[name])
    return out


def _weights(run: Path) -> dict[str, torch.Tensor]:
    state = load_checkpoint(sorted((run / "checkpoints").glob("step_*.pt"))[-1])
    return {**{f"net.{k}": v for k, v in state["networks"].items()},
            **{f"ema.{n}.{k}": v for n, sd in state["ema"].items() for k, v in sd.items()}}


# ---------------------------------------------------------------------------- evaluate
def test_evaluate_writes_a_report_for_each_family(runs: dict[str, Path], data: dict[str, Path],
                                                  tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """``ganforge evaluate`` end to end (a stand-in feature network instead of Inception);
    StarGAN takes a style as --direction."""
    monkeypatch.setattr("ganforge.metrics.evaluate.InceptionExtractor",
                        lambda weights, device: QuadrantColours())
    common = ["--num-samples", "8", "--no-cache", "--no-progress", "--resamples", "2"]
    commands = {
        "maskgit": ["--data", str(data["captions"])],
        "unit": ["--data", str(data["a"]), "--target", str(data["b"])],
        "stargan": ["--data", str(data["warm"]), "--target", str(data["dark"]),
                    "--direction", "dark"]}
    for name, args in commands.items():
        out = tmp_path / name
        assert main(["evaluate", "--model", str(runs[name]), *args, "--out", str(out),
                     *common]) == 0, name
        metrics = json.loads((out / "metrics.json").read_text())
        assert (out / "report.md").is_file() and (out / "samples.png").is_file()
        text = json.dumps(metrics)
        assert '"fid"' in text and '"precision"' in text, name
        if name != "maskgit":
            assert '"l1"' in text, name  # paired figures of the translation


# ------------------------------------------------------------------------------- audit
def test_audit_of_text_to_image_maskgit_and_image_to_image_unit(
        runs: dict[str, Path], data: dict[str, Path], tmp_path: Path) -> None:
    mg = run_audit(runs["maskgit"], "colour", tmp_path / "maskgit", num_samples=8,
                   classifier_epochs=1, split=None)
    assert mg.task == "text-to-image" and mg.num_samples == 8
    assert mg.source_agreement is not None  # prompts came from the run's own captions
    unit = run_audit(runs["unit"], "colour", tmp_path / "unit", data["captions"],
                     num_samples=8, classifier=mg.files["classifier"], split=None)
    assert unit.task == "image-to-image" and unit.num_samples == 8
    assert (tmp_path / "unit" / "audit.md").is_file()


def test_audit_refuses_an_unknown_direction_before_training_a_classifier(
        runs: dict[str, Path], data: dict[str, Path], tmp_path: Path) -> None:
    """A multi-style model has no a2b (the default): one clear line, and no time spent."""
    with pytest.raises(ConfigError, match=r"direction 'a2b' is unknown.*warm, cool, dark"):
        run_audit(runs["stargan"], "colour", tmp_path / "sg", data["captions"], split=None,
                  sources=data["warm"])
    with pytest.raises(ConfigError, match=r"direction 'x2y' is unknown.*a2b, b2a"):
        run_audit(runs["unit"], "colour", tmp_path / "unit", data["captions"], split=None,
                  direction="x2y")
    assert not (tmp_path / "sg").exists() and not (tmp_path / "unit").exists()
    with pytest.raises(ConfigError, match="its run names no source domain for dark"):
        run_audit(runs["stargan"], "colour", tmp_path / "sg", data["captions"], split=None,
                  direction="dark", classifier_epochs=1)


# ------------------------------------------------------------------------ interpolate
def test_maskgit_interpolation_ends_are_the_prompts_own_images(runs: dict[str, Path]) -> None:
    """Prompts of different lengths: each end reads only its own tokens, so it is the image
    ``pipe(prompt, seed)`` gives (the shorter end once attended to the longer's padding)."""
    pipe = TextToImagePipeline.from_pretrained(runs["maskgit"])
    short, long = "a red circle", "a yellow triangle"
    for first, second in ((short, long), (long, short)):
        images = pipe.interpolate(first, second, steps=3, seed=5)
        assert len(images) == 3 and images[1].size == (16, 16)
        for end, prompt in ((images[0], first), (images[-1], second)):
            alone = pipe(prompt, seed=5)[0]
            assert np.array_equal(np.asarray(end), np.asarray(alone)), (first, prompt)
    with pytest.raises(ConfigError, match="no noise vector to truncate"):
        pipe.interpolate(short, long, steps=3, truncation=0.5)
    with pytest.raises(ConfigError, match="decode steps"):
        pipe.interpolate(short, long, steps=3, decode_steps=0)


# ------------------------------------------------------------------------------ serve
def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (20, 24), (200, 30, 30, 255)).save(out, format="PNG")
    return out.getvalue()


def test_serve_generates_with_maskgit_and_translates_with_unit_and_stargan(
        runs: dict[str, Path]) -> None:
    pytest.importorskip("fastapi", reason="the 'serve' extra is not installed")
    pytest.importorskip("httpx", reason="the 'serve' extra is not installed")
    from fastapi.testclient import TestClient

    from ganforge.serve.app import ServeConfig, create_app

    config = ServeConfig(models=[("mg", str(runs["maskgit"]))],
                         translators=[("unit", str(runs["unit"])), ("sg", str(runs["stargan"]))])
    with TestClient(create_app(config)) as client:
        listed = {m["name"]: m for m in client.get("/api/models").json()["models"]}
        assert listed["sg"]["styles"] == ["warm", "cool", "dark"]
        assert listed["unit"]["directions"] == ["a2b", "b2a"]
        answer = client.post("/api/generate", json={"prompt": "a red circle", "n": 2, "seed": 3})
        assert answer.status_code == 200 and len(answer.json()["images"]) == 2
        refused = client.post("/api/generate", json={"prompt": "a red circle", "truncation": 1})
        assert refused.status_code == 422 and "truncate" in refused.json()["error"]

        def translate(**form: str) -> tuple[int, dict]:
            r = client.post("/api/translate", files={"image": ("x.png", _png(), "image/png")},
                            data={**form, "format": "json"})
            return r.status_code, r.json()

        for form in ({"model": "unit"}, {"model": "unit", "direction": "b2a"},
                     {"model": "sg", "style": "dark"}, {"model": "sg", "direction": "cool"}):
            status, body = translate(**form)
            assert status == 200 and (body["width"], body["height"]) == (16, 16), form
        status, body = translate(model="sg")
        assert status == 422 and "name a target style" in body["error"]
        status, body = translate(model="unit", style="dark")
        assert status == 422 and "no style option" in body["error"]


# ----------------------------------------------------------------------------- resume
@pytest.mark.parametrize("family", ["unit", "maskgit"])
def test_resume_from_the_command_line_continues_exactly(family: str, runs: dict[str, Path],
                                                        data: dict[str, Path],
                                                        tmp_path: Path) -> None:
    """Stopped after step 2, ``ganforge train FAMILY --resume RUN`` ends where a straight
    run of the same config ends (the fixture's run)."""
    split = tmp_path / "split"
    assert train(_configs(data)[family], split, until=2).step == 2
    assert main(["train", family, "--resume", str(split), "--steps", str(STEPS)]) == 0
    straight, resumed = _weights(runs[family]), _weights(split)
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight), family
