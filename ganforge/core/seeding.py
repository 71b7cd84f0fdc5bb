"""Seeds: every random choice in ganforge comes from an explicit seed.

``image_seed(seed, index)`` is the seed of image ``index`` of a request made with ``seed``:
image j of a request never depends on how many images were asked for.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def image_seed(seed: int, index: int) -> int:
    """The seed of image ``index`` of a request with ``seed`` (one generator per image)."""
    return seed * 1_000_003 + index


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The RNG state of this process, as tensors and plain data."""
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
             "python_pos": random.getstate()[2],
             "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
             "numpy_pos": int(np.random.get_state()[2])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` captured."""
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32),
                         state["numpy_pos"], 0, 0.0))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
