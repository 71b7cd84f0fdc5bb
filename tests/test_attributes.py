"""Sample attributes and attribute-balanced sampling (the bias mitigation)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image

from ganforge.data.attributes import attribute_of, skin_tone
from ganforge.data.captions import CaptionedImages
from ganforge.errors import DataError


def test_skin_tone_from_id_or_caption() -> None:
    assert skin_tone({"id": "1f385-1f3fb", "caption": "father christmas, light skin tone"}) \
        == "light"
    assert skin_tone({"id": "1f385"}) == "none"
    assert skin_tone({"caption": "waving hand, medium-dark skin tone"}) == "medium-dark"
    assert skin_tone({"caption": "ok hand, medium skin tone"}) == "medium"
    assert skin_tone({"id": "1f469-1f3fb-200d-1f91d-200d-1f468-1f3ff"}) == "mixed"
    with pytest.raises(DataError, match="'colour' is not a column"):
        attribute_of({"category": "x"}, "colour")


def test_balanced_sampling_evens_out_a_skewed_attribute(tmp_path: Path) -> None:
    rows = []
    for i in range(40):  # 36 "common", 4 "rare"
        name = f"{i}.png"
        Image.new("RGB", (16, 16), (i * 5, 0, 0)).save(tmp_path / name)
        rows.append({"image": name, "caption": f"item {i}",
                     "kind": "rare" if i < 4 else "common"})
    captions = tmp_path / "captions.jsonl"
    captions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    plain = CaptionedImages.load(captions, 16)
    balanced = CaptionedImages.load(captions, 16, balance_by="kind")
    kinds_plain, kinds_balanced = Counter(), Counter()
    for epoch in range(20):
        idx = torch.arange(40)
        for data, counter in ((plain, kinds_plain), (balanced, kinds_balanced)):
            for caption in data.batch(idx, epoch)["captions"]:
                counter["rare" if int(caption.split()[1]) < 4 else "common"] += 1
    assert kinds_plain["rare"] / 800 == pytest.approx(0.1)
    assert 0.4 < kinds_balanced["rare"] / 800 < 0.6
    first = balanced.batch(torch.arange(8), epoch=3)["captions"]
    assert balanced.batch(torch.arange(8), epoch=3)["captions"] == first  # deterministic


def test_tone_variants_pair_untoned_captions_with_their_single_tone_variants() -> None:
    from ganforge.inference.ragan import tone_variants, vary_tones

    captions = ["man running", "man running, dark skin tone", "man running: light skin tone",
                "kiss", "kiss: light skin tone, dark skin tone", "red heart",
                "woman running, medium-dark skin tone"]
    assert tone_variants(captions) == {0: [1, 2]}  # two tones, or no untoned base: none
    noise = torch.zeros(3, 4)
    noise[:, 1] = torch.tensor([-3.0, 0.0, 3.0])  # low, middle and high second noise value
    assert vary_tones(torch.tensor([0, 0, 0]), noise, {0: [1, 2]}).tolist() == [0, 1, 2]
    assert vary_tones(torch.tensor([5, 5, 5]), noise, {0: [1, 2]}).tolist() == [5, 5, 5]
