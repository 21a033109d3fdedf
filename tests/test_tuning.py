"""Unit tests for helpers.tuning: search spaces, strategies (through Optuna), resuming, seed sweeps, selection bias,
penalties."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from helpers.tuning import (
    Categorical,
    FloatRange,
    IntRange,
    best_so_far,
    comparison_family,
    fraction_near_zero,
    grid_axes,
    grid_points,
    grid_shape,
    l1_penalty,
    l2_penalty,
    make_sampler,
    random_halves,
    run_search,
    selection_bias,
    sensitivity,
    summarize_sensitivity,
)

SPACE = {"x": FloatRange(-2.0, 2.0), "lr": FloatRange(1e-4, 1.0, log=True), "kind": Categorical(("a", "b"))}


def bowl(params):
    """A smooth objective with its maximum 0 at x = 0.5, lr = 1e-2, kind = 'b'."""
    penalty = 0.0 if params["kind"] == "b" else 0.5
    return -((params["x"] - 0.5) ** 2) - (math.log10(params["lr"]) + 2) ** 2 - penalty


# ---------------------------------------------------------------- spaces and grids


def test_float_range_grid():
    assert FloatRange(0, 1).grid(3) == [0.0, 0.5, 1.0]
    assert FloatRange(1e-3, 1e-1, log=True).grid(3) == pytest.approx([1e-3, 1e-2, 1e-1])
    assert FloatRange(1e-3, 1e-1, log=True).grid(1) == pytest.approx([1e-2])
    assert FloatRange(0, 1).grid(2, include_ends=False) == [0.25, 0.75]
    assert FloatRange(1e-4, 1.0, log=True).grid(2, include_ends=False) == pytest.approx([1e-3, 1e-1])
    ends = FloatRange(3e-4, 3e-2, log=True).grid(5)
    assert ends[0] >= 3e-4 and ends[-1] <= 3e-2  # never rounded past an end (Optuna would reject it)


def test_int_range_and_categorical():
    assert IntRange(0, 10).grid(3) == [0, 5, 10]
    assert Categorical(("a", "b", "c")).grid(5) == ["a", "b", "c"]
    assert Categorical(("a", "b", "c")).grid(2) == ["a", "c"]


@pytest.mark.parametrize(
    "bad, error",
    [
        (lambda: FloatRange(1.0, 1.0), ValueError),
        (lambda: FloatRange(0.0, 1.0, log=True), ValueError),
        (lambda: IntRange(1.5, 3), TypeError),
        (lambda: Categorical(()), ValueError),
    ],
)
def test_bad_ranges_raise(bad, error):
    with pytest.raises(error):
        bad()


def test_grid_shape_uses_the_budget_and_keeps_two_points_per_axis():
    three = {"a": FloatRange(0, 1), "b": FloatRange(0, 1), "c": FloatRange(0, 1)}
    assert grid_shape(three, 16) == (4, 2, 2)
    assert grid_shape(three, 9) == (2, 2, 2)
    assert grid_shape(three, 27) == (3, 3, 3)
    assert grid_shape(three, 5) == (5, 1, 1)  # too small for 2 x 2 x 2: the largest product wins
    # a categorical axis is capped at its number of choices
    assert grid_shape({"k": Categorical(("a", "b")), "x": FloatRange(0, 1)}, 10) == (2, 5)
    points = grid_points(SPACE, 12)
    assert len(points) == 12 and len({tuple(p.values()) for p in points}) == 12
    assert {p["kind"] for p in points} == {"a", "b"}
    centred = grid_points({"x": FloatRange(0, 1)}, 4, include_ends=False)
    assert [p["x"] for p in centred] == [0.125, 0.375, 0.625, 0.875]
    axes = grid_axes(SPACE, 12)
    assert list(axes) == ["x", "lr", "kind"] and [len(v) for v in axes.values()] == [3, 2, 2]


def test_space_validation():
    with pytest.raises(ValueError, match="non-empty"):
        grid_points({}, 4)
    with pytest.raises(TypeError, match="space\\['x'\\]"):
        grid_points({"x": (0, 1)}, 4)
    with pytest.raises(ValueError, match="budget"):
        grid_points(SPACE, 0)


# ---------------------------------------------------------------- strategies


def test_best_so_far():
    np.testing.assert_array_equal(best_so_far([1, 3, 2, 5, 4]), [1, 3, 3, 5, 5])
    np.testing.assert_array_equal(best_so_far([4, 5, 2, 3], "minimize"), [4, 4, 2, 2])
    curve = best_so_far([np.nan, 2.0, np.nan, 1.0])
    assert np.isnan(curve[0]) and curve[1:].tolist() == [2.0, 2.0, 2.0]
    with pytest.raises(ValueError, match="direction"):
        best_so_far([1.0], "max")


@pytest.mark.parametrize("strategy", ["grid", "random", "optuna"])
def test_each_strategy_spends_the_budget_and_reports_the_best(strategy):
    calls = []

    def objective(params):
        calls.append(params)
        return bowl(params)

    result = run_search(strategy, objective, SPACE, 12, seed=0)
    assert result.strategy == strategy
    assert len(result.trials) == len(calls) == 12
    assert [t.params for t in result.trials] == calls  # run order
    assert result.best.value == max(bowl(p) for p in calls)
    curve = result.best_so_far()
    assert np.all(np.diff(curve) >= 0) and curve[-1] == result.best.value
    frame = result.to_frame()
    assert list(frame.columns) == ["number", "x", "lr", "kind", "value", "best_so_far", "seconds"]
    for trial in result.trials:
        assert -2 <= trial.params["x"] <= 2 and 1e-4 <= trial.params["lr"] <= 1 and trial.params["kind"] in "ab"


def test_every_strategy_is_an_optuna_sampler():
    optuna = pytest.importorskip("optuna")
    expected = {
        "grid": optuna.samplers.GridSampler,
        "random": optuna.samplers.RandomSampler,
        "optuna": optuna.samplers.TPESampler,
    }
    for strategy, kind in expected.items():
        assert isinstance(make_sampler(strategy, SPACE, 8), kind)
        assert isinstance(run_search(strategy, bowl, SPACE, 2).study.sampler, kind)
    with pytest.raises(ValueError, match="strategy"):
        make_sampler("bayes", SPACE, 8)


@pytest.mark.parametrize("strategy", ["random", "optuna"])
def test_seeded_strategies_are_reproducible(strategy):
    first = run_search(strategy, bowl, SPACE, 8, seed=3)
    again = run_search(strategy, bowl, SPACE, 8, seed=3)
    other = run_search(strategy, bowl, SPACE, 8, seed=4)
    assert [t.params for t in first.trials] == [t.params for t in again.trials]
    assert [t.params for t in first.trials] != [t.params for t in other.trials]


def _key(params):
    return str(sorted(params.items()))


def test_grid_visits_the_whole_grid_in_a_seeded_order():
    first = run_search("grid", bowl, SPACE, 8, seed=1)
    again = run_search("grid", bowl, SPACE, 8, seed=1)
    other = run_search("grid", bowl, SPACE, 8, seed=2)
    assert sorted(_key(t.params) for t in first.trials) == sorted(_key(p) for p in grid_points(SPACE, 8))
    assert [t.params for t in first.trials] == [t.params for t in again.trials]
    assert [t.params for t in first.trials] != [t.params for t in other.trials]
    centred = run_search("grid", lambda p: -p["x"], {"x": FloatRange(0, 1)}, 4, include_ends=False)
    assert sorted(t.params["x"] for t in centred.trials) == [0.125, 0.375, 0.625, 0.875]
    # a budget that no full grid fills: the grid uses fewer evaluations (9 -> 2 x 2 x 2)
    assert len(run_search("grid", bowl, SPACE, 9).trials) == 8


def test_optuna_beats_random_on_a_smooth_objective():
    """TPE should exploit a smooth bowl: averaged over seeds it ends closer to the optimum than random."""
    space = {"x": FloatRange(-2.0, 2.0), "lr": FloatRange(1e-4, 1.0, log=True)}

    def smooth(params):
        return -((params["x"] - 0.5) ** 2) - (math.log10(params["lr"]) + 2) ** 2

    tpe = np.mean([run_search("optuna", smooth, space, 30, seed=s).best.value for s in range(4)])
    rand = np.mean([run_search("random", smooth, space, 30, seed=s).best.value for s in range(4)])
    assert tpe > rand


def test_minimize_and_bad_objective():
    result = run_search("random", lambda p: (p["x"] - 1) ** 2, {"x": FloatRange(-3, 3)}, 10, direction="minimize")
    assert result.best.value == min(result.values)
    with pytest.raises(TypeError, match="must return a number"):
        run_search("random", lambda p: "bad", {"x": FloatRange(-3, 3)}, 2)
    with pytest.raises(ValueError, match="strategy"):
        run_search("bayes", bowl, SPACE, 3)
    with pytest.raises(ValueError, match="seed"):
        run_search("random", bowl, SPACE, 3, seed=-1)
    with pytest.raises(ValueError, match="direction"):
        run_search("random", bowl, SPACE, 3, direction="max")


# ---------------------------------------------------------------- storage: resuming a study


class Interrupted(KeyboardInterrupt):
    """What Ctrl-C (or a notebook's stop button) raises in the middle of a trial."""


def _interrupt_after(n, objective=bowl):
    calls = []

    def run(params):
        if len(calls) == n:
            raise Interrupted
        calls.append(params)
        return objective(params)

    return run, calls


@pytest.mark.parametrize("strategy", ["grid", "random", "optuna"])
def test_a_sqlite_study_resumes_after_an_interrupt(strategy, tmp_path):
    pytest.importorskip("sqlalchemy")
    url = f"sqlite:///{tmp_path / 'search.db'}"
    interrupted, before = _interrupt_after(5)
    with pytest.raises(Interrupted):
        run_search(strategy, interrupted, SPACE, 12, seed=0, storage=url, study_name="s")
    resumed, after = _interrupt_after(100)
    result = run_search(strategy, resumed, SPACE, 12, seed=0, storage=url, study_name="s")
    assert len(before) == 5 and len(after) == 7  # only the missing evaluations ran
    assert len(result.trials) == 12
    assert [t.params for t in result.trials[:5]] == before  # the finished trials were kept
    assert [t.params for t in result.trials[5:]] == after
    keys = [_key(t.params) for t in result.trials]
    assert len(set(keys)) == 12  # the resumed sampler does not replay the draws already made
    if strategy == "grid":  # the trial cut off by the interrupt is evaluated again: the grid is complete
        assert sorted(keys) == sorted(_key(p) for p in grid_points(SPACE, 12))
    # a finished study runs nothing more
    again, calls = _interrupt_after(100)
    assert len(run_search(strategy, again, SPACE, 12, seed=0, storage=url, study_name="s").trials) == 12
    assert calls == []
    # and a larger budget extends it
    assert len(run_search("random", bowl, SPACE, 14, storage=url, study_name="r").trials) == 14


def test_a_grid_resumes_after_a_killed_process(tmp_path):
    """A process killed mid-trial leaves it 'running' in the storage; resuming still completes the grid."""
    optuna = pytest.importorskip("optuna")
    url = f"sqlite:///{tmp_path / 'search.db'}"
    interrupted, before = _interrupt_after(3)
    with pytest.raises(Interrupted):
        run_search("grid", interrupted, SPACE, 8, storage=url, study_name="g")
    study = optuna.load_study(storage=url, study_name="g", sampler=make_sampler("grid", SPACE, 8))
    killed = study.ask()  # started by a process that was then killed: never told
    for name, param in SPACE.items():
        param.suggest(killed, name)
    resumed, after = _interrupt_after(100)
    result = run_search("grid", resumed, SPACE, 8, storage=url, study_name="g")
    assert sorted(_key(t.params) for t in result.trials) == sorted(_key(p) for p in grid_points(SPACE, 8))
    assert len(before) + len(after) == 8


def test_a_stored_study_refuses_a_different_search(tmp_path):
    pytest.importorskip("sqlalchemy")
    url = f"sqlite:///{tmp_path / 'search.db'}"
    run_search("random", bowl, SPACE, 3, storage=url, study_name="s")
    with pytest.raises(ValueError, match="created as"):
        run_search("random", bowl, {"x": FloatRange(-1.0, 1.0)}, 3, storage=url, study_name="s")
    with pytest.raises(ValueError, match="created as"):
        run_search("optuna", bowl, SPACE, 3, storage=url, study_name="s")
    with pytest.raises(ValueError, match="created as"):
        run_search("random", bowl, SPACE, 3, storage=url, study_name="s", direction="minimize")


def test_a_failing_objective_fails_its_trial_and_leaves_the_study_usable(tmp_path):
    pytest.importorskip("sqlalchemy")
    url = f"sqlite:///{tmp_path / 'search.db'}"
    calls = []

    def flaky(params):
        calls.append(params)
        if len(calls) == 2:
            raise RuntimeError("out of memory")
        return bowl(params)

    with pytest.raises(RuntimeError, match="out of memory"):
        run_search("random", flaky, SPACE, 4, storage=url, study_name="s")
    result = run_search("random", flaky, SPACE, 4, storage=url, study_name="s")
    assert len(result.trials) == 4 and len(calls) == 5
    states = [t.state.name for t in result.study.trials]
    assert states.count("FAIL") == 1 and states.count("COMPLETE") == 4


# ---------------------------------------------------------------- sweeps and selection bias


def test_sensitivity_and_summary():
    frame = sensitivity(lambda v, s: {"val": v + 0.1 * s, "test": v}, [1.0, 2.0], [0, 1, 2])
    assert len(frame) == 6 and set(frame.columns) == {"value", "seed", "val", "test"}
    summary = summarize_sensitivity(frame, "val")
    assert summary.index.tolist() == [1.0, 2.0]
    assert summary.loc[1.0, "mean"] == pytest.approx(1.1)
    assert summary.loc[1.0, "std"] == pytest.approx(0.1)  # sample std of 1.0, 1.1, 1.2
    assert summary.loc[2.0, "n"] == 3
    scalar = sensitivity(lambda v, s: v * s, [1, 2], [1])
    assert scalar["score"].tolist() == [1.0, 2.0]
    assert math.isnan(summarize_sensitivity(scalar).loc[1, "std"])
    with pytest.raises(ValueError, match="no column"):
        summarize_sensitivity(frame, "score")
    with pytest.raises(ValueError, match="non-empty"):
        sensitivity(lambda v, s: 0.0, [], [0])


def test_selection_bias_by_hand():
    select = [[0.9, 0.7], [0.5, 0.8]]
    report = [[0.8, 0.75], [0.6, 0.6]]
    bias = selection_bias(select, report)
    assert bias["chosen"].tolist() == [0, 1]
    assert bias["bias"].tolist() == pytest.approx([0.1, 0.2])
    low = selection_bias(select, report, direction="minimize")
    assert low["chosen"].tolist() == [1, 0] and low["bias"].tolist() == pytest.approx([0.05, 0.1])
    with pytest.raises(ValueError, match="shape"):
        selection_bias([[1.0]], [[1.0, 2.0]])


def test_selection_bias_is_positive_for_pure_noise():
    """K identical configurations with noisy scores: choosing on one set overstates by E[max of K]."""
    rng = np.random.default_rng(0)
    select, report = rng.normal(size=(4000, 10)), rng.normal(size=(4000, 10))
    bias = selection_bias(select, report)["bias"]
    assert bias.mean() == pytest.approx(1.5388, abs=0.05)  # E[max of 10 standard normals]


def test_comparison_family_drops_self_comparisons_and_repeats():
    pairs = {
        "focal": (("focal", 2.0), ("ce", None)),
        "kept": (("ce", None), ("ce", None)),  # validation kept the value: the same run twice
        "la": (("la", 1.0), ("ce", None)),
        "la again": (("la", 1.0), ("ce", None)),  # the same comparison under another name
        "reversed": (("ce", None), ("la", 1.0)),  # the same test, sign flipped
        "int": (("la", 1), ("ce", None)),  # 1 == 1.0: the same setting
    }
    reps = comparison_family(pairs)
    assert list(reps) == list(pairs)
    assert reps == {
        "focal": ("focal", 1),
        "kept": None,
        "la": ("la", 1),
        "la again": ("la", 1),
        "reversed": ("la", -1),
        "int": ("la", 1),
    }
    assert [n for n, r in reps.items() if r is not None and r[0] == n] == ["focal", "la"]
    assert comparison_family({}) == {}
    with pytest.raises(ValueError, match="pairs"):
        comparison_family({"x": ("a",)})
    with pytest.raises(ValueError, match="pairs"):
        comparison_family({"x": ["a", "b"]})


def test_comparison_family_reversed_pair_has_the_same_p_value():
    # Why a reversed pair is a repeat: the paired t-test of b - a has the p-value of a - b.
    from helpers.stats import paired_p_value

    a, b = np.array([0.91, 0.88, 0.93, 0.90]), np.array([0.89, 0.88, 0.90, 0.86])
    assert paired_p_value(a, b) == pytest.approx(paired_p_value(b, a))


def test_comparison_family_rejects_keys_that_cannot_name_a_run():
    nan = float("nan")
    for pairs in ({"x": (nan, nan)}, {"x": (("la", nan), ("la", nan))}, {"x": (("la", nan), "ce")}):
        with pytest.raises(ValueError, match="NaN"):
            comparison_family(pairs)
    with pytest.raises(ValueError, match="unhashable"):
        comparison_family({"x": (["la"], "ce")})


def test_random_halves():
    splits = random_halves(11, 3, seed=0)
    assert len(splits) == 3
    for first, second in splits:
        assert len(first) == 5 and len(second) == 6
        assert sorted(torch.cat([first, second]).tolist()) == list(range(11))
    assert not torch.equal(splits[0][0], splits[1][0])
    assert all(torch.equal(a[0], b[0]) for a, b in zip(splits, random_halves(11, 3, seed=0), strict=True))
    with pytest.raises(ValueError, match="n must"):
        random_halves(1, 3, seed=0)


# ---------------------------------------------------------------- penalties


def test_penalties_match_their_formulas_and_the_sgd_convention():
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    params = list(model.parameters())
    flat = torch.cat([p.detach().flatten() for p in params])
    assert l2_penalty(params).item() == pytest.approx(flat.pow(2).sum().item(), rel=1e-6)
    assert l1_penalty(params).item() == pytest.approx(flat.abs().sum().item(), rel=1e-6)
    # gradient of (lam / 2) * ||w||^2 is lam * w: SGD's weight_decay=lam
    lam = 0.3
    (lam / 2 * l2_penalty(params)).backward()
    for p in params:
        torch.testing.assert_close(p.grad, lam * p.detach())
    assert l2_penalty(torch.ones(2, 2, dtype=torch.float64)).dtype == torch.float64


def test_penalty_and_sparsity_validation():
    with pytest.raises(ValueError, match="at least one"):
        l2_penalty([])
    with pytest.raises(TypeError, match="floating-point"):
        l1_penalty([torch.ones(3, dtype=torch.int64)])
    assert fraction_near_zero(torch.tensor([0.0, 1e-4, -0.5, 2.0])) == 0.5
    assert fraction_near_zero(torch.tensor([0.0, 1e-4, -0.5, 2.0]), atol=0.0) == 0.25
    with pytest.raises(ValueError, match="atol"):
        fraction_near_zero(torch.ones(3), atol=-1.0)
    with pytest.raises(TypeError):
        fraction_near_zero(np.ones(3))
