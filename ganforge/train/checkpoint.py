"""Training checkpoints: one file per step, written atomically, pruned, read back safely.

A process killed at any instant leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from ganforge.core.files import atomic_write
from ganforge.errors import CheckpointError, WrongFamilyCheckpoint

CHECKPOINT_FORMAT = "ganforge-checkpoint-v1"
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


def checkpoint_steps(folder: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of the checkpoints in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP_FILE.match(p.name))]
    return sorted(found)


def save_checkpoint(folder: str | Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write ``state`` as ``step_NNNNNNN.pt`` atomically and prune all but the ``keep`` newest."""
    path = Path(folder) / f"step_{step:07d}.pt"
    atomic_write(path, lambda tmp: torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp))
    for _, old in checkpoint_steps(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path, family: str | None = None) -> dict[str, Any]:
    """Read a checkpoint (tensors and plain data only: never arbitrary pickled objects)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged or foreign file
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200]})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a ganforge checkpoint")
    if family is not None and state.get("family") != family:
        raise WrongFamilyCheckpoint(f"checkpoint {path} belongs to a {state.get('family')!r} "
                                    f"model, not {family!r}")
    return state


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The newest checkpoint in ``folder``, or None."""
    steps = checkpoint_steps(folder)
    return steps[-1][1] if steps else None
