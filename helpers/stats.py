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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _scipy_stats

__all__ = ["PairedDifference", "paired_difference", "verdict", "indistinguishable_from_best", "QUICK_VERDICT"]

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
    """Methods whose paired difference to the best mean cannot be told apart from zero.

    ``scores`` maps a method to its values over the same pairs (same seeds, same order). The best
    method by mean is always in the set; another joins it unless its paired interval against the
    best lies wholly on the worse side of zero. A one-element result is a clear winner.
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
