"""Files that matter, written atomically: a temporary name in the same folder, then a rename.

A process killed at any instant leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ganforge.errors import CheckpointError, WrongFamilyCheckpoint

CHECKPOINT_FORMAT = "ganforge-checkpoint-v1"
_UMASK = os.umask(0)
os.umask(_UMASK)
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` and rename the result onto ``path`` once it is complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual mode
    try:
        write(Path(tmp))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_replace_dir(target: str | Path, fill: Callable[[Path], None]) -> None:
    """Build a folder with ``fill(tmp_dir)`` beside ``target``, then swap it into place."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        fill(tmp)
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700; give the folder the usual mode
        for child in tmp.iterdir():
            if child.is_file():
                os.chmod(child, 0o666 & ~_UMASK)
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


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
