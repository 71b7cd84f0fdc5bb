"""Retrieval-augmented text-to-image GAN: it learns the edit, its memory round-trips, bad
input is named."""

from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from ganforge.cli import main
from ganforge.config import RunConfig
from ganforge.data.synthetic import CAPTION_COLOURS, SHAPES, draw_shape
from ganforge.errors import CheckpointError, ConfigError, DataError, ImageTooSmall
from ganforge.inference.ragan import Memory, RAGANModel, colour_names
from ganforge.pipelines import TextToImagePipeline
from ganforge.train.loop import train

pytestmark = pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is None,
                                reason="the minilm extra (sentence-transformers) is not "
                                       "installed")

TINY = {"size": 16, "generator_channels": 8, "discriminator_channels": 8, "noise_dim": 16}


def _shapes(out: Path, size: int = 16) -> Path:
    """One image per caption "a {colour} {shape}" with colour and shape columns; a shape sits
    at the same place in every colour, so a same-shape neighbour differs only in colour."""
    (out / "images").mkdir(parents=True)
    rows = []
    for colour in CAPTION_COLOURS:
        for s, shape in enumerate(SHAPES):
            image = Image.new("RGB", (size, size), (255, 255, 255))
            x0 = s * size // 8
            draw_shape(ImageDraw.Draw(image), shape, (x0, 2, x0 + size // 2, 2 + size // 2),
                       CAPTION_COLOURS[colour])
            name = f"{colour}-{shape}.png"
            image.save(out / "images" / name)
            rows.append({"image": f"images/{name}", "caption": f"a {colour} {shape}",
                         "colour": colour, "shape": shape})
    (out / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out / "captions.jsonl"


def _config(captions: Path, steps: int, group: str = "colour", **model: object) -> RunConfig:
    return RunConfig(family="ragan", model={**TINY, **model},
                     data={"captions": str(captions), "retrieval_group": group},
                     train={"steps": steps, "batch_size": 12, "progress": False,
                            "sample_every": steps, "checkpoint_every": steps,
                            "lr_decay_start": 1.0, "ema_decay": 0.95, "eval_every": steps,
                            "eval_images": 12})


@pytest.fixture(scope="module")
def captions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _shapes(tmp_path_factory.mktemp("ragan-data"))


def test_the_generator_learns_the_edit_from_a_neighbour_to_the_caption(
        tmp_path: Path, captions: Path) -> None:
    """Images of the same colour are never each other's neighbour, so every caption starts
    from its shape in another colour; trained with L1 from those starts (--neighbour-recon),
    after a short run the zero-noise image is far nearer the caption's own image than that
    start. An untrained generator returns the start (its
    edit starts at zero), and one that ignores the text cannot know which colour to paint."""
    train(_config(captions, 300, generator_channels=16, recon_weight=10, neighbour_recon=True,
                  recon_rows=0.5, self_rows=0.0), tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "logs" / "scalars.jsonl").open()]
    (quality,) = [r for r in rows if "quality/l1" in r]
    assert quality["quality/start_l1"] > 0.1, quality  # the starts really are other colours
    assert quality["quality/l1"] < 0.5 * quality["quality/start_l1"], quality


def test_the_colour_head_learns_to_recolour_without_neighbour_l1(
        tmp_path: Path, captions: Path) -> None:
    """--colour-head: the same problem (each caption starts from its shape in another colour),
    with no L1 on the edit itself: the affine colour map learnt from the prompt recolours the
    start, and the zero-noise image ends far nearer the caption's own image than the start."""
    train(_config(captions, 300, generator_channels=16, colour_head=True, colour_weight=10,
                  self_rows=0.0), tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "logs" / "scalars.jsonl").open()]
    (quality,) = [r for r in rows if "quality/l1" in r]
    assert quality["quality/l1"] < 0.5 * quality["quality/start_l1"], quality
    assert any("loss/colour" in r for r in rows)
    assert RAGANModel.from_pretrained(tmp_path / "run").config.colour_head


def test_saved_model_carries_its_memory_and_reproduces(tmp_path: Path, captions: Path) -> None:
    train(_config(captions, 2), tmp_path / "run")
    model = RAGANModel.from_pretrained(tmp_path / "run")
    pipe = TextToImagePipeline(model)
    # the memory is every training image, lossless, with its caption
    memory = model.modules["memory"].images()
    first = torch.from_numpy(np.array(
        Image.open(captions.parent / "images" / "red-circle.png").convert("RGB")))
    index = model.config.memory_captions.index("a red circle")
    assert torch.equal(memory[index], first.permute(2, 0, 1))
    # zero noise starts from the nearest caption: for a training caption, its own image
    sentence = pipe.encode(["a red circle"])
    assert model.starting_captions(sentence, torch.zeros(1, 16)) == ["a red circle"]
    # a large first noise value starts from a farther neighbour, but only among those about
    # as similar as the nearest: a prompt that names one image keeps starting from it
    far = torch.zeros(1, 16)
    far[0, 0] = 2.5
    assert model.starting_captions(sentence, far) == ["a red circle"]
    model.config.rank_margin = 1.0
    assert model.starting_captions(sentence, far) != ["a red circle"]
    model.config.rank_margin = 0.05
    a = pipe("a red circle", num_images=3, seed=5)
    b = TextToImagePipeline.from_pretrained(tmp_path / "run")("a red circle", 3, seed=5)
    assert [im.tobytes() for im in a] == [im.tobytes() for im in b]


def test_colour_names_name_the_dominant_colour_on_white() -> None:
    colours = {"red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 220),
               "yellow": (240, 200, 20), "purple": (130, 40, 200), "brown": (120, 70, 20),
               "black": (10, 10, 10), "white": (255, 255, 255)}
    images = torch.full((len(colours), 3, 16, 16), 255, dtype=torch.uint8)
    for i, rgb in enumerate(colours.values()):
        images[i, :, 4:12, 4:12] = torch.tensor(rgb, dtype=torch.uint8).view(3, 1, 1)
        if rgb != (255, 255, 255):  # (white on white is all background: "white")
            images[i, :, 4:6, 4:6] = 0  # a small black detail does not outvote the fill
    assert colour_names(images) == list(colours)


def test_colour_keys_pick_the_image_of_the_prompts_colour(tmp_path: Path,
                                                         captions: Path) -> None:
    """Captions that name no colour ("a circle" for a circle of every colour): the saved
    memory's colour keys let "a blue circle" start from the blue one, "a red circle" from
    the red one; without them the caption alone cannot tell the circles apart."""
    rows = [json.loads(line) for line in captions.read_text().splitlines()]
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps({**r, "image": str(captions.parent / r["image"]),
                                          "caption": f"a {r['shape']}"}) + "\n" for r in rows))
    train(_config(plain, 2), tmp_path / "run")
    model = RAGANModel.from_pretrained(tmp_path / "run")
    assert model.config.colour_keys
    pipe = TextToImagePipeline(model)
    images = model.modules["memory"].images()
    for colour in ("red", "blue", "green", "yellow"):
        index, similarity = model.retrieve(pipe.encode([f"a {colour} circle"]),
                                           torch.zeros(1, 16))
        assert colour_names(images[index]) == [colour]
        assert model.config.memory_captions[int(index)] == "a circle"
        assert 0 < float(similarity) < 1  # the caption's similarity, which the generator saw
    train(_config(plain, 2, colour_keys=False), tmp_path / "off")
    off = RAGANModel.from_pretrained(tmp_path / "off")
    assert off.modules["memory"].colour_keys is None
    picked = {colour_names(images[off.retrieve(pipe.encode([f"a {c} circle"]),
                                               torch.zeros(1, 16))[0]])[0]
              for c in ("red", "blue", "green", "yellow")}
    assert len(picked) == 1
    # a model saved without them gets them afterwards (how the shipped model got its keys)
    off.add_colour_keys(lambda texts: pipe.text_encoder.encode(texts).sentence)
    assert off.config.colour_keys and off.modules["memory"].colour_keys is not None
    index, _ = off.retrieve(pipe.encode(["a blue circle"]), torch.zeros(1, 16))
    assert colour_names(images[index]) == ["blue"]


def test_damaged_memory_is_a_clear_error() -> None:
    images = torch.randint(0, 255, (3, 3, 8, 8), dtype=torch.uint8)
    memory = Memory.of(images, torch.randn(3, 384))
    assert torch.equal(memory.images(), images)
    memory.png[memory.offsets[1]:memory.offsets[2]] = 7
    memory._decoded = None
    with pytest.raises(CheckpointError, match="memory image 1 cannot be decoded"):
        memory.images()


def test_bad_retrieval_settings_are_named(tmp_path: Path, captions: Path, capsys) -> None:
    with pytest.raises(DataError, match="--retrieval-group 'nope': no such column"):
        train(_config(captions, 1, group="nope"), tmp_path / "a")
    rows = [json.loads(line) for line in captions.read_text().splitlines()]
    one = tmp_path / "one.jsonl"
    one.write_text("".join(json.dumps({**r, "image": str(captions.parent / r["image"]),
                                        "all": 1}) + "\n" for r in rows))
    with pytest.raises(DataError, match="every image is in one group"):
        train(_config(one, 1, group="all"), tmp_path / "b")
    assert main(["train", "ragan", "--captions", str(captions), "--text-encoder", "tiny",
                 "--out", str(tmp_path / "c"), "--steps", "1"]) == 1
    assert "frozen text encoder: use --text-encoder minilm" in capsys.readouterr().err


def test_self_rows_start_from_their_own_image_and_alone_get_l1(captions: Path) -> None:
    """--self-rows: that share of rows starts from its own image (similarity 1); without
    --neighbour-recon only those rows have an L1 target. Rows never start from an image of
    their own retrieval group otherwise, and the draws repeat for the same epoch."""
    from ganforge.config import from_dict
    from ganforge.models.ragan import RAGAN, RAGANConfig, RetrievalDataConfig

    family = RAGAN(RAGANConfig(**TINY, self_rows=0.5).validate())
    data = family.load_data(from_dict(RetrievalDataConfig, {
        "captions": str(captions), "retrieval_group": "colour"}), seed=0)
    indices = torch.arange(len(data))
    batch = data.batch(indices, epoch=3)
    own = batch["neighbours"][:, 0] == indices
    assert 0.2 < own.float().mean() < 0.8
    assert torch.equal(batch["single"], own)
    assert (batch["neighbour_similarity"][own] == 1).all()
    colours = [data.fields[i]["colour"] for i in range(len(data))]
    for i in indices[~own].tolist():
        assert all(colours[j] != colours[i] for j in batch["neighbours"][i].tolist())
    assert torch.equal(data.batch(indices, epoch=3)["neighbours"], batch["neighbours"])


def test_generate_records_the_training_image_each_picture_started_from(
        tmp_path: Path, captions: Path) -> None:
    from ganforge.provenance.metadata import read_png_metadata

    train(_config(captions, 2), tmp_path / "run")
    assert main(["generate", "a red circle", "a blue square", "-n", "2", "--model",
                 str(tmp_path / "run"), "--out", str(tmp_path / "out")]) == 0
    meta = read_png_metadata(tmp_path / "out" / "a-blue-square_s0_001.png")
    assert meta["started_from"] == "a blue square" and meta["prompt"] == "a blue square"


def test_a_prompt_naming_what_no_image_has_starts_from_a_collage(tmp_path: Path) -> None:
    """No training image is a face with sunglasses or a blue apple, but the memory has a face,
    sunglasses and a red apple: the model starts from the face with the sunglasses on its
    eyes, and from the apple recoloured blue; with composition off it cannot."""
    size = 32
    (tmp_path / "images").mkdir()
    drawings = {
        "a smiling face": lambda d: (d.ellipse((3, 3, 28, 28), fill=(255, 204, 77)),
                                     d.rectangle((9, 11, 11, 14), fill=(102, 69, 0)),
                                     d.rectangle((20, 11, 22, 14), fill=(102, 69, 0)),
                                     d.rectangle((10, 21, 21, 23), fill=(102, 69, 0))),
        "dark sunglasses": lambda d: d.rectangle((4, 12, 27, 18), fill=(41, 47, 51)),
        "a red apple": lambda d: (d.ellipse((6, 8, 26, 28), fill=(221, 46, 68)),
                                  d.rectangle((15, 3, 17, 9), fill=(110, 60, 30))),
        "a green square": lambda d: d.rectangle((8, 8, 24, 24), fill=(30, 170, 40)),
        "a rocket": lambda d: d.polygon([(16, 3), (24, 28), (8, 28)], fill=(200, 200, 220)),
    }
    rows = []
    for i, (caption, draw) in enumerate(drawings.items()):
        image = Image.new("RGB", (size, size), "white")
        draw(ImageDraw.Draw(image))
        image.save(tmp_path / "images" / f"{i}.png")
        rows.append({"image": f"images/{i}.png", "caption": caption, "group": str(i)})
    (tmp_path / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = _config(tmp_path / "captions.jsonl", 2, group="group", size=size)
    config.train["batch_size"] = 4
    train(config, tmp_path / "run")
    model = RAGANModel.from_pretrained(tmp_path / "run")
    assert model.config.compose
    pipe = TextToImagePipeline(model)
    pipe.watermark = False
    prompts = ["a smiling face with sunglasses", "a blue apple", "a smiling face"]
    plans = pipe.compositions(prompts)
    assert plans is not None and plans[2] is None
    started = model.starting_captions(pipe.encode(prompts), torch.zeros(3, 16), plans)
    assert started == ["a smiling face + dark sunglasses", "a red apple, recoloured blue",
                       "a smiling face"]
    worn, blue, plain = (torch.from_numpy(np.array(im)).permute(2, 0, 1)
                         for im in pipe(prompts, seed=0))
    lens = (worn.int() - torch.tensor([41, 47, 51]).view(3, 1, 1)).abs().amax(0) < 30
    assert lens[8:18].sum() > 60  # the lenses lie over the eyes
    assert ((plain.int() - torch.tensor([41, 47, 51]).view(3, 1, 1)).abs().amax(0)
            < 30).sum() < 10
    assert colour_names(blue[None]) == ["blue"]
    # an alias naming the face "sunglasses" (as the emoji data names 😎) does not make the
    # face the accessory: the accessory is looked up by captions only
    face = model.config.memory_captions.index("a smiling face")
    assert model.remember(model.modules["memory"].images()[face:face + 1].clone(),
                          ["a smiling face"], lambda t: pipe.text_encoder.encode(t).sentence,
                          [["sunglasses"]]) == 0
    assert model.config.memory_aliases == ["sunglasses"]
    assert model.starting_captions(pipe.encode(prompts[:1]), torch.zeros(1, 16),
                                   pipe.compositions(prompts[:1])) == [started[0]]
    model.config.compose = False
    assert pipe.compositions(prompts) is None
    alone = model.starting_captions(pipe.encode(prompts), torch.zeros(3, 16))
    assert all(caption in drawings for caption in alone)


def test_interpolation_changes_step_by_step_from_one_prompt_to_the_other(
        tmp_path: Path, captions: Path) -> None:
    """The ends are the prompts' own pictures (same seed), and no step between frames is
    more than a third of the whole change (blending only the embeddings jumps once, where
    the nearest training image changes)."""
    train(_config(captions, 2), tmp_path / "run")
    pipe = TextToImagePipeline.from_pretrained(tmp_path / "run")
    pipe.watermark = False
    frames = np.stack([np.asarray(im).astype(float)
                       for im in pipe.interpolate("a red circle", "a blue square", 8, seed=3)])
    first, last = (np.asarray(pipe(p, seed=3)[0]).astype(float)
                   for p in ("a red circle", "a blue square"))
    assert np.abs(frames[0] - first).max() <= 2 and np.abs(frames[-1] - last).max() <= 2
    whole = np.abs(frames[-1] - frames[0]).mean()
    steps = [np.abs(b - a).mean() for a, b in itertools.pairwise(frames)]
    assert whole > 20 and max(steps) < whole / 3, (whole, steps)


def test_remember_adds_images_that_prompts_then_start_from(tmp_path: Path,
                                                          captions: Path) -> None:
    """Trained without the blue shapes, the model draws "a blue circle" from another colour;
    `ganforge remember` adds the blue images to its memory without training, and the saved
    grown model then draws the blue circle itself (zero noise: its own image, lightly
    edited), keeps every older image, reproduces after loading, and adds nothing the second
    time. The model it started from is left as it was."""
    rows = [json.loads(line) for line in captions.read_text().splitlines()]
    for name, keep in (("old", lambda r: r["colour"] != "blue"),
                       ("new", lambda r: r["colour"] == "blue")):
        (tmp_path / f"{name}.jsonl").write_text("".join(
            json.dumps({**r, "image": str(captions.parent / r["image"])}) + "\n"
            for r in rows if keep(r)))
    config = _config(tmp_path / "old.jsonl", 2)
    config.train["batch_size"] = 8
    train(config, tmp_path / "run")
    before = (tmp_path / "run" / "model" / "model.safetensors").read_bytes()
    real = torch.from_numpy(np.array(Image.open(captions.parent / "images" /
                                                "blue-circle.png").convert("RGB")))
    real = real.permute(2, 0, 1).float()

    def error(model_dir: Path) -> float:
        pipe = TextToImagePipeline.from_pretrained(model_dir)
        pipe.watermark = False
        drawn = pipe.generate_tensor(pipe.encode(["a blue circle"]), torch.zeros(1, 16))
        return float((drawn[0].add(1).mul(127.5) - real).abs().mean())

    assert main(["remember", "--model", str(tmp_path / "run"), "--captions",
                 str(tmp_path / "new.jsonl"), "--out", str(tmp_path / "grown")]) == 0
    grown = RAGANModel.from_pretrained(tmp_path / "grown")
    old = RAGANModel.from_pretrained(tmp_path / "run")
    count = len(old.config.memory_captions)
    assert len(grown.config.memory_captions) == count + len(SHAPES)
    assert torch.equal(grown.modules["memory"].images()[:count],
                       old.modules["memory"].images())
    index = grown.config.memory_captions.index("a blue circle")
    assert torch.equal(grown.modules["memory"].images()[index].float(), real)
    sentence = TextToImagePipeline(grown).encode(["a blue circle"])
    assert grown.starting_captions(sentence, torch.zeros(1, 16)) == ["a blue circle"]
    assert error(tmp_path / "run") > 20 and error(tmp_path / "grown") < 5
    a = TextToImagePipeline(grown)("a blue square", 2, seed=4)
    b = TextToImagePipeline.from_pretrained(tmp_path / "grown")("a blue square", 2, seed=4)
    assert [im.tobytes() for im in a] == [im.tobytes() for im in b]
    assert (tmp_path / "run" / "model" / "model.safetensors").read_bytes() == before
    again = TextToImagePipeline(grown)
    assert again.remember([captions.parent / "images" / "blue-circle.png"],
                          ["a blue circle"]) == 0


def test_remember_names_bad_input(tmp_path: Path, captions: Path, capsys) -> None:
    train(_config(captions, 1), tmp_path / "run")
    pipe = TextToImagePipeline.from_pretrained(tmp_path / "run")
    model = pipe.model
    encode = lambda texts: pipe.text_encoder.encode(texts).sentence  # noqa: E731
    good = torch.full((1, 3, 16, 16), 255, dtype=torch.uint8)
    with pytest.raises(ConfigError, match="images are 8x8, the model's memory holds 16x16"):
        model.remember(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), ["a dot"], encode)
    with pytest.raises(ConfigError, match="caption 0 is empty"):
        model.remember(good, ["  "], encode)
    with pytest.raises(ConfigError, match="one caption per image: 1 image"):
        model.remember(good, ["a", "b"], encode)
    small = tmp_path / "small.png"
    Image.new("RGB", (8, 8), "red").save(small)
    with pytest.raises(ImageTooSmall, match=r"small\.png is 8x8, smaller than the model's 16x16"):
        pipe.remember([small], ["a red dot"])
    count = len(model.config.memory_captions)
    assert pipe.remember([small], ["a red dot"], allow_upscale=True) == 1
    assert len(model.config.memory_captions) == count + 1
    # a missing captions file: one clear line, and no model folder written
    assert main(["remember", "--model", str(tmp_path / "run"), "--captions",
                 str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "grown")]) == 1
    assert "nope.jsonl" in capsys.readouterr().err and not (tmp_path / "grown").exists()
    # a family without a memory says so
    train(RunConfig(family="dfgan", model={"size": 16, "generator_channels": 8,
                                           "discriminator_channels": 8, "text_dim": 32,
                                           "text_layers": 1, "noise_dim": 16},
                    data={"captions": str(captions)},
                    train={"steps": 1, "batch_size": 8, "progress": False}), tmp_path / "gan")
    with pytest.raises(ConfigError, match="dfgan models have no memory of images"):
        TextToImagePipeline.from_pretrained(tmp_path / "gan").remember([small], ["a red dot"])


def test_aliases_name_a_memory_image_and_survive_saving(tmp_path: Path, captions: Path,
                                                        capsys) -> None:
    """`ganforge remember --aliases COLUMN` adds more names to images already held: the
    prompt "tomato" then starts from the red circle, with the alias as the name the
    generator is given, on every seed (no other image is within the margin of an exact
    name). An alias equal to a caption, or already another image's, is dropped; one without
    letters too."""
    rows = [json.loads(line) for line in captions.read_text().splitlines()]
    names = {"a red circle": "tomato|round_thing", "a blue square": "a red circle",
             "a green circle": "tomato, +1"}
    (tmp_path / "aliases.jsonl").write_text("".join(
        json.dumps({**r, "image": str(captions.parent / r["image"]),
                    "nick": names.get(r["caption"], "")}) + "\n" for r in rows))
    train(_config(captions, 2), tmp_path / "run")
    pipe = TextToImagePipeline.from_pretrained(tmp_path / "run")
    before = pipe.model.starting_captions(pipe.encode(["tomato"]), torch.zeros(1, 16))
    assert before != ["a red circle"]
    assert main(["remember", "--model", str(tmp_path / "run"), "--captions",
                 str(tmp_path / "aliases.jsonl"), "--aliases", "nick",
                 "--out", str(tmp_path / "named")]) == 0
    model = RAGANModel.from_pretrained(tmp_path / "named")
    assert model.config.memory_aliases == ["tomato", "round thing"]
    assert len(model.config.memory_captions) == len(rows)  # no image added
    pipe = TextToImagePipeline(model)
    noise = torch.randn(8, 16, generator=torch.Generator().manual_seed(0)) * 2
    sentence = pipe.encode(["tomato"] * 8)
    assert model.starting_captions(sentence, noise) == ["a red circle"] * 8
    index, similarity = model.retrieve(sentence[:1], noise[:1])
    assert float(similarity) == pytest.approx(1.0, abs=1e-3)
    key = model._start_keys(sentence[:1], index)
    assert torch.nn.functional.cosine_similarity(key, sentence[:1]).item() > 0.999
    # a prompt naming the caption still gets the caption's key
    own = pipe.encode(["a red circle"])
    assert torch.allclose(model._start_keys(own, index),
                          model.modules["memory"].keys[index].float())
    assert main(["remember", "--model", str(tmp_path / "run"), "--captions",
                 str(tmp_path / "aliases.jsonl"), "--aliases", "nope", "--out",
                 str(tmp_path / "x")]) == 1
    assert "--aliases 'nope': no such column" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_remember_a_folder_captions_each_image_by_its_file_name(tmp_path: Path,
                                                                captions: Path,
                                                                capsys) -> None:
    train(_config(captions, 1), tmp_path / "run")
    folder = tmp_path / "mine"
    folder.mkdir()
    Image.open(captions.parent / "images" / "blue-circle.png").save(folder / "shiny-blue_ball.png")
    assert main(["remember", "--model", str(tmp_path / "run"), "--images", str(folder),
                 "--out", str(tmp_path / "grown")]) == 0
    model = RAGANModel.from_pretrained(tmp_path / "grown")
    assert model.config.memory_captions[-1] == "shiny blue ball"
    pipe = TextToImagePipeline(model)
    assert model.starting_captions(pipe.encode(["shiny blue ball"]),
                                   torch.zeros(1, 16)) == ["shiny blue ball"]
    assert main(["remember", "--model", str(tmp_path / "run"), "--images", str(folder),
                 "--aliases", "nick", "--out", str(tmp_path / "x")]) == 1
    assert "--images takes captions from file names" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
