"""The text-to-image model shipped inside the package: loads offline and generates."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from ganforge.pipelines import DEFAULT_MODEL, TextToImagePipeline


@pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is None,
                    reason="the shipped model's text encoder needs the minilm extra")
def test_the_shipped_default_model_generates_offline() -> None:
    weights = DEFAULT_MODEL / "model.safetensors"
    assert weights.stat().st_size <= 25 * 2**20
    card = (DEFAULT_MODEL / "README.md").read_text()
    assert "CC-BY 4.0" in card and "Twitter" in card
    pipe = TextToImagePipeline.from_pretrained(DEFAULT_MODEL)
    images = pipe("grinning face", num_images=2, seed=0)
    assert images[0].size == (64, 64)
    assert np.asarray(images[0]).astype(float).std() > 5  # not a blank image
    again = pipe("grinning face", num_images=2, seed=0)
    assert [im.tobytes() for im in again] == [im.tobytes() for im in images]
    # alone, image 0 runs at batch size 1: the same image up to float rounding
    alone = np.asarray(pipe("grinning face", num_images=1, seed=0)[0]).astype(int)
    first = np.asarray(images[0]).astype(int)
    assert np.abs(alone - first).max() <= 2 and (alone != first).mean() < 0.01


@pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is None,
                    reason="the shipped model's text encoder needs the minilm extra")
def test_the_shipped_default_draws_the_demo_prompts_it_holds_no_image_of() -> None:
    """Held out of training: "grinning face with sunglasses" starts from a grinning face with
    the memory's sunglasses on it, "blue apple" from an apple recoloured blue."""
    import torch

    from ganforge.inference.ragan import colour_names

    pipe = TextToImagePipeline.from_pretrained(DEFAULT_MODEL)
    pipe.watermark = False
    prompts = ["grinning face with sunglasses", "blue apple", "grinning face"]
    started = pipe.model.starting_captions(pipe.encode(prompts), pipe.noise(3, 0),
                                           pipe.compositions(prompts))
    assert "grinning" in started[0] and started[0].endswith("+ sunglasses")
    assert "apple" in started[1] and started[1].endswith("recoloured blue")
    shades, apple, plain = (np.asarray(im).astype(int) for im in pipe(prompts, seed=0))
    lens = np.abs(shades - [41, 47, 51]).max(axis=2) < 30  # Twemoji's sunglasses grey
    assert lens[16:36].sum() > 150 and (np.abs(plain - [41, 47, 51]).max(axis=2) < 30).sum() < 30
    assert colour_names(torch.from_numpy(apple).permute(2, 0, 1)[None]) == ["blue"]


@pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is None,
                    reason="the shipped model's text encoder needs the minilm extra")
def test_varied_skin_tones_spread_untoned_people_prompts_and_keep_named_tones() -> None:
    from ganforge.errors import ConfigError

    pipe = TextToImagePipeline.from_pretrained(DEFAULT_MODEL)
    pipe.watermark = False
    model, count = pipe.model, 60
    noise = pipe.noise(count, 0)

    def started(prompt: str, skin_tones: str) -> list[str]:
        sentence = pipe.encode([prompt]).repeat(count, 1)
        return model.starting_captions(sentence, noise, None, skin_tones)

    assert set(started("man running", "as-named")) == {"man running"}
    varied = started("man running", "varied")
    tones = [c.split(", ")[1] if ", " in c else "none" for c in varied]
    assert all(c.startswith("man running") for c in varied)
    shares = [tones.count(t) / count for t in sorted(set(tones))]
    assert len(shares) == 6 and min(shares) >= 0.05 and max(shares) <= 0.35, tones
    # a prompt that names its tone starts as retrieved; so does an emoji without variants
    for prompt in ("man running, dark skin tone", "red heart"):
        assert started(prompt, "varied") == started(prompt, "as-named")
    # the pictures follow: mean skin colour of the faces differs across the varied seeds
    images = pipe(["man running"] * 1, num_images=12, seed=0, skin_tones="varied")
    plain = pipe(["man running"] * 1, num_images=12, seed=0)
    spread = np.std([np.asarray(im, float)[8:24, 20:44].mean() for im in images])
    assert spread > 2 * np.std([np.asarray(im, float)[8:24, 20:44].mean() for im in plain])
    # an interpolation takes the setting too: both ends get the seed's tone
    seed = next(s for s in range(12) if "skin tone" in model.starting_captions(
        pipe.encode(["man running"]), pipe.noise(1, s), None, "varied")[0])
    walk = pipe.interpolate("man running", "woman running", 3, seed=seed, skin_tones="varied")
    plain_walk = pipe.interpolate("man running", "woman running", 3, seed=seed)
    assert len(walk) == 3 and all(np.abs(np.asarray(a, float) - np.asarray(b, float)).mean() > 2
                                  for a, b in zip(walk, plain_walk, strict=True))
    with pytest.raises(ConfigError, match="skin_tones must be one of as-named, varied"):
        pipe("man running", skin_tones="rainbow")
