"""Choosing hyperparameters honestly: search strategies, seed sweeps, selection bias, penalties.

A *search* spends a fixed budget of objective evaluations (training runs) on a
:data:`SearchSpace`, a mapping from a parameter name to one of :class:`FloatRange`,
:class:`IntRange` or :class:`Categorical`. :func:`run_search` runs three strategies behind
Optuna's one study interface (Akiba et al., 2019), so they compare at an equal budget:

* ``"grid"``: :class:`optuna.samplers.GridSampler` over the largest full grid with at most
  ``budget`` points (:func:`grid_shape`, :func:`grid_axes`), visited in a seeded random order;
* ``"random"``: :class:`optuna.samplers.RandomSampler`, ``budget`` independent seeded draws;
* ``"optuna"``: :class:`optuna.samplers.TPESampler` (Tree-structured Parzen Estimator), seeded.

What this module adds to Optuna is only what Optuna lacks: one declared search space that every
strategy reads (Optuna's own interface is define-by-run, which cannot size a grid), the largest grid
within a budget, a budget counted in *finished* evaluations so that an interrupted search resumes
(:func:`run_search` with ``storage``), and :class:`SearchResult`, whose :func:`best_so_far` curve
``b_t = max_{i <= t} s_i`` (``min`` when minimizing) compares strategies run by run.

Storage: ``storage=None`` keeps the study in memory. An SQLAlchemy URL such as
``"sqlite:///tuning.db"`` writes each finished trial to disk as it completes; calling
:func:`run_search` again with the same URL and ``study_name`` loads the study and runs only the
evaluations still missing. A database server that several machines reach (for example
``"postgresql://user@host/db"``) lets several processes work on one study at once, which is
Optuna's own distributed mode: each process runs :func:`run_search` with the same storage and study
name (and, for ``"random"`` and ``"optuna"``, its own ``seed``), and stops when the study holds
``budget`` finished trials.

:func:`sensitivity` repeats a one-knob experiment over several seeds and summarises it as
mean and (sample, ``ddof=1``) standard deviation per knob value. :func:`selection_bias` measures
the optimism of reporting the score of the configuration that was chosen on the very same data.
:func:`comparison_family` keeps, of several named paired comparisons, the ones a multiple-testing
correction should count: between two different runs, and not a repeat (a reversed pair included).

Finally, :func:`l2_penalty` and :func:`l1_penalty` are the regularization terms one adds to a
loss, and :func:`fraction_near_zero` measures the sparsity an L1 term induces.

Nothing here keeps global state: every random choice comes from an explicit ``seed``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

Direction = Literal["maximize", "minimize"]
Objective = Callable[[dict[str, Any]], float]

__all__ = [
    "Categorical",
    "FloatRange",
    "IntRange",
    "SearchResult",
    "SearchSpace",
    "Trial",
    "STRATEGIES",
    "best_so_far",
    "comparison_family",
    "fraction_near_zero",
    "grid_axes",
    "grid_points",
    "grid_shape",
    "l1_penalty",
    "l2_penalty",
    "make_sampler",
    "random_halves",
    "run_search",
    "selection_bias",
    "sensitivity",
    "summarize_sensitivity",
]

#: The search strategies of :func:`run_search`, by name.
STRATEGIES = ("grid", "random", "optuna")


# --------------------------------------------------------------------------------------------
# Search spaces
# --------------------------------------------------------------------------------------------


def _check_direction(direction: str) -> Direction:
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction must be 'maximize' or 'minimize', got {direction!r}")
    return direction  # type: ignore[return-value]


def _check_seed(seed: int, name: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{name} must be a non-negative int, got {seed!r}")
    return int(seed)


def _check_budget(budget: int) -> int:
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ValueError(f"budget must be a positive int (number of objective evaluations), got {budget!r}")
    return int(budget)


@dataclass(frozen=True)
class FloatRange:
    """A real parameter in ``[low, high]``, uniform or (``log=True``) log-uniform.

    ``grid(n)`` returns ``n`` evenly spaced points including both ends (geometric spacing when
    ``log``); ``grid(n, include_ends=False)`` returns the centres of ``n`` equal cells instead, which
    keeps a coarse grid away from the edges of the range. ``suggest`` asks an Optuna trial for a
    value (``trial.suggest_float``), which is how every strategy of :func:`run_search` draws it.
    """

    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or not self.low < self.high:
            raise ValueError(f"FloatRange needs finite low < high, got low={self.low!r}, high={self.high!r}")
        if self.log and self.low <= 0:
            raise ValueError(f"FloatRange with log=True needs low > 0, got low={self.low!r}")

    def grid(self, n: int, include_ends: bool = True) -> list[float]:
        lo, hi = (math.log(self.low), math.log(self.high)) if self.log else (self.low, self.high)
        if n == 1 or not include_ends:
            points = lo + (np.arange(n) + 0.5) * (hi - lo) / n
        else:
            points = np.linspace(lo, hi, n)
        values = [float(math.exp(p)) if self.log else float(p) for p in points]
        return [min(max(v, self.low), self.high) for v in values]  # exp(log(x)) may round past an end

    def suggest(self, trial: Any, name: str) -> float:
        return float(trial.suggest_float(name, self.low, self.high, log=self.log))

    @property
    def size(self) -> float:
        return math.inf

    def describe(self) -> str:
        return f"FloatRange({self.low!r}, {self.high!r}, log={self.log})"


@dataclass(frozen=True)
class IntRange:
    """An integer parameter in ``[low, high]`` (both included), uniform or log-uniform."""

    low: int
    high: int
    log: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.low, (int, np.integer)) or not isinstance(self.high, (int, np.integer)):
            raise TypeError(f"IntRange needs int bounds, got low={self.low!r}, high={self.high!r}")
        if not self.low < self.high:
            raise ValueError(f"IntRange needs low < high, got low={self.low}, high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"IntRange with log=True needs low > 0, got low={self.low}")

    def grid(self, n: int, include_ends: bool = True) -> list[int]:
        points = FloatRange(float(self.low), float(self.high), self.log).grid(n, include_ends)
        return sorted({int(round(p)) for p in points})

    def suggest(self, trial: Any, name: str) -> int:
        return int(trial.suggest_int(name, int(self.low), int(self.high), log=self.log))

    @property
    def size(self) -> float:
        return float(self.high - self.low + 1)

    def describe(self) -> str:
        return f"IntRange({int(self.low)}, {int(self.high)}, log={self.log})"


@dataclass(frozen=True)
class Categorical:
    """A parameter taking one of ``choices`` (numbers, strings, booleans or None)."""

    choices: tuple[Any, ...]

    def __post_init__(self) -> None:
        if len(self.choices) == 0:
            raise ValueError("Categorical needs at least one choice")
        object.__setattr__(self, "choices", tuple(self.choices))

    def grid(self, n: int, include_ends: bool = True) -> list[Any]:
        if n >= len(self.choices):
            return list(self.choices)
        index = np.linspace(0, len(self.choices) - 1, n).round().astype(int)
        return [self.choices[i] for i in sorted(set(index.tolist()))]

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.choices))

    @property
    def size(self) -> float:
        return float(len(self.choices))

    def describe(self) -> str:
        return f"Categorical({self.choices!r})"


Param = FloatRange | IntRange | Categorical
SearchSpace = Mapping[str, Param]


def _check_space(space: SearchSpace) -> dict[str, Param]:
    if not isinstance(space, Mapping) or not space:
        raise ValueError("space must be a non-empty mapping from parameter name to FloatRange/IntRange/Categorical")
    for name, param in space.items():
        if not isinstance(name, str):
            raise TypeError(f"space keys must be parameter names (str), got {name!r}")
        if not isinstance(param, (FloatRange, IntRange, Categorical)):
            raise TypeError(
                f"space[{name!r}] must be a FloatRange, IntRange or Categorical, got {type(param).__name__}"
            )
    return dict(space)


def grid_shape(space: SearchSpace, budget: int) -> tuple[int, ...]:
    """Points per dimension of the largest full grid over ``space`` with at most ``budget`` points.

    Each dimension gets at least two points when the budget allows (a one-point axis would fix the
    parameter at the middle of its range); among those shapes, the largest product ``<= budget`` wins
    (each dimension capped by its number of distinct values), then the most balanced one, earlier
    dimensions first on ties. Example: three real parameters and a budget of 16 give ``(4, 2, 2)``;
    a budget of 9 gives ``(2, 2, 2)``, leaving one evaluation unused.
    """
    space = _check_space(space)
    budget = _check_budget(budget)
    caps = [int(min(p.size, budget)) for p in space.values()]

    def shapes(prefix: tuple[int, ...], room: int):
        if len(prefix) == len(caps):
            yield prefix
            return
        for n in range(1, min(caps[len(prefix)], room) + 1):
            yield from shapes((*prefix, n), room // n)

    def key(shape: tuple[int, ...]) -> tuple:
        return (min(min(shape), 2), math.prod(shape), -(max(shape) - min(shape)), shape)

    return max(shapes((), budget), key=key)


def grid_axes(space: SearchSpace, budget: int, include_ends: bool = True) -> dict[str, list[Any]]:
    """The values of each parameter on the grid of :func:`grid_shape` (what ``GridSampler`` takes).

    ``include_ends=False`` puts the points of each numeric axis at the centres of equal cells
    (see :class:`FloatRange`) instead of on both ends of the range.
    """
    space = _check_space(space)
    shape = grid_shape(space, budget)
    return {name: param.grid(n, include_ends) for (name, param), n in zip(space.items(), shape, strict=True)}


def grid_points(space: SearchSpace, budget: int, include_ends: bool = True) -> list[dict[str, Any]]:
    """The full grid of :func:`grid_axes` as a list of parameter dicts (row-major order)."""
    axes = grid_axes(space, budget, include_ends)
    return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]


# --------------------------------------------------------------------------------------------
# Search results and strategies
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    """One finished evaluation: its rank in run order (from 0), parameters, score and wall time (s)."""

    number: int
    params: dict[str, Any]
    value: float
    seconds: float


@dataclass
class SearchResult:
    """The finished trials of one search, in the order they ran.

    Attributes:
        strategy: ``"grid"``, ``"random"`` or ``"optuna"``.
        direction: ``"maximize"`` or ``"minimize"``.
        trials: the finished evaluations, in order (a resumed study includes the earlier ones).
        study: the :class:`optuna.study.Study` behind it (for Optuna's own plots and analyses).
    """

    strategy: str
    direction: Direction
    trials: list[Trial] = field(default_factory=list)
    study: Any = field(default=None, repr=False, compare=False)

    @property
    def values(self) -> np.ndarray:
        """Scores in run order, shape ``(n_trials,)``."""
        return np.array([t.value for t in self.trials], dtype=float)

    @property
    def best(self) -> Trial:
        """The best trial (the first one on ties)."""
        if not self.trials:
            raise ValueError("the search has no trials")
        values = self.values
        index = int(np.nanargmax(values) if self.direction == "maximize" else np.nanargmin(values))
        return self.trials[index]

    def best_so_far(self) -> np.ndarray:
        """:func:`best_so_far` of :attr:`values`."""
        return best_so_far(self.values, self.direction)

    def to_frame(self) -> pd.DataFrame:
        """One row per trial: ``number``, the parameters, ``value``, ``best_so_far``, ``seconds``."""
        rows = [{"number": t.number, **t.params, "value": t.value, "seconds": t.seconds} for t in self.trials]
        frame = pd.DataFrame(rows)
        if len(frame):
            frame.insert(len(frame.columns) - 1, "best_so_far", self.best_so_far())
        return frame


def best_so_far(values: Sequence[float] | np.ndarray, direction: Direction = "maximize") -> np.ndarray:
    """Running best of a sequence of scores: ``b_t = max_{i <= t} s_i`` (``min`` when minimizing).

    NaN scores (failed runs) never become the best; the curve is NaN until the first finite score.
    """
    _check_direction(direction)
    s = np.asarray(values, dtype=float)
    if s.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {s.shape}")
    fill = -np.inf if direction == "maximize" else np.inf
    running = (np.maximum if direction == "maximize" else np.minimum).accumulate(np.where(np.isnan(s), fill, s))
    return np.where(running == fill, np.nan, running)


def _no_progress(items):
    return items


def make_sampler(
    strategy: str,
    space: SearchSpace,
    budget: int,
    *,
    seed: int = 0,
    include_ends: bool = True,
    n_startup_trials: int | None = None,
) -> Any:
    """The Optuna sampler behind a strategy name.

    Args:
        strategy: ``"grid"`` (``GridSampler`` over :func:`grid_axes`, its order shuffled with
            ``seed``), ``"random"`` (``RandomSampler``) or ``"optuna"`` (``TPESampler``).
        space, budget: the search space and the number of evaluations (the grid's size).
        seed: the sampler's seed.
        include_ends: grid points on the ends of each numeric range (True) or at cell centres.
        n_startup_trials: TPE's random trials before it starts modelling the scores (default
            ``min(10, max(2, budget // 3))``: with a small budget, Optuna's default of 10 random
            start-up trials would leave TPE almost nothing to do).

    Raises:
        ValueError: on an unknown strategy, a bad budget or seed.
        ImportError: if Optuna is not installed (``pip install optuna``).
    """
    import optuna

    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {list(STRATEGIES)}, got {strategy!r}")
    space = _check_space(space)
    budget = _check_budget(budget)
    seed = _check_seed(seed)
    if strategy == "grid":
        return optuna.samplers.GridSampler(grid_axes(space, budget, include_ends), seed=seed)
    if strategy == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    startup = min(10, max(2, budget // 3)) if n_startup_trials is None else int(n_startup_trials)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)


def _params_key(params: Mapping[str, Any]) -> str:
    return repr(sorted(params.items()))


def _space_signature(strategy: str, space: dict[str, Param], direction: str, include_ends: bool) -> str:
    parts = [f"{name}={param.describe()}" for name, param in space.items()]
    grid = f", include_ends={include_ends}" if strategy == "grid" else ""
    return f"{strategy} {direction}{grid}: " + ", ".join(parts)


def run_search(
    strategy: str,
    objective: Objective,
    space: SearchSpace,
    budget: int,
    *,
    seed: int = 0,
    direction: Direction = "maximize",
    storage: str | None = None,
    study_name: str | None = None,
    include_ends: bool = True,
    n_startup_trials: int | None = None,
    progress: Callable | None = None,
) -> SearchResult:
    """Spend ``budget`` evaluations of ``objective`` on ``space`` with one strategy, through Optuna.

    Args:
        strategy: ``"grid"``, ``"random"`` or ``"optuna"`` (see :func:`make_sampler`). The grid
            may use fewer evaluations than ``budget`` (see :func:`grid_shape`).
        objective: maps a parameter dict to a score.
        space: the :data:`SearchSpace`.
        budget: the number of *finished* evaluations the study should hold when this returns.
        seed: the sampler's seed. A resumed study reseeds random and TPE samplers from ``seed`` and
            the number of trials already stored, so they do not repeat the draws already made; the
            grid is coordinated through the storage and needs the same ``seed`` to resume.
        direction: whether larger (``"maximize"``) or smaller scores are better.
        storage: ``None`` (in memory) or an SQLAlchemy URL (``"sqlite:///tuning.db"``, a
            PostgreSQL or MySQL server for several machines); each finished trial is written as it
            completes, and a later call with the same ``storage`` and ``study_name`` resumes.
        study_name: the study's name in ``storage`` (default: the strategy's name).
        include_ends: grid points on the ends of each numeric range (True) or at cell centres.
        n_startup_trials: TPE's random start-up trials (see :func:`make_sampler`).
        progress: optional progress-bar factory called as ``progress(total=n)`` (e.g.
            ``helpers.runtime.progress``), updated after each trial.

    Returns:
        A :class:`SearchResult` with every finished trial of the study, in run order.

    Raises:
        ValueError: on a bad strategy, budget, seed or direction, or when ``storage`` already holds
            a study of that name created for another strategy, direction or search space.

    The loop is Optuna's own ``study.optimize``. An objective that raises (an error, or an
    interrupt such as Ctrl-C) marks its trial failed in the study, where it does not count towards
    the budget, and the exception propagates. A trial cut off by a killed process stays "running" in
    the storage and does not count either. On resuming, random search and TPE draw new points in
    place of the lost ones, and the grid evaluates again every point whose run failed or was cut off.
    """
    import optuna

    _check_direction(direction)
    space = _check_space(space)
    budget = _check_budget(budget)
    seed = _check_seed(seed)
    sampler_kwargs: dict[str, Any] = {"include_ends": include_ends, "n_startup_trials": n_startup_trials}
    signature = _space_signature(strategy, space, direction, include_ends)
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=study_name or (strategy if storage is not None else None),
            direction=direction,
            sampler=make_sampler(strategy, space, budget, seed=seed, **sampler_kwargs),
            load_if_exists=storage is not None,
        )
        stored = study.user_attrs.get("lossbook_search")
        if stored is None:
            study.set_user_attr("lossbook_search", signature)
        elif stored != signature:
            raise ValueError(
                f"study {study.study_name!r} in {storage} was created as [{stored}], not [{signature}]; "
                "use another study_name (or storage) for a different search"
            )
        complete = (optuna.trial.TrialState.COMPLETE,)
        started = len(study.trials)
        if started and strategy != "grid":  # a resumed study: do not replay the draws already made
            reseed = int(np.random.SeedSequence([seed, started]).generate_state(1)[0])
            study.sampler = make_sampler(strategy, space, budget, seed=reseed, **sampler_kwargs)
        target = math.prod(grid_shape(space, budget)) if strategy == "grid" else budget
        finished = {_params_key(t.params) for t in study.get_trials(deepcopy=False, states=complete)}
        if strategy == "grid":  # a resumed grid retries the points whose run failed or was interrupted
            failed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
            waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
            queued = finished | {_params_key(t.params) for t in waiting}
            retry = {_params_key(t.params): t.params for t in failed if len(t.params) == len(space)}
            for key, params in retry.items():
                if key not in queued:
                    study.enqueue_trial(params)

        def evaluate(trial: Any) -> float:
            params = {name: param.suggest(trial, name) for name, param in space.items()}
            raw = objective(dict(params))
            try:
                return float(raw)
            except (TypeError, ValueError):
                raise TypeError(f"the objective must return a number, got {type(raw).__name__} for {params}") from None

        remaining = max(0, target - len(finished))
        bar = progress(total=remaining) if progress is not None and remaining else None

        def after(study: Any, trial: Any) -> None:
            if bar is not None:
                bar.update(1)
            if len(study.get_trials(deepcopy=False, states=complete)) >= target:
                study.stop()  # this worker, or the others, finished the study

        try:
            if remaining:
                study.optimize(evaluate, n_trials=remaining, callbacks=[after])
        finally:
            if bar is not None:
                bar.close()
    finally:
        optuna.logging.set_verbosity(previous)
    done = sorted(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)), key=lambda t: t.number)
    trials = [
        Trial(
            number=i,
            params=dict(t.params),
            value=float(t.value),
            seconds=t.duration.total_seconds() if t.duration is not None else math.nan,
        )
        for i, t in enumerate(done)
    ]
    return SearchResult(strategy=strategy, direction=direction, trials=trials, study=study)


# --------------------------------------------------------------------------------------------
# Seed sweeps and selection bias
# --------------------------------------------------------------------------------------------


def sensitivity(
    run: Callable[[Any, int], float | Mapping[str, float]],
    values: Sequence[Any],
    seeds: Sequence[int],
    *,
    progress: Callable | None = None,
) -> pd.DataFrame:
    """Run ``run(value, seed)`` for every knob value and seed; one row per run.

    ``run`` returns a score or a dict of named scores. The frame has columns ``value``, ``seed``
    and one column per score (``score`` when ``run`` returns a number). Summarise it with
    :func:`summarize_sensitivity`.
    """
    if len(values) == 0 or len(seeds) == 0:
        raise ValueError(f"values and seeds must be non-empty, got {len(values)} values and {len(seeds)} seeds")
    for s in seeds:
        _check_seed(s, "each seed")
    rows = []
    pairs = [(v, s) for v in values for s in seeds]
    for value, seed in (progress or _no_progress)(pairs):
        out = run(value, seed)
        scores = dict(out) if isinstance(out, Mapping) else {"score": float(out)}
        rows.append({"value": value, "seed": seed, **scores})
    return pd.DataFrame(rows)


def summarize_sensitivity(frame: pd.DataFrame, score: str = "score", by: str | Sequence[str] = "value") -> pd.DataFrame:
    """Mean, sample standard deviation (``ddof=1``; NaN for one seed) and count of ``score`` per ``by``.

    Returns a frame indexed like ``by`` with columns ``mean``, ``std``, ``n``, in the order the
    values first appear.
    """
    keys = [by] if isinstance(by, str) else list(by)
    missing = [c for c in [*keys, score] if c not in frame.columns]
    if missing:
        raise ValueError(f"frame has no column(s) {missing}; columns are {list(frame.columns)}")
    grouped = frame.groupby(keys, sort=False)[score]
    return pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=1), "n": grouped.count()})


def selection_bias(
    select_scores: np.ndarray | Sequence[Sequence[float]],
    report_scores: np.ndarray | Sequence[Sequence[float]],
    direction: Direction = "maximize",
) -> pd.DataFrame:
    """The optimism of reporting the score a configuration got on the data it was chosen on.

    Both arrays have shape ``(R, K)``: R repetitions (seeds, or random splits) of K candidate
    configurations, scored on a *selection* set and on an independent *report* set drawn from the
    same distribution. In each repetition ``k* = argmax_k select[r, k]`` (argmin when minimizing), and

    ``bias_r = select[r, k*] - report[r, k*]``  (sign flipped when minimizing),

    which is on average >= 0: the maximum of noisy estimates overstates the chosen one's true
    score. Returns one row per repetition with ``chosen``, ``selected_score``, ``fresh_score`` and
    ``bias``.
    """
    _check_direction(direction)
    sel = np.asarray(select_scores, dtype=float)
    rep = np.asarray(report_scores, dtype=float)
    if sel.ndim != 2 or sel.shape != rep.shape or sel.shape[1] == 0:
        raise ValueError(
            f"select_scores and report_scores must both have shape (R, K) with K >= 1, got {sel.shape} and {rep.shape}"
        )
    chosen = sel.argmax(axis=1) if direction == "maximize" else sel.argmin(axis=1)
    rows = np.arange(sel.shape[0])
    selected, fresh = sel[rows, chosen], rep[rows, chosen]
    sign = 1.0 if direction == "maximize" else -1.0
    bias = sign * (selected - fresh)
    return pd.DataFrame({"chosen": chosen, "selected_score": selected, "fresh_score": fresh, "bias": bias})


def _has_nan(key: Any) -> bool:
    if isinstance(key, (float, np.floating)):
        return bool(np.isnan(key))
    if isinstance(key, (tuple, frozenset)):
        return any(_has_nan(k) for k in key)
    return False


def comparison_family(pairs: Mapping[str, tuple[Any, Any]]) -> dict[str, tuple[str, int] | None]:
    """Which named comparisons ``a - b`` a multiple-testing family (e.g. Holm's) should count.

    ``pairs`` maps a comparison's name to the two settings it compares, ``(a, b)``, each a hashable
    key of one training setting (runs with equal keys are the same runs; keys are compared with
    ``==``, so ``0.30000000000000004`` and ``0.3`` are two settings: canonicalise keys first). A
    comparison with ``a == b`` compares a run with itself: its difference is exactly 0, and counting
    it in a family only inflates the correction. A comparison of the same two runs as an earlier one
    is the same test twice, whichever way round: the paired differences of ``b - a`` are those of
    ``a - b`` negated, so a paired t-test gives them the same p-value. Returns, in the input order,
    each name mapped to:

    * ``None`` when ``a == b`` (not a test);
    * ``(first, sign)``: ``first`` the name of the first comparison of the same two runs (itself
      when it is the first), ``sign`` ``+1`` when it compares them in the same order and ``-1`` when
      reversed (its difference is ``-1`` times the first one's).

    The family is ``[n for n, r in result.items() if r is not None and r[0] == n]``; a repeated
    comparison takes the verdict of the one it repeats, mirrored when ``sign`` is ``-1``.

    Raises:
        ValueError: if a value of ``pairs`` is not a pair, or a setting key is unhashable or holds
            a NaN (``nan != nan``, so a NaN key could not name one run).
    """
    first: dict[tuple[Any, Any], str] = {}
    out: dict[str, tuple[str, int] | None] = {}
    for name, pair in pairs.items():
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise ValueError(f"pairs[{name!r}] must be a pair (a, b) of setting keys, got {pair!r}")
        for key in pair:
            try:
                hash(key)
            except TypeError:
                raise ValueError(f"pairs[{name!r}] holds an unhashable setting key {key!r}") from None
            if _has_nan(key):
                raise ValueError(f"pairs[{name!r}] holds a setting key with a NaN, {key!r}")
        a, b = pair
        if a == b:
            out[name] = None
        elif (b, a) in first:
            out[name] = (first[(b, a)], -1)
        else:
            out[name] = (first.setdefault((a, b), name), 1)
    return out


def random_halves(n: int, n_splits: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n_splits`` random splits of ``range(n)`` into two disjoint halves (sizes ``n // 2`` and the rest).

    Used to estimate :func:`selection_bias` from one evaluation set: choose on the first half,
    report on the second. Returns a list of ``(first, second)`` ``int64`` index tensors in random
    order, so that a prefix ``first[:m]`` is itself a random subset of ``m`` examples.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    if isinstance(n_splits, bool) or not isinstance(n_splits, (int, np.integer)) or n_splits < 1:
        raise ValueError(f"n_splits must be a positive int, got {n_splits!r}")
    generator = torch.Generator().manual_seed(_check_seed(seed))
    splits = []
    for _ in range(n_splits):
        perm = torch.randperm(int(n), generator=generator)
        splits.append((perm[: n // 2], perm[n // 2 :]))
    return splits


# --------------------------------------------------------------------------------------------
# Regularization terms added to a loss
# --------------------------------------------------------------------------------------------


def _stack_parameters(parameters: Iterable[torch.Tensor] | torch.Tensor) -> list[torch.Tensor]:
    params = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
    if not params:
        raise ValueError("parameters must contain at least one tensor")
    for p in params:
        if not isinstance(p, torch.Tensor) or not torch.is_floating_point(p):
            raise TypeError(f"parameters must be floating-point tensors, got {type(p).__name__}")
    return params


def l2_penalty(parameters: Iterable[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """Squared L2 norm of all parameters, ``R(w) = sum_j w_j^2`` (a 0-dim tensor, differentiable).

    Convention: ``loss + (lam / 2) * l2_penalty(params)`` has gradient ``grad + lam * w``, which is
    exactly what ``torch.optim.SGD(..., weight_decay=lam)`` adds; ``loss + lam * l2_penalty(params)``
    corresponds to ``weight_decay = 2 * lam``.
    """
    return torch.stack([p.pow(2).sum() for p in _stack_parameters(parameters)]).sum()


def l1_penalty(parameters: Iterable[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """L1 norm of all parameters, ``R(w) = sum_j |w_j|`` (a 0-dim tensor; subgradient 0 at 0)."""
    return torch.stack([p.abs().sum() for p in _stack_parameters(parameters)]).sum()


def fraction_near_zero(tensor: torch.Tensor, atol: float = 1e-3) -> float:
    """Fraction of the entries of ``tensor`` with ``|w| <= atol`` (its sparsity at tolerance ``atol``).

    A tolerance is needed because (sub)gradient descent on an L1 term makes weights hover around 0
    (within about ``lr * lam``) rather than land on it exactly.
    """
    if not isinstance(tensor, torch.Tensor) or not torch.is_floating_point(tensor):
        raise TypeError(f"tensor must be a floating-point tensor, got {type(tensor).__name__}")
    if tensor.numel() == 0:
        raise ValueError("tensor must not be empty")
    if not atol >= 0:
        raise ValueError(f"atol must be >= 0, got {atol!r}")
    return float((tensor.detach().abs() <= atol).float().mean())
