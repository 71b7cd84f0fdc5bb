"""Pictures of an evaluation: PNG encoding, image grids and training curves (matplotlib, Agg).

Only :class:`matplotlib.figure.Figure` is used, never ``pyplot``: no global backend state, no
display needed.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import torch
from matplotlib.figure import Figure
from PIL import Image

from ganforge.data.images import image_grid, uint8_to_float
from ganforge.metrics.results import EvaluationResult

PLOT_GROUPS = {"loss": "loss", "lr": "learning rate"}
"""Scalar name prefixes (before '/') plotted together, with their axis titles; any other scalar
(e.g. ``img_per_s``) gets a plot of its own."""


def to_image(image: torch.Tensor) -> Image.Image:
    """uint8 ``[3, H, W]`` -> PIL RGB image."""
    return Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())


def png_bytes(image: Image.Image) -> bytes:
    """A PIL image encoded as PNG."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    """PNG bytes as a ``data:`` URI for an ``<img src>``."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _grid(rows: Sequence[Sequence[torch.Tensor]]) -> Image.Image:
    """Rows of uint8 ``[3, S, S]`` images (the same count per row) as one PIL grid."""
    return image_grid([uint8_to_float(torch.stack(list(row))) for row in rows])


def samples_grid(result: EvaluationResult) -> Image.Image | None:
    """The generated samples as a grid: one row of generated images, with the source row above
    and the target row below for translations; None without samples."""
    if not result.samples:
        return None
    rows = []
    if all(s.source is not None for s in result.samples):
        rows.append([s.source for s in result.samples])
    rows.append([s.image for s in result.samples])
    if all(s.target is not None for s in result.samples):
        rows.append([s.target for s in result.samples])
    return _grid(rows)  # type: ignore[arg-type]


def neighbours_grid(result: EvaluationResult) -> Image.Image | None:
    """One row per generated sample: the sample, then its nearest real images; None without
    rows."""
    if not result.neighbours:
        return None
    return _grid([[row.sample.image, *(n.image for n in row.neighbours)]
                  for row in result.neighbours])


def training_plot(history: dict[str, list[tuple[int, float]]]) -> bytes | None:
    """PNG of the logged scalars over training steps, one panel per group of
    :data:`PLOT_GROUPS` and per other scalar; None without history."""
    panels: dict[str, list[str]] = {title: [] for title in PLOT_GROUPS.values()}
    for name in sorted(history):
        panels.setdefault(PLOT_GROUPS.get(name.split("/", 1)[0], name), []).append(name)
    panels = {title: names for title, names in panels.items() if names}
    if not panels:
        return None
    figure = Figure(figsize=(6.5, 2.4 * len(panels)), layout="constrained")
    axes = figure.subplots(len(panels), 1, squeeze=False, sharex=True)[:, 0]
    for ax, (title, names) in zip(axes, panels.items(), strict=True):
        for name in names:
            steps, values = zip(*history[name], strict=True)
            ax.plot(steps, values, label=name.split("/", 1)[-1],
                    marker="o" if len(steps) < 20 else None, markersize=3)
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
        if len(names) > 1:
            ax.legend(fontsize="small", ncols=min(len(names), 3))
    axes[-1].set_xlabel("step")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
