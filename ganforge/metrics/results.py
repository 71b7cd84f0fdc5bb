"""What an evaluation found: figures with their sample counts and intervals, and the images a
report shows. Written by :mod:`ganforge.metrics.evaluate`, rendered by :mod:`ganforge.report`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class Metric:
    """One figure of an evaluation.

    ``samples``: how many samples of each set it was computed from, e.g. ``{"generated": 500,
    "reference": 1000}``; ``ci``: 95% confidence interval, None where none applies;
    ``resampled``: what the bootstrap behind ``ci`` resampled; ``better``: "lower" or
    "higher"; ``baseline`` / ``baseline_label``: a figure to read it against (the identity map
    of a translation, chance level, FID of real against real); ``note``: anything else a
    reader must know to trust it.
    """

    name: str
    value: float
    better: str
    samples: dict[str, int]
    ci: tuple[float, float] | None = None
    resampled: str = ""
    baseline: float | None = None
    baseline_label: str = ""
    note: str = ""


@dataclass(frozen=True)
class Sample:
    """A generated image for the report's grid: ``image`` uint8 ``[3, S, S]``; ``label``: its
    prompt or source file; ``source`` / ``target``: the translated image and its true
    translation (uint8 ``[3, S, S]``), when there are such."""

    image: torch.Tensor
    label: str
    source: torch.Tensor | None = None
    target: torch.Tensor | None = None


@dataclass(frozen=True)
class Neighbour:
    """A real image near a generated one: ``image`` uint8 ``[3, S, S]``, its ``file`` and
    ``distance`` in feature space."""

    image: torch.Tensor
    file: str
    distance: float


@dataclass(frozen=True)
class NeighbourRow:
    """A generated sample and its nearest real images, nearest first."""

    sample: Sample
    neighbours: list[Neighbour]


@dataclass
class EvaluationResult:
    """Everything an evaluation measured, ready to be written as a report.

    ``metrics``: figures by key (``fid``, ``kid``, ``precision``, ``recall``, ``l1``, ``psnr``,
    ``ssim``, ``r_precision``, ``fid_noise_floor``); ``inputs``: where the generated and real
    images came from; ``settings``: how it was measured (device, batch size, feature network,
    cache, seed, k, resamples); ``notes``: metrics left out and caveats; ``samples``: generated
    images for a grid; ``neighbours``: generated samples nearest to a real image, with those
    images; ``neighbour_scale``: median distance from a real image to its nearest other real
    image, for reading ``neighbours``' distances; ``history``: the run's logged scalars,
    ``{name: [(step, value), ...]}`` (empty when the model is not a run folder).
    """

    model: str
    task: str
    trained_steps: int
    metrics: dict[str, Metric]
    inputs: dict[str, Any]
    settings: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    neighbours: list[NeighbourRow] = field(default_factory=list)
    neighbour_scale: float | None = None
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures and settings (images left out, neighbours as file + distance)."""
        return {
            "model": self.model, "task": self.task, "trained_steps": self.trained_steps,
            "metrics": {key: asdict(metric) for key, metric in self.metrics.items()},
            "inputs": self.inputs, "settings": self.settings, "notes": self.notes,
            "nearest_neighbours": {
                "median_real_to_real_distance": self.neighbour_scale,
                "rows": [{"sample": row.sample.label,
                          "neighbours": [{"file": n.file, "distance": n.distance}
                                         for n in row.neighbours]}
                         for row in self.neighbours]},
        }
