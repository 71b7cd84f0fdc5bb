"""The one on-disk format of everything ganforge saves for later use.

A saved artifact is a folder with ``config.json`` and ``model.safetensors`` (the contract of
diffusers' ``ConfigMixin``/``ModelMixin``): the JSON holds a format tag, the artifact's kind
and version, its typed config and a free ``metadata`` record (how it was made, how it
scored; never read to decide behaviour); the safetensors file holds the weights of its named
modules as ``<module>.<parameter>`` (never pickle). Models, the tokenizer, the detector, the
audit classifier and the alignment scorer are all artifacts, loaded with one verb::

    thing = SomeArtifact.from_pretrained(path)      # checked: kind, version, config, weights
    thing.save_pretrained(path)                      # atomic: a reader never sees half of it
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, ClassVar, Self

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

import ganforge
from ganforge.config import from_dict, to_dict
from ganforge.core.device import resolve_device
from ganforge.core.files import atomic_replace_dir
from ganforge.errors import CheckpointError, ConfigError

ARTIFACT_FORMAT = "ganforge-artifact"
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


def state_mismatch(expected: dict[str, torch.Tensor], saved: dict[str, torch.Tensor],
                   shown: int = 3) -> str:
    """What keeps ``saved`` tensors from loading into a network whose state is ``expected``:
    missing and unexpected names and shape mismatches, a few of each ('' when they fit)."""
    def some(names: list[str]) -> str:
        more = f" (+{len(names) - shown} more)" if len(names) > shown else ""
        return ", ".join(names[:shown]) + more

    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    shapes = [f"{k} saved {list(saved[k].shape)}, expected {list(v.shape)}"
              for k, v in expected.items() if k in saved and saved[k].shape != v.shape]
    parts = [f"missing: {some(missing)}" if missing else "",
             f"unexpected: {some(unexpected)}" if unexpected else "",
             f"wrong shape: {some(shapes)}" if shapes else ""]
    return "; ".join(p for p in parts if p)


def read_header(path: str | Path, config_name: str = CONFIG_NAME,
                weights_name: str = WEIGHTS_NAME) -> tuple[Path, dict[str, Any]]:
    """The folder holding a saved artifact (``path`` itself, or the ``model/`` a training run
    exports beside its own config.json) and its parsed JSON header; clear errors for a
    missing or foreign folder."""
    path = Path(path)
    for folder in (path, path / "model"):
        if (folder / config_name).is_file() and (folder / weights_name).is_file():
            break
    else:
        if not path.exists():
            raise CheckpointError(f"saved model {path} does not exist")
        raise CheckpointError(f"no saved model at {path}: expected {config_name} and "
                              f"{weights_name} there or in {path / 'model'} (a training run "
                              f"writes it at its first checkpoint)")
    try:
        header = json.loads((folder / config_name).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{folder / config_name} is not valid JSON ({exc})") from None
    if not isinstance(header, dict) or not isinstance(header.get("format"), str):
        raise CheckpointError(f"{folder / config_name} is not a ganforge model config")
    return folder, header


def read_weights(file: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file, with a clear error when it is missing or damaged."""
    if not file.is_file():
        raise CheckpointError(f"weights {file} do not exist")
    try:
        return load_file(str(file))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"weights {file} cannot be read ({exc})") from None


class Artifact:
    """Base of everything saved: a typed ``config`` (dataclass ``Config``), named ``modules``
    whose weights are saved, and a ``metadata`` record.

    Subclasses set ``kind`` (the tag a saved folder is checked against), ``Config`` and
    ``build_modules``; ``version`` rises when the meaning of saved fields changes. A subclass
    that can read an older format lists its tags in ``legacy_formats`` and converts such a
    header in ``upgrade``.
    """

    kind: ClassVar[str]
    version: ClassVar[int] = 1
    Config: ClassVar[type]
    #: older ``format`` tags ``upgrade`` turns into this format (e.g. before artifacts existed)
    legacy_formats: ClassVar[tuple[str, ...]] = ()
    #: file names an older format used instead of config.json / model.safetensors
    legacy_files: ClassVar[tuple[str, str] | None] = None

    def __init__(self, config: Any, modules: dict[str, nn.Module],
                 metadata: dict[str, Any] | None = None):
        self.config = config
        self.modules = nn.ModuleDict(modules)
        self.metadata: dict[str, Any] = dict(metadata or {})

    @classmethod
    def build_modules(cls, config: Any) -> dict[str, nn.Module]:
        """Freshly initialised modules for ``config`` (weights are loaded into them)."""
        raise NotImplementedError(f"{cls.__name__} does not build modules")

    @classmethod
    def create(cls, config: Any, metadata: dict[str, Any] | None = None) -> Self:
        """A new, untrained artifact of this kind."""
        return cls(config, cls.build_modules(config), metadata)

    @property
    def device(self) -> torch.device:
        return next(self.modules.parameters()).device

    def to(self, device: str | torch.device) -> Self:
        """Move the modules to ``device``."""
        self.modules.to(device)
        return self

    def tensors(self) -> dict[str, torch.Tensor]:
        """The weights as saved: ``<module>.<parameter or buffer>`` -> CPU tensor."""
        return {f"{name}.{key}": value.detach().cpu().contiguous()
                for name, module in self.modules.items()
                for key, value in module.state_dict().items()}

    def header(self) -> dict[str, Any]:
        """The JSON saved beside the weights."""
        return {"format": ARTIFACT_FORMAT, "kind": self.kind, "version": self.version,
                "ganforge_version": ganforge.__version__, "config": to_dict(self.config),
                "metadata": self.metadata}

    def save_pretrained(self, path: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into the folder ``path``, atomically
        (a reader sees the old folder or the new one, never half of one); other files already
        there (a model card) are kept."""
        header, tensors = self.header(), self.tensors()
        target = Path(path)

        def fill(tmp: Path) -> None:
            if target.is_dir():  # a model card (README.md) or other notes beside it stay
                for kept in target.iterdir():
                    if kept.is_file() and kept.name not in (CONFIG_NAME, WEIGHTS_NAME):
                        shutil.copy2(kept, tmp / kept.name)
            # one metadata key: safetensors writes several in varying order (same save, other
            # bytes); the kind is in config.json
            save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": ARTIFACT_FORMAT})
            (tmp / CONFIG_NAME).write_text(json.dumps(header, indent=2) + "\n")

        atomic_replace_dir(path, fill)
        return Path(path)

    @classmethod
    def upgrade(cls, header: dict[str, Any], folder: Path) -> dict[str, Any]:
        """An older header (one of ``legacy_formats``) as this format's header."""
        raise CheckpointError(f"{folder} is in format {header.get('format')!r}, which "
                              f"{cls.__name__} cannot read")

    @classmethod
    def locate(cls, path: str | Path) -> tuple[Path, dict[str, Any], Path]:
        """(folder, header in the current format, weights file) of a saved artifact."""
        try:
            folder, header = read_header(path)
            weights = folder / WEIGHTS_NAME
        except CheckpointError:
            if cls.legacy_files is None or not (Path(path) / cls.legacy_files[0]).is_file():
                raise
            folder, header = read_header(path, *cls.legacy_files)
            weights = folder / cls.legacy_files[1]
        if header["format"] in cls.legacy_formats:
            header = cls.upgrade(header, folder)
        elif header["format"] != ARTIFACT_FORMAT:
            raise CheckpointError(f"{folder / CONFIG_NAME} is not a ganforge {cls.kind} "
                                  f"(format {header['format']!r})")
        return folder, header, weights

    @classmethod
    def from_header(cls, header: dict[str, Any], folder: Path) -> Self:
        """An untrained artifact built from a (current-format) header, checked."""
        if header.get("kind") != cls.kind:
            raise CheckpointError(f"{folder} holds a {header.get('kind')!r}, not a {cls.kind!r}")
        if int(header.get("version", 0)) > cls.version:
            raise CheckpointError(f"{folder} was saved as {cls.kind} version "
                                  f"{header.get('version')} by ganforge "
                                  f"{header.get('ganforge_version', '?')}; this ganforge "
                                  f"reads up to version {cls.version}: upgrade ganforge")
        try:
            config = from_dict(cls.Config, dict(header.get("config", {})),
                               where=str(folder / CONFIG_NAME))
        except (ConfigError, TypeError) as exc:
            raise CheckpointError(f"{folder / CONFIG_NAME}: {exc}") from None
        return cls.create(config, header.get("metadata"))

    def load_tensors(self, tensors: dict[str, torch.Tensor], source: Path,
                     saved_by: str = "unknown") -> None:
        """Load ``<module>.<key>`` tensors, naming what is missing, unexpected or misshapen."""
        if len(self.modules) == 1:  # older single-network formats saved keys without prefix
            (name,) = self.modules.keys()
            if not any(k.startswith(f"{name}.") for k in tensors):
                tensors = {f"{name}.{k}": v for k, v in tensors.items()}
        for name, module in self.modules.items():
            prefix = f"{name}."
            state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            problems = state_mismatch(module.state_dict(), state)
            if problems:
                raise CheckpointError(
                    f"weights {source} do not fit network {name!r} of its config ({problems}); "
                    f"was it saved by another ganforge version (it says {saved_by}) or edited?")
            module.load_state_dict(state)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> Self:
        """Load a saved folder (or the model a run folder exported) onto ``device``."""
        folder, header, weights = cls.locate(path)
        artifact = cls.from_header(header, folder)
        artifact.load_tensors(read_weights(weights), weights,
                              str(header.get("ganforge_version", "unknown")))
        artifact.modules.eval()
        return artifact.to(resolve_device(str(device)))

