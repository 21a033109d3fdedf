"""Paired comparisons with confidence intervals, and verdicts computed from them.

The book names an outcome ("improves", "hurts", "ties") only when the numbers on the page support
it. Runs that share a training seed and a data seed are *paired*: method A and method B saw the
same drawn subset and the same initialisation, so the noise they share cancels in the difference.
For pairs :math:`(a_i, b_i)`, :math:`i = 1..n`, with differences :math:`d_i = a_i - b_i`,

.. math::

    \\bar d = \\frac{1}{n}\\sum_i d_i, \\qquad
    s = \\sqrt{\\frac{1}{n-1}\\sum_i (d_i - \\bar d)^2}, \\qquad
    \\bar d \\pm t_{1-\\alpha/2,\\,n-1}\\, \\frac{s}{\\sqrt n},

the Student *t*-interval over pairs (:func:`paired_difference`). :func:`verdict` turns an interval
into words: it says "improves" or "hurts" only when the whole interval lies on one side of zero,
and "cannot be told apart" otherwise. In quick mode (too few images to conclude anything) it says so
instead of stating an outcome.

What the intervals cover: the pairs are (training seed, data seed) runs scored on one *fixed* test
set, so an interval covers the variation over seeds and drawn subsets, conditional on that test set;
it leaves out the sampling variance of the test images themselves.

Several comparisons on one page: :func:`paired_p_value` gives the two-sided paired t-test's p-value
and :func:`holm_adjust` Holm's step-down adjustment, which keeps the chance of *any* false verdict
among ``m`` comparisons at most :math:`\\alpha`.

A bounded score with a collapsed run (a run at chance level) makes a symmetric t-interval leave the
feasible range; :func:`paired_bootstrap` (percentile interval of the mean over resampled pairs) stays
inside the range of the observed differences, and :func:`median_and_failures` gives the median
difference with the number of collapsed pairs. Neither names a direction: :func:`sign_test_p` gives
the exact two-sided sign test over the pairs, which needs no assumption on the size of a collapse
(with 5 pairs its smallest p-value, all 5 on one side, is 0.0625).

The set of methods that may be the best (:func:`possibly_best`) follows Hsu's multiple comparisons
with the best (MCB): method :math:`i` stays unless some other method :math:`j` beats it by more than
its one-sided bound, :math:`\\bar x_i - \\bar x_j + c\\, s_{ij}/\\sqrt n < 0`, with
:math:`c = t_{1-\\alpha/(k-1),\\,n-1}` (a Bonferroni bound over the :math:`k-1` paired comparisons
of the true best, so the true best is kept with probability at least :math:`1-\\alpha` whatever the
correlation between methods). The set is then closed upward in the means (every method whose mean
is at least that of a kept method is kept), which makes it monotone and can only raise the coverage.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _scipy_stats

__all__ = [
    "PairedDifference", "QUICK_VERDICT", "holm_adjust", "indistinguishable_from_best", "median_and_failures",
    "paired_bootstrap", "paired_difference", "paired_p_value", "possibly_best", "sign_test_p", "verdict",
]  # fmt: skip

QUICK_VERDICT = "cannot be judged in quick mode (too few images and epochs to conclude)"


@dataclass(frozen=True)
class PairedDifference:
    """Mean of ``a - b`` over ``n`` pairs with a two-sided ``level`` confidence interval."""

    mean: float
    low: float
    high: float
    n: int
    level: float

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies strictly on one side of zero."""
        return self.low > 0 or self.high < 0

    def format(self, scale: float = 1.0, digits: int = 1, unit: str = "") -> str:
        """``'+1.2 [+0.4, +2.0]'`` (values multiplied by ``scale``, e.g. 100 for percentage points)."""
        f = f"{{:+.{digits}f}}"
        return f"{f.format(self.mean * scale)}{unit} [{f.format(self.low * scale)}, {f.format(self.high * scale)}]"


def _as_vector(x: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (one value per pair), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr.tolist()}")
    return arr


def paired_difference(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                      level: float = 0.95) -> PairedDifference:
    """Student-t interval for the mean of ``a[i] - b[i]`` over paired runs.

    Args:
        a, b: one value per pair (e.g. per (training seed, data seed)), same length ``n >= 2``.
        level: confidence level in (0, 1).

    Returns:
        A :class:`PairedDifference`. With ``n`` pairs the interval uses ``n - 1`` degrees of freedom;
        when every difference is identical the interval collapses to that value.
    """
    av, bv = _as_vector(a, "a"), _as_vector(b, "b")
    if av.shape != bv.shape:
        raise ValueError(f"a and b must pair up: got {av.shape[0]} and {bv.shape[0]} values")
    if av.shape[0] < 2:
        raise ValueError(f"a paired interval needs at least 2 pairs, got {av.shape[0]}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    d = av - bv
    n = d.shape[0]
    mean = float(d.mean())
    half = float(_scipy_stats.t.ppf(0.5 + level / 2, n - 1) * d.std(ddof=1) / math.sqrt(n))
    return PairedDifference(mean, mean - half, mean + half, n, level)


def verdict(diff: PairedDifference, *, quick: bool = False, higher_is_better: bool = True,
            positive: str = "improves", negative: str = "hurts",
            neither: str = "cannot be told apart from") -> str:
    """Words for a paired difference: ``positive`` / ``negative`` only when the interval excludes 0.

    ``higher_is_better=False`` flips the reading (for losses, errors, times). In quick mode the
    answer is :data:`QUICK_VERDICT`, whatever the numbers.
    """
    if quick:
        return QUICK_VERDICT
    if not diff.excludes_zero:
        return neither
    good = (diff.low > 0) == higher_is_better
    return positive if good else negative


def indistinguishable_from_best(scores: dict[str, Sequence[float]], level: float = 0.95,
                                higher_is_better: bool = True) -> list[str]:
    """Methods whose paired difference to the best mean cannot be told apart from zero (one test each).

    ``scores`` maps a method to its values over the same pairs (same seeds, same order). The best
    method by mean is always in the set; another joins it unless its paired interval against the
    best lies wholly on the worse side of zero. Each method is tested on its own, with no
    simultaneous guarantee, so the set need not be monotone in the means: use :func:`possibly_best`
    for "the methods that may be the best".
    """
    if not scores:
        raise ValueError("scores must name at least one method")
    sign = 1.0 if higher_is_better else -1.0
    means = {k: sign * float(np.mean(_as_vector(v, k))) for k, v in scores.items()}
    best = max(means, key=means.__getitem__)
    tied = [best]
    for name, values in scores.items():
        if name == best:
            continue
        diff = paired_difference(values, scores[best], level)
        worse = diff.high < 0 if higher_is_better else diff.low > 0
        if not worse:
            tied.append(name)
    return tied


def paired_p_value(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Two-sided p-value of the paired t-test of ``mean(a - b) = 0`` (1.0 when every difference is 0)."""
    av, bv = _as_vector(a, "a"), _as_vector(b, "b")
    if av.shape != bv.shape or av.shape[0] < 2:
        raise ValueError(f"a and b must pair up with at least 2 pairs, got {av.shape[0]} and {bv.shape[0]} values")
    d = av - bv
    sd = d.std(ddof=1)
    if sd == 0:
        return 1.0 if d.mean() == 0 else 0.0
    t = d.mean() / (sd / math.sqrt(d.shape[0]))
    return float(2 * _scipy_stats.t.sf(abs(t), d.shape[0] - 1))


def holm_adjust(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input order.

    With ``m`` p-values sorted :math:`p_{(1)} \\le \\dots \\le p_{(m)}`, the adjusted value of the
    ``k``-th is :math:`\\max_{j \\le k} \\min(1, (m - j + 1)\\, p_{(j)})`. Rejecting where the adjusted
    value is below :math:`\\alpha` keeps the family-wise error rate at most :math:`\\alpha`.
    NaN p-values (comparisons that could not be made) stay NaN and do not count in ``m``.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p_values must be one-dimensional, got shape {p.shape}")
    out = np.full_like(p, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    if np.any((p[idx] < 0) | (p[idx] > 1)):
        raise ValueError(f"p_values must lie in [0, 1], got {p.tolist()}")
    order = idx[np.argsort(p[idx], kind="stable")]
    m, running = len(order), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def paired_bootstrap(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, level: float = 0.95,
                     n_boot: int = 10_000, seed: int = 0) -> PairedDifference:
    """Percentile bootstrap interval for the mean of ``a[i] - b[i]``, resampling whole pairs.

    The interval lies within the range of the observed differences, so it never leaves the feasible
    range of a bounded score (unlike a t-interval with a collapsed pair). With few pairs it is
    narrower than it should be (it cannot see beyond the observed pairs): read it with the failure
    count of :func:`median_and_failures`.
    """
    av, bv = _as_vector(a, "a"), _as_vector(b, "b")
    if av.shape != bv.shape or av.shape[0] < 2:
        raise ValueError(f"a and b must pair up with at least 2 pairs, got {av.shape[0]} and {bv.shape[0]} values")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    d = av - bv
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.shape[0], size=(n_boot, d.shape[0]))].mean(1)
    low, high = np.quantile(means, [0.5 - level / 2, 0.5 + level / 2])
    return PairedDifference(float(d.mean()), float(low), float(high), int(d.shape[0]), level)


def median_and_failures(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                        failed: Sequence[bool] | np.ndarray) -> tuple[float, int, int]:
    """``(median of a[i] - b[i], number of failed pairs, number of pairs)``.

    ``failed`` flags the pairs where a run failed (e.g. collapsed to chance level).
    """
    av, bv = _as_vector(a, "a"), _as_vector(b, "b")
    flags = np.asarray(failed, dtype=bool)
    if av.shape != bv.shape or flags.shape != av.shape:
        raise ValueError(f"a, b and failed must have one value per pair, got {av.shape}, {bv.shape}, {flags.shape}")
    return float(np.median(av - bv)), int(flags.sum()), int(av.shape[0])


def sign_test_p(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> tuple[float, int, int]:
    """Exact two-sided sign test of ``median(a - b) = 0``: ``(p, positives, nonzero)``.

    With ``m`` nonzero differences of which ``k`` are positive,
    :math:`p = \\min(1, 2 \\sum_{j \\le \\min(k, m-k)} \\binom{m}{j} 2^{-m})`; zero differences are dropped
    (``p = 1`` when none is left).
    """
    av, bv = _as_vector(a, "a"), _as_vector(b, "b")
    if av.shape != bv.shape:
        raise ValueError(f"a and b must pair up, got {av.shape[0]} and {bv.shape[0]} values")
    d = av - bv
    k, m = int((d > 0).sum()), int((d != 0).sum())
    tail = sum(math.comb(m, j) for j in range(min(k, m - k) + 1)) / 2**m
    return min(1.0, 2 * tail), k, m


def possibly_best(scores: dict[str, Sequence[float]], level: float = 0.95,
                  higher_is_better: bool = True) -> list[str]:
    """The methods that may be the best: Hsu's MCB over paired scores, closed upward in the means.

    Args:
        scores: method -> one value per pair (same pairs, same order for every method), ``n >= 2``.
        level: the probability (at least) that the true best method is in the set.
        higher_is_better: False for losses and errors.

    Returns:
        The kept methods, best mean first. Method ``i`` is kept when, for every other ``j``,
        ``mean_i - mean_j + c * sd(x_i - x_j) / sqrt(n) >= 0`` with ``c = t_{1 - (1-level)/(k-1), n-1}``;
        then every method with a mean at least that of a kept one is added. The set is monotone in the
        means, and keeps the true best with probability at least ``level`` (normal pair differences).
    """
    if not scores:
        raise ValueError("scores must name at least one method")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    sign = 1.0 if higher_is_better else -1.0
    values = {k: sign * _as_vector(v, k) for k, v in scores.items()}
    sizes = {v.shape[0] for v in values.values()}
    if len(sizes) != 1:
        raise ValueError(f"every method needs the same pairs, got sizes {sorted(sizes)}")
    n, k = sizes.pop(), len(values)
    order = sorted(values, key=lambda m: -values[m].mean())
    if k == 1:
        return order
    if n < 2:
        return order  # one pair separates nothing
    c = float(_scipy_stats.t.ppf(1 - (1 - level) / (k - 1), n - 1))
    kept = []
    for i in order:
        bounds = [values[i].mean() - values[j].mean() + c * (values[i] - values[j]).std(ddof=1) / math.sqrt(n)
                  for j in order if j != i]  # fmt: skip
        if min(bounds) >= 0:
            kept.append(i)
    lowest = min(values[m].mean() for m in kept)  # the best mean is always kept: its bounds are all >= 0
    return [m for m in order if values[m].mean() >= lowest]
