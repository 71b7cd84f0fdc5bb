"""How figures are written in reports: numbers, intervals, sample counts, settings."""

from __future__ import annotations

from typing import Any

from ganforge.metrics.results import EvaluationResult, Metric

ARROWS = {"lower": "↓", "higher": "↑"}


def number(value: float | None) -> str:
    """Four significant digits; an em dash for None."""
    return "—" if value is None else f"{value:.4g}"


def interval(metric: Metric) -> str:
    """``[low, high]`` of the 95% interval, or an em dash."""
    return "—" if metric.ci is None else f"[{number(metric.ci[0])}, {number(metric.ci[1])}]"


def samples(metric: Metric) -> str:
    """E.g. ``500 generated, 1000 reference``."""
    return ", ".join(f"{count} {name.replace('_', ' ')}" for name, count in metric.samples.items())


def baseline(metric: Metric) -> str:
    """E.g. ``0.21 (identity map)``, or an em dash."""
    if metric.baseline is None:
        return "—"
    return f"{number(metric.baseline)} ({metric.baseline_label})"


def title(result: EvaluationResult) -> str:
    """The report's title."""
    return f"Evaluation of {result.model}"


def summary(result: EvaluationResult) -> str:
    """One sentence: the task, the model's training steps and what was generated."""
    return (f"{result.task.capitalize()} model trained for {result.trained_steps} steps: "
            f"{result.inputs.get('generated', 0)} generated images measured against "
            f"{result.inputs.get('reference_images', 0)} reference images.")


def neighbour_caption(result: EvaluationResult) -> str:
    """What the nearest-neighbour rows show and how to read their distances."""
    scale = number(result.neighbour_scale)
    return (f"The {len(result.neighbours)} generated samples closest to a reference image in "
            f"feature space, each followed by its nearest reference images and their "
            f"distances. For scale: a reference image's nearest other reference image is at a "
            f"median distance of {scale}; generated samples much closer than that to a "
            f"reference image may be copies of it (memorisation).")


def key_values(values: dict[str, Any]) -> list[tuple[str, str]]:
    """Settings or inputs as (label, text) rows, None values left out."""
    return [(key.replace("_", " "), str(value)) for key, value in values.items()
            if value is not None]


def console_summary(result: EvaluationResult) -> str:
    """Plain-text lines for a terminal: one per figure (value, interval, samples, baseline),
    then the notes."""
    lines = [summary(result)]
    width = max((len(m.name) for m in result.metrics.values()), default=0)
    for metric in result.metrics.values():
        line = f"  {metric.name:<{width}} {ARROWS[metric.better]} {number(metric.value):>9}"
        if metric.ci is not None:
            line += f"  95% CI {interval(metric)}"
        line += f"  ({samples(metric)})"
        if metric.baseline is not None:
            line += f"  baseline {baseline(metric)}"
        lines.append(line)
    return "\n".join(lines + [f"note: {note}" for note in result.notes])
