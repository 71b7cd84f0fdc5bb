"""What everyday prompts start from in a retrieval-augmented (ragan) text-to-image model.

For each prompt, the memory captions its first ``--seeds`` images start from (seed 0, as
``ganforge generate PROMPT -n SEEDS`` draws them, collages included) and the three nearest
captions with their ranking similarity. A start whose caption does not name what was asked
for is a wrong picture however well it is drawn, which FID and R-precision on emoji names do
not see: this is the check for prompts a user types.

    python benchmarks/t2i_prompt_probe.py --model ganforge/assets/text2image-emoji-64
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

import torch
import torch.nn.functional as F

from ganforge.pipelines import DEFAULT_MODEL, TextToImagePipeline

PROMPTS = ["dog", "cat", "pizza", "sun", "moon", "star", "tree", "car", "house", "rocket",
           "smiling sun", "happy cat", "birthday cake", "fire", "rainbow", "apple", "banana",
           "heart", "thumbs up", "ghost", "robot", "unicorn", "snowman", "coffee", "guitar",
           "football", "airplane", "flower", "book", "clock", "sad dog", "angry face",
           "laughing face", "blue car", "green heart", "ice cream", "a cute puppy",
           "sleeping cat", "party", "money"]


def nearest(pipe: TextToImagePipeline, prompt: str, count: int = 3) -> list[tuple[str, float]]:
    """The ``count`` memory captions that rank highest for ``prompt`` (caption, alias or
    colour key, as the model ranks them), with that similarity."""
    model = pipe.model
    memory = model.modules["memory"]
    sentence = F.normalize(pipe.encode([prompt]).float(), dim=1)
    similarity, _ = model.name_similarity(sentence)
    if memory.colour_keys is not None:
        pool = similarity.topk(min(model.config.colour_pool, similarity.shape[1]), dim=1)
        coloured = torch.einsum("bd,bkd->bk", sentence, memory.colour_keys[pool.indices].float())
        similarity = similarity.scatter(1, pool.indices, torch.maximum(pool.values, coloured))
    top = similarity.topk(count, dim=1)
    return [(model.config.memory_captions[int(i)], round(float(v), 3))
            for v, i in zip(top.values[0], top.indices[0], strict=True)]


def main(argv: list[str] | None = None) -> None:
    """Print one JSON line per prompt: its starts over the seeds and its nearest captions."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--seeds", type=int, default=6, help="images per prompt (seed 0)")
    parser.add_argument("prompts", nargs="*", help="prompts (default: 40 everyday ones)")
    args = parser.parse_args(argv)
    pipe = TextToImagePipeline.from_pretrained(args.model)
    if not hasattr(pipe.model, "starting_captions"):
        raise SystemExit(f"{args.model} is a {pipe.family} model: only ragan models retrieve")
    noise = pipe.noise(args.seeds, 0)
    for prompt in args.prompts or PROMPTS:
        repeated = [prompt] * args.seeds
        starts = pipe.model.starting_captions(pipe.encode(repeated), noise,
                                              pipe.compositions(repeated))
        print(json.dumps({"prompt": prompt, "starts": dict(Counter(starts)),
                          "nearest": nearest(pipe, prompt)}))


if __name__ == "__main__":
    main()
