"""Comparing the attribute distribution a model generates with the one it was trained on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import nnls
from scipy.stats import chisquare

#: a chi-square bin should expect at least this many samples (Cochran's rule)
MIN_EXPECTED = 5.0
#: the confusion is undone only when every class has this many held-out images and recall
MIN_HELDOUT, MIN_RECALL = 10, 0.5


@dataclass
class ChiSquare:
    """Pearson's goodness-of-fit test of generated counts against the reference shares.

    Classes the reference never shows cannot be tested: they are ``excluded`` (their samples
    are counted in :attr:`Comparison.unexpected`) and the test runs on the rest. Classes
    expecting fewer than 5 samples are ``pooled`` into one bin, together with the next rarest
    until that bin expects at least 5. ``p_value`` is None when fewer than two bins remain.
    """

    statistic: float | None
    p_value: float | None
    dof: int
    bins: int
    pooled: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)


@dataclass
class Comparison:
    """Reference (training) and generated counts per class, and how far apart they are.

    ``generated``: counts of the classifier's labels; ``corrected_share``: the generated
    shares after undoing the classifier's known confusion (None when not computed, and then
    ``correction`` says why);
    ``dropped``: classes the reference shows at ``min_share`` or more that are generated at
    less than ``drop_ratio`` times their reference share.
    """

    classes: list[str]
    reference: list[int]
    generated: list[int]
    tv_distance: float
    chi_square: ChiSquare
    dropped: list[str]
    corrected_share: list[float] | None = None
    corrected_tv_distance: float | None = None
    correction: str = ""

    @property
    def reference_share(self) -> list[float]:
        return _shares(self.reference)

    @property
    def generated_share(self) -> list[float]:
        return _shares(self.generated)

    @property
    def unexpected(self) -> int:
        """Generated samples in classes the reference never shows."""
        return sum(g for r, g in zip(self.reference, self.generated, strict=True) if r == 0)


def _shares(counts: Sequence[float]) -> list[float]:
    total = float(sum(counts))
    return [c / total if total else 0.0 for c in counts]


def tv_distance(p: Sequence[float], q: Sequence[float]) -> float:
    """Total variation distance between two distributions on the same classes: half the L1
    distance, 0 for equal shares, 1 for disjoint support."""
    return 0.5 * float(np.abs(np.asarray(p, float) - np.asarray(q, float)).sum())


def chi_square_test(classes: Sequence[str], reference: Sequence[int],
                    generated: Sequence[int]) -> ChiSquare:
    """Goodness of fit of ``generated`` counts to the shares of ``reference`` counts (see
    :class:`ChiSquare` for how rare and absent classes are handled)."""
    kept = [i for i, r in enumerate(reference) if r > 0]
    excluded = [classes[i] for i, r in enumerate(reference) if r == 0]
    observed = np.array([generated[i] for i in kept], float)
    expected = np.array([reference[i] for i in kept], float)
    expected *= observed.sum() / expected.sum()
    order = [int(i) for i in np.argsort(expected, kind="stable")]  # rarest first
    pooled = [i for i in order if expected[i] < MIN_EXPECTED]
    if pooled:
        while (expected[pooled].sum() < MIN_EXPECTED or len(pooled) < 2) \
                and len(pooled) < len(order):
            pooled.append(order[len(pooled)])
    rest = [i for i in order if i not in pooled]
    obs = np.array([*observed[rest], *([observed[pooled].sum()] if pooled else [])])
    exp = np.array([*expected[rest], *([expected[pooled].sum()] if pooled else [])])
    names = [classes[kept[i]] for i in pooled]
    if len(obs) < 2 or observed.sum() == 0:
        return ChiSquare(None, None, 0, len(obs), names, excluded)
    result = chisquare(obs, exp)
    return ChiSquare(float(result.statistic), float(result.pvalue), len(obs) - 1, len(obs),
                     names, excluded)


def correction_problem(classes: Sequence[str], confusion: Sequence[Sequence[int]]) -> str:
    """Why the confusion cannot be undone reliably ('' when it can): inverting it amplifies
    the noise of rows estimated from few images, and of classes the classifier mostly misses.
    """
    counts = np.asarray(confusion, float)
    rows = counts.sum(1)
    few = [c for c, n in zip(classes, rows, strict=True) if n < MIN_HELDOUT]
    missed = [c for c, n, hit in zip(classes, rows, np.diag(counts), strict=True)
              if n >= MIN_HELDOUT and hit / n < MIN_RECALL]
    problems = []
    if few:
        problems.append(f"fewer than {MIN_HELDOUT} held-out images of {', '.join(few)}")
    if missed:
        problems.append(f"recall below {MIN_RECALL:.0%} for {', '.join(missed)}")
    return "; ".join(problems)


def correct_for_confusion(generated: Sequence[int], confusion: Sequence[Sequence[int]]
                          ) -> list[float]:
    """Generated class shares with the classifier's confusion undone.

    With ``confusion[i][j]`` held-out images of class i labelled j, the labels of images
    whose true shares are p have shares ``M.T @ p`` (M: the row-normalised confusion). This
    solves that for p by non-negative least squares and renormalises: a clipped inversion.
    Classes without held-out images are taken to be labelled right.
    """
    counts = np.asarray(confusion, float)
    rows = counts.sum(1, keepdims=True)
    rates = np.where(rows > 0, counts / np.maximum(rows, 1), np.eye(len(counts)))
    observed = np.asarray(_shares(generated))
    true, _ = nnls(rates.T, observed)
    total = true.sum()
    return (true / total).tolist() if total > 0 else observed.tolist()


def compare(classes: Sequence[str], reference: Sequence[int], generated: Sequence[int],
            confusion: Sequence[Sequence[int]] | None = None, min_share: float = 0.01,
            drop_ratio: float = 0.25) -> Comparison:
    """Compare generated class counts with reference counts (same class order).

    ``confusion``: the classifier's held-out confusion matrix, to add confusion-corrected
    shares where :func:`correction_problem` finds none. ``min_share``/``drop_ratio``: what
    counts as a dropped class (see :class:`Comparison`).
    """
    ref_share, gen_share = _shares(reference), _shares(generated)
    dropped = [c for c, r, g in zip(classes, ref_share, gen_share, strict=True)
               if r >= min_share and g < drop_ratio * r]
    comparison = Comparison(list(classes), list(reference), list(generated),
                            tv_distance(ref_share, gen_share),
                            chi_square_test(classes, reference, generated), dropped)
    if confusion is not None and sum(generated):
        comparison.correction = correction_problem(classes, confusion)
        if not comparison.correction:
            comparison.corrected_share = correct_for_confusion(generated, confusion)
            comparison.corrected_tv_distance = tv_distance(ref_share, comparison.corrected_share)
    return comparison
