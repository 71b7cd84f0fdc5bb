"""The audit's report: ``audit.md`` for people, ``audit.json`` for programs, and two figures
(training vs generated shares per attribute value; generated samples per predicted value)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ganforge.core.files import atomic_write, atomic_write_text
from ganforge.errors import MissingDependency

if TYPE_CHECKING:
    from ganforge.audit.compare import Comparison
    from ganforge.audit.run import AuditResult


def require_matplotlib() -> None:
    """MissingDependency naming the pip command when matplotlib cannot be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingDependency("the audit's charts need matplotlib: pip install matplotlib"
                                ) from None


def _figure(width: float, height: float) -> Any:
    """A matplotlib Figure drawn off-screen (no pyplot: the caller's backend is left alone)."""
    require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def _pct(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.1f}%"


def _p(value: float | None) -> str:
    if value is None:
        return "–"
    return "< 1e-300" if value == 0 else f"{value:.3g}"


def share_chart(comparison: Comparison, attribute: str, path: Path) -> None:
    """Horizontal bars: training vs generated (and confusion-corrected) share per value."""
    from matplotlib.ticker import FuncFormatter

    k = len(comparison.classes)
    series = [("training", comparison.reference_share, "#4c72b0"),
              ("generated (classifier labels)", comparison.generated_share, "#dd8452")]
    if comparison.corrected_share is not None:
        series.append(("generated, confusion-corrected", comparison.corrected_share, "#55a868"))
    height = 0.8 / len(series)
    fig = _figure(8, max(2.5, 0.16 * k * len(series) + 1.2))
    ax = fig.subplots()
    y = np.arange(k)
    for n, (label, shares, colour) in enumerate(series):
        ax.barh(y + (n - (len(series) - 1) / 2) * height, shares, height, label=label,
                color=colour)
    ax.set_yticks(y, comparison.classes, fontsize=8 if k > 20 else 10)
    ax.invert_yaxis()
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 * v:.0f}%"))
    ax.set_xlabel("share of images")
    ax.set_title(f"{attribute}: training vs generated (TV distance "
                 f"{comparison.tv_distance:.3f})")
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)


def sample_grid(samples: dict[str, list[torch.Tensor]], classes: Sequence[str],
                path: Path) -> None:
    """One row per predicted value with the generated images labelled so.

    ``samples[value]``: uint8 images [3, H, W] of one size; values without samples are left
    out.
    """
    rows = [c for c in classes if samples.get(c)]
    if not rows:
        return
    columns = max(len(samples[c]) for c in rows)
    _, h, w = samples[rows[0]][0].shape
    fig = _figure(columns * 0.9 + 1.8, len(rows) * 0.9 + 0.3)
    axes = fig.subplots(len(rows), 1, squeeze=False)
    for ax, value in zip(axes[:, 0], rows, strict=True):
        strip = torch.full((3, h, columns * (w + 2)), 200, dtype=torch.uint8)
        for i, image in enumerate(samples[value]):
            strip[:, :, i * (w + 2):i * (w + 2) + w] = image
        ax.imshow(strip.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(value, rotation=0, ha="right", va="center", fontsize=8)
        for spine in ax.spines.values():
            spine.set_visible(False)
    _save(fig, path)


def _dropped(dropped: list[str], recall: dict[str, float | None]) -> str:
    """The dropped values; those the classifier often misses are marked as doubtful."""
    if not dropped:
        return "none"
    doubtful = [v for v in dropped if (recall.get(v) or 0.0) < 0.5]
    text = ", ".join(dropped)
    if doubtful:
        text += (f" (doubtful: the classifier finds fewer than half of the real "
                 f"{', '.join(doubtful)} images)")
    return text


def _share_table(comparison: Comparison, recall: dict[str, float | None]) -> list[str]:
    corrected = comparison.corrected_share
    lines = ["| value | training | generated | generated / training | corrected "
             "| classifier recall |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for i, value in enumerate(comparison.classes):
        ref, gen = comparison.reference_share[i], comparison.generated_share[i]
        ratio = f"{gen / ref:.2f}" if ref else "–"
        mark = " **dropped**" if value in comparison.dropped else ""
        lines.append(f"| {value}{mark} | {_pct(ref)} | {_pct(gen)} | {ratio} | "
                     f"{_pct(corrected[i] if corrected else None)} | "
                     f"{_pct(recall.get(value))} |")
    return lines


def _test_line(comparison: Comparison) -> str:
    test = comparison.chi_square
    if test.p_value is None:
        text = f"chi-square: not computed ({test.bins} testable bin(s))"
    else:
        text = (f"chi-square {test.statistic:.1f} with {test.dof} degree(s) of freedom, "
                f"p = {_p(test.p_value)}")
    notes = []
    if test.pooled:
        notes.append(f"pooled into one bin (expected < 5 each): {', '.join(test.pooled)}")
    if test.excluded:
        notes.append(f"left out (absent from the reference): {', '.join(test.excluded)}")
    return text + (f" ({'; '.join(notes)})" if notes else "")


def write_markdown(result: AuditResult, path: Path, figures: dict[str, str]) -> None:
    """``audit.md``: what was measured, how far the classifier can be trusted, the findings."""
    clf, overall = result.classifier, result.overall
    recall = dict(zip(clf.classes, clf.recall, strict=True))
    corrected = (f" (after undoing the classifier's confusion: "
                 f"{overall.corrected_tv_distance:.3f})" if overall.corrected_tv_distance
                 is not None else f" (the classifier's confusion is not undone: "
                 f"{overall.correction})" if overall.correction else "")
    lines = [
        f"# Attribute audit: {result.attribute}", "",
        f"- model: `{result.model}` ({result.task})",
        f"- training data: `{result.data}` ({sum(overall.reference)} images)",
        f"- generated: {result.num_samples} images, seed {result.seed}; {result.prompts}",
        "", "## How far to trust the labels", "",
        f"A classifier of `{result.attribute}` trained on {clf.train_count} training images "
        f"labels {clf.holdout_count} held-out ones with accuracy {_pct(clf.accuracy)} "
        f"(balanced over values: {_pct(clf.balanced_accuracy)}). On those real images its "
        f"labels alone move the shares by a total variation distance of "
        f"{clf.holdout_tv:.3f}: smaller differences below are within its error. Values with "
        f"a low recall (last column) are ones it often misses.",
        "", "## Training vs generated", "",
        f"- total variation distance: **{overall.tv_distance:.3f}**{corrected}",
        f"- {_test_line(overall)}",
        f"- dropped (training share ≥ {_pct(result.min_share)}, generated < "
        f"{result.drop_ratio:g} × that): {_dropped(overall.dropped, recall)}",
    ]
    if result.source_agreement is not None:
        lines.append(f"- generated images labelled with the value of the training image whose "
                     f"caption prompted them: {_pct(result.source_agreement)} (the "
                     f"classifier's own accuracy, {_pct(clf.accuracy)}, is the ceiling)")
    lines += ["", *_share_table(overall, recall), "", f"![shares]({figures['chart']})"]
    asked = {v: a for v, a in result.agreement_by_value.items() if a is not None}
    if asked:
        lines += ["", "## Generated as asked, per value", "",
                  f"Of the samples prompted by a training image of each `{result.attribute}` "
                  "value, the share the classifier labels with that value (class-conditional "
                  "coverage; the classifier's recall on real images is its ceiling).", "",
                  "| value | generated as asked | classifier recall |", "| --- | ---: | ---: |"]
        lines += [f"| {v} | {_pct(a)} | {_pct(recall.get(v))} |"
                  for v, a in sorted(asked.items(), key=lambda kv: kv[1])]
    if result.groups:
        by = " / ".join(result.group_by) if result.group_by else "prompt"
        lines += ["", f"## Per prompt group ({by})", "",
                  "Each group is compared with " +
                  ("the training images of the same group." if result.group_by else
                   "the whole training set."), "",
                  "| group | samples | TV distance | outside the reference | p "
                  "| generated shares |",
                  "| --- | ---: | ---: | ---: | ---: | --- |"]
        for key, group in result.groups.items():
            n = sum(group.generated)
            top = sorted(zip(group.generated_share, group.classes, strict=True), reverse=True)
            shares = ", ".join(f"{v} {_pct(s)}" for s, v in top if s > 0)
            lines.append(f"| {key} | {n} | {group.tv_distance:.3f} | "
                         f"{_pct(group.unexpected / n if n else None)} | "
                         f"{_p(group.chi_square.p_value)} | {shares} |")
    if "samples" in figures:
        lines += ["", "## Samples per predicted value", "", f"![samples]({figures['samples']})"]
    atomic_write_text(path, "\n".join(lines) + "\n")


def write_json(result: AuditResult, path: Path) -> None:
    """``audit.json``: every figure of the report."""
    atomic_write_text(path, json.dumps(result.as_dict(), indent=2) + "\n")
