"""Exercise 4.1's checker accepts every exact formula of the counts, whatever float rounding does at a tail."""

import math

from helpers.exercises import check


def test_counts_through_exp_and_log_pass():
    # equal to n_max * rho ** (-i / (C - 1)) in exact arithmetic; in floats 2000 / 100 gives 19.999...
    answer = lambda n, c, r: [int(n * math.exp(-i / (c - 1) * math.log(r))) for i in range(c)]  # noqa: E731
    assert answer(2000, 10, 100.0)[-1] == 19
    assert check("ch4-counts", answer, quiet=True).passed


def test_counts_reference_passes_and_mistakes_fail():
    assert check("ch4-counts", lambda n, c, r: [int(n * r ** (-i / (c - 1))) for i in range(c)], quiet=True).passed
    rounded = check("ch4-counts", lambda n, c, r: [round(n * r ** (-i / (c - 1))) for i in range(c)], quiet=True)
    assert not rounded.passed and "truncate" in rounded.message
    off_by_one = check("ch4-counts", lambda n, c, r: [int(n * r ** (-i / (c - 1))) - 1 for i in range(c)], quiet=True)
    assert not off_by_one.passed
    floats = check("ch4-counts", lambda n, c, r: [n * r ** (-i / (c - 1)) for i in range(c)], quiet=True)
    assert not floats.passed


def test_ceil_minus_one_fails_at_the_head_class():
    # ceil(x) - 1 equals the floor except where x is an integer: class 0 (exactly n_max) and a few tails
    answer = lambda n, c, r: [math.ceil(n * r ** (-i / (c - 1))) - 1 for i in range(c)]  # noqa: E731
    assert not check("ch4-counts", answer, quiet=True).passed
