"""Evaluation reports: a self-contained HTML page, a Markdown summary and ``metrics.json``.

:func:`write_report` writes, into one folder::

    report.html     everything, images embedded as base64 PNG (no external assets)
    report.md       the figures and notes, linking the PNGs below
    metrics.json    the figures with sample counts and intervals, inputs and settings
    samples.png     generated samples (for translations: sources above, targets below)
    neighbours.png  generated samples closest to a real image, each with its nearest real images
    training.png    logged scalars over training steps (only for a run folder)
"""

from __future__ import annotations

import json
from pathlib import Path

from ganforge.core.files import atomic_write, atomic_write_text
from ganforge.metrics.results import EvaluationResult
from ganforge.report.figures import neighbours_grid, png_bytes, samples_grid, training_plot
from ganforge.report.html import render_html
from ganforge.report.markdown import render_markdown
from ganforge.report.text import console_summary

__all__ = ["console_summary", "write_report"]


def write_report(result: EvaluationResult, out: str | Path) -> dict[str, Path]:
    """Write the report files of ``result`` into folder ``out``; returns their paths by kind
    (``html``, ``markdown``, ``json``, ``samples``, ``neighbours``, ``training``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    training = training_plot(result.history)
    pictures = {"samples": samples_grid(result), "neighbours": neighbours_grid(result)}
    encoded = {kind: png_bytes(image) for kind, image in pictures.items() if image is not None}
    if training is not None:
        encoded["training"] = training
    written: dict[str, Path] = {}
    for kind, png in encoded.items():
        written[kind] = out / f"{kind}.png"
        atomic_write(written[kind], lambda tmp, png=png: tmp.write_bytes(png))
    files = {"html": ("report.html", render_html(result, training)),
             "markdown": ("report.md", render_markdown(result, {k: p.name for k, p in
                                                                written.items()})),
             "json": ("metrics.json", json.dumps(result.as_dict(), indent=2) + "\n")}
    for kind, (name, content) in files.items():
        written[kind] = out / name
        atomic_write_text(written[kind], content)
    return written
