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


# ------------------------------------------------------------------ the possibly-best set (Hsu's MCB)
def simulated_pairs(rng, means, n, pair_sd=2.0, noise_sd=1.0):
    """Scores of methods over ``n`` pairs: a shared pair effect (data seed) plus each run's own noise."""
    shared = rng.normal(0, pair_sd, n)
    return {f"m{i}": mu + shared + rng.normal(0, noise_sd, n) for i, mu in enumerate(means)}


def test_possibly_best_is_monotone_in_the_means():
    from helpers.stats import possibly_best

    rng = np.random.default_rng(0)
    for _trial in range(300):
        k, n = int(rng.integers(3, 9)), int(rng.integers(3, 8))
        # unequal noise per method, so per-method tests (the old set) are not monotone
        means = rng.normal(0, 1, k)
        scores = {f"m{i}": means[i] + rng.normal(0, rng.uniform(0.1, 2.0), n) for i in range(k)}
        kept = possibly_best(scores)
        lowest = min(np.mean(scores[m]) for m in kept)
        assert kept == [m for m in sorted(scores, key=lambda m: -np.mean(scores[m])) if np.mean(scores[m]) >= lowest]
        low = possibly_best({m: -np.asarray(v) for m, v in scores.items()}, higher_is_better=False)
        assert low == kept  # flipping the sign and the direction changes nothing


def test_old_per_method_set_was_not_monotone_on_the_reviewed_case():
    """F3: the executed exp-10 validation scores; CE had the lowest mean yet was 'tied with the best'."""
    from helpers.stats import possibly_best

    base = np.array([93.0, 94.0, 93.0])
    scores = {
        "ldam_drw": base + np.array([2.0, 3.5, 2.8]),
        "crt": base + np.array([0.5, 1.3, 1.0]),
        "ce": base + np.array([0.7, 0.3, 0.0]),
    }
    old = indistinguishable_from_best(scores)
    assert "ce" in old and "crt" not in old  # lower mean kept, higher mean dropped
    new = possibly_best(scores)
    means = {m: np.mean(v) for m, v in scores.items()}
    assert all(means[m] <= min(means[x] for x in new) or m in new for m in scores)


@pytest.mark.parametrize("n", [3, 5])
def test_possibly_best_keeps_the_true_best_at_its_nominal_rate(n):
    from helpers.stats import possibly_best

    rng = np.random.default_rng(1)
    trials, kept = 2000, 0
    means = [1.0, 0.8, 0.8, 0.5, 0.0, 0.0]  # m0 is the true best, close to two others
    for _ in range(trials):
        kept += "m0" in possibly_best(simulated_pairs(rng, means, n), level=0.9)
    rate = kept / trials
    assert rate >= 0.9 - 3 * math.sqrt(0.9 * 0.1 / trials), rate  # nominal 90%, minus Monte-Carlo error


def test_possibly_best_separates_a_clear_winner_at_five_pairs():
    from helpers.stats import possibly_best

    rng = np.random.default_rng(2)
    assert possibly_best(simulated_pairs(rng, [10.0, 0.0, 0.0, -1.0], 5, noise_sd=0.5)) == ["m0"]


def test_holm_matches_the_step_down_rule():
    from helpers.stats import holm_adjust

    p = [0.01, 0.04, 0.03, 0.005, math.nan]
    adj = holm_adjust(p)
    assert adj[3] == pytest.approx(0.02) and adj[0] == pytest.approx(0.03)
    assert adj[2] == pytest.approx(0.06) and adj[1] == pytest.approx(0.06) and math.isnan(adj[4])
    with pytest.raises(ValueError, match="p_values"):
        holm_adjust([1.5])


def test_paired_p_value_matches_scipy():
    from scipy import stats

    from helpers.stats import paired_p_value

    a, b = [0.91, 0.93, 0.90, 0.94], [0.88, 0.90, 0.89, 0.92]
    assert paired_p_value(a, b) == pytest.approx(stats.ttest_rel(a, b).pvalue)


def test_bootstrap_stays_in_the_feasible_range_when_a_run_collapses():
    from helpers.stats import median_and_failures, paired_bootstrap

    ce = np.array([0.95, 0.96, 0.95])
    collapsed = np.array([0.96, 0.97, 0.10])  # one pair at chance level
    t = paired_difference(collapsed, ce)
    assert t.low < -1.0  # the t-interval leaves [-1, 1], the range of a difference of accuracies
    boot = paired_bootstrap(collapsed, ce)
    assert -1.0 <= boot.low <= boot.mean <= boot.high <= 1.0
    assert boot.low >= (collapsed - ce).min() - 1e-12 and boot.high <= (collapsed - ce).max() + 1e-12
    median, failures, n = median_and_failures(collapsed, ce, collapsed < 0.2)
    assert median == pytest.approx(0.01) and (failures, n) == (1, 3)


def test_sign_test_p_is_exact_binomial():
    from scipy.stats import binomtest

    from helpers.stats import sign_test_p

    assert sign_test_p([1, 2, 3, 4, 5], [0] * 5) == (0.0625, 5, 5)  # 5 of 5: never below 0.05
    assert sign_test_p([0.1, 0.2, 0.0], [0.0, 0.0, 0.0])[1:] == (2, 2)  # the tie is dropped
    assert sign_test_p([0.0], [0.0])[0] == 1.0
    for k in range(8):
        d = [1.0] * k + [-1.0] * (7 - k)
        assert abs(sign_test_p(d, [0.0] * 7)[0] - binomtest(k, 7).pvalue) < 1e-12
