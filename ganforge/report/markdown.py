"""The evaluation summary as Markdown, with links to the PNGs written beside it."""

from __future__ import annotations

from ganforge.metrics.results import EvaluationResult
from ganforge.report import text


def _cell(value: str) -> str:
    """Text safe inside a Markdown table cell."""
    return value.replace("|", "\\|").replace("\n", " ")


def render_markdown(result: EvaluationResult, images: dict[str, str]) -> str:
    """``report.md``; ``images``: file names of the pictures written beside it, by kind
    (``samples``, ``neighbours``, ``training``)."""
    lines = [f"# {text.title(result)}", "", text.summary(result), "",
             "| metric | value | 95% CI | samples | baseline | CI resampled |",
             "|---|--:|--:|---|---|---|"]
    for metric in result.metrics.values():
        name = f"{metric.name} {text.ARROWS[metric.better]}"
        lines.append("| " + " | ".join(_cell(v) for v in (
            name, f"**{text.number(metric.value)}**", text.interval(metric),
            text.samples(metric), text.baseline(metric), metric.resampled or "—")) + " |")
    lines += ["", "↓ lower is better, ↑ higher is better; intervals are 95% bootstrap "
              "intervals. The HTML report (`report.html`) has the images and all details."]
    notes = [f"{m.name}: {m.note}" for m in result.metrics.values() if m.note] + result.notes
    if notes:
        lines += ["", "## Notes", "", *(f"- {note}" for note in notes)]
    if "samples" in images:
        lines += ["", "## Generated samples", "", f"![generated samples]({images['samples']})"]
    if "neighbours" in images:
        lines += ["", "## Nearest real images", "", text.neighbour_caption(result), "",
                  f"![nearest real images]({images['neighbours']})", ""]
        lines += [f"- {row.sample.label}: " + ", ".join(
            f"{text.number(n.distance)} ({n.file})" for n in row.neighbours)
            for row in result.neighbours]
    if "training" in images:
        lines += ["", "## Training", "", f"![training curves]({images['training']})"]
    lines += ["", "## Inputs and settings", ""]
    lines += [f"- {key}: {value}" for key, value in
              text.key_values({**result.inputs, **result.settings})]
    return "\n".join(lines) + "\n"
