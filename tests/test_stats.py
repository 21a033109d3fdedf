"""helpers.stats: paired t-intervals and the verdicts computed from them."""

import math

import numpy as np
import pytest

from helpers.stats import QUICK_VERDICT, indistinguishable_from_best, paired_difference, verdict


def test_interval_matches_the_textbook_formula():
    a = [0.91, 0.93, 0.90, 0.94]
    b = [0.88, 0.90, 0.89, 0.90]
    d = np.subtract(a, b)
    half = 3.182446305284263 * d.std(ddof=1) / math.sqrt(4)  # t_{0.975, 3}
    got = paired_difference(a, b)
    assert got.mean == pytest.approx(d.mean())
    assert got.low == pytest.approx(d.mean() - half)
    assert got.high == pytest.approx(d.mean() + half)
    assert got.n == 4 and got.excludes_zero


def test_pairing_removes_shared_noise():
    # seed effects of +-5 points shared by both methods; a constant +1 point gap
    seed_effect = np.array([5.0, -5.0, 3.0, -3.0, 0.0])
    diff = paired_difference(seed_effect + 1.0, seed_effect)
    assert diff.low == pytest.approx(1.0) and diff.high == pytest.approx(1.0)


def test_verdict_reads_the_interval():
    up = paired_difference([2.0, 3.0, 2.5], [1.0, 1.0, 1.0])
    down = paired_difference([0.0, 0.1, 0.2], [1.0, 1.0, 1.0])
    tie = paired_difference([1.0, 0.0, 2.0], [1.0, 1.0, 1.0])
    assert verdict(up) == "improves"
    assert verdict(down) == "hurts"
    assert verdict(tie) == "cannot be told apart from"
    assert verdict(up, higher_is_better=False) == "hurts"
    assert verdict(up, quick=True) == QUICK_VERDICT


def test_format():
    diff = paired_difference([0.02, 0.03, 0.025], [0.0, 0.0, 0.0])
    assert diff.format(scale=100, digits=1).startswith("+2.5 [")


def test_indistinguishable_from_best():
    scores = {"ce": [0.80, 0.81, 0.79], "a": [0.90, 0.91, 0.92], "b": [0.91, 0.90, 0.91]}
    assert sorted(indistinguishable_from_best(scores)) == ["a", "b"]
    assert indistinguishable_from_best({"x": [1.0, 2.0]}) == ["x"]


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [([1.0], [1.0], "at least 2"), ([1.0, 2.0], [1.0], "pair up"), ([[1.0, 2.0]], [[1.0, 2.0]], "one-dimensional"),
     ([1.0, float("nan")], [1.0, 1.0], "finite")],
)
def test_rejects_bad_input(a, b, match):
    with pytest.raises(ValueError, match=match):
        paired_difference(a, b)
