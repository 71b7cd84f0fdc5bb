"""The evaluation report as one self-contained HTML file: every image is embedded as a base64
PNG, the style sheet is inline, nothing is fetched from elsewhere."""

from __future__ import annotations

from html import escape

import torch

from ganforge.metrics.results import EvaluationResult, Sample
from ganforge.report import text
from ganforge.report.figures import data_uri, png_bytes, to_image

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; word-break: break-all; } h2 { margin-top: 2em; font-size: 1.2em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.7em; text-align: left;
         vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.muted { color: #666; font-size: 0.9em; }
.samples { display: flex; flex-wrap: wrap; gap: 0.8em; }
figure { margin: 0; } figcaption { font-size: 0.8em; color: #444; max-width: 20em; }
img.px { image-rendering: pixelated; border: 1px solid #ccc; }
"""


def _img(image: torch.Tensor, alt: str) -> str:
    """An ``<img>`` of uint8 ``[3, S, S]``, shown at least 96 px wide (pixelated when scaled)."""
    width = min(max(image.shape[-1], 96), 160)
    return (f'<img class="px" width="{width}" height="{width}" alt="{escape(alt)}" '
            f'src="{data_uri(png_bytes(to_image(image)))}">')


def _sample(sample: Sample) -> str:
    parts = [_img(image, alt) for image, alt in ((sample.source, "source"),
                                                 (sample.image, "generated"),
                                                 (sample.target, "target")) if image is not None]
    return f"<figure>{' '.join(parts)}<figcaption>{escape(sample.label)}</figcaption></figure>"


def _metrics_table(result: EvaluationResult) -> str:
    rows = []
    for metric in result.metrics.values():
        note = f'<br><span class="muted">{escape(metric.note)}</span>' if metric.note else ""
        rows.append(
            f"<tr><td>{escape(metric.name)} {text.ARROWS[metric.better]}{note}</td>"
            f'<td class="num"><b>{text.number(metric.value)}</b></td>'
            f'<td class="num">{text.interval(metric)}</td>'
            f"<td>{escape(text.samples(metric))}</td><td>{escape(text.baseline(metric))}</td>"
            f'<td class="muted">{escape(metric.resampled) or "—"}</td></tr>')
    return ("<table><tr><th>metric</th><th>value</th><th>95% CI</th><th>samples</th>"
            "<th>baseline</th><th>CI resampled</th></tr>" + "".join(rows) + "</table>")


def _key_value_table(values: dict[str, object]) -> str:
    return "<table>" + "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>"
                               for k, v in text.key_values(values)) + "</table>"


def render_html(result: EvaluationResult, training_png: bytes | None) -> str:
    """The whole report page; ``training_png``: the training-curve plot, if any."""
    parts = [f"<h1>{escape(text.title(result))}</h1>",
             f"<p>{escape(text.summary(result))} ↓ lower is better, ↑ higher is better; "
             "intervals are 95% bootstrap intervals.</p>",
             "<h2>Figures</h2>", _metrics_table(result)]
    if result.notes:
        parts += ["<h2>Notes</h2><ul>",
                  *(f"<li>{escape(note)}</li>" for note in result.notes), "</ul>"]
    if result.samples:
        parts += ["<h2>Generated samples</h2>",
                  '<p class="muted">The first generated images (for translations: source, '
                  'translation and, with paired data, target).</p>',
                  '<div class="samples">', *(_sample(s) for s in result.samples), "</div>"]
    if result.neighbours:
        parts += ["<h2>Nearest real images</h2>",
                  f'<p class="muted">{escape(text.neighbour_caption(result))}</p><table>']
        for row in result.neighbours:
            cells = [f"<td>{_img(row.sample.image, 'generated')}<br>"
                     f'<span class="muted">{escape(row.sample.label)}</span></td>']
            cells += [f"<td>{_img(n.image, n.file)}<br>distance {text.number(n.distance)}<br>"
                      f'<span class="muted">{escape(n.file)}</span></td>' for n in row.neighbours]
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</table>")
    if training_png is not None:
        parts += ["<h2>Training</h2>",
                  f'<img alt="training curves" src="{data_uri(training_png)}">']
    parts += ["<h2>Inputs</h2>", _key_value_table(result.inputs),
              "<h2>Settings</h2>", _key_value_table(result.settings)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(text.title(result))}</title><style>{STYLE}</style></head>\n"
            "<body>\n" + "\n".join(parts) + "\n</body></html>\n")
