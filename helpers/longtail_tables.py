"""Paired comparisons of long-tail runs: summaries, paired differences against a baseline, the best set.

Runs of different methods with the same ``(seed, data_seed)`` are *paired* (:mod:`helpers.longtail_runner`).
:func:`paired_table` compares every method with a baseline (cross-entropy) by paired differences with a
Student-t interval over the pairs (:mod:`helpers.stats`); its verdicts are Holm-adjusted over the
methods of the table (a page that draws several verdicts keeps the chance of any false one at 5%).
:func:`val_best_set` names the methods that may be the best on the *validation* set (Hsu's multiple
comparisons with the best, :func:`helpers.stats.possibly_best`). :func:`compare_with_published` says
whether a paper's published difference agrees with our prediction interval for it, only when that is narrow.

The intervals cover seed pairs (training seed and drawn subset) on one fixed test set: they are
conditional on the test images.

:func:`plain_ce_rises` counts, for the instability tables, the epochs where a run's plain training
cross-entropy rose, apart from those where deferred re-weighting switched the loss (a designed change).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from helpers.longtail_methods import display_name
from helpers.longtail_types import RunRecord
from helpers.runtime import quick_mode
from helpers.stats import QUICK_VERDICT, holm_adjust, paired_difference, paired_p_value, possibly_best, verdict

__all__ = [
    "AGREEMENT_MARGIN", "ONE_PAIR_VERDICT", "compare_with_published", "paired_stats", "paired_table",
    "plain_ce_rises", "planned_epochs", "summarize", "val_best_set",
]  # fmt: skip

#: Largest half-width (points of top-1 error) of our interval for which :func:`compare_with_published`
#: calls a published difference consistent or not with it; a wider interval contains almost any value.
AGREEMENT_MARGIN = 2.0


def compare_with_published(paper: float, low: float, high: float, n_pairs: int, paper_runs: int | None = None,
                           margin: float = AGREEMENT_MARGIN) -> str:  # fmt: skip
    """Whether a published difference ``paper`` agrees with our t-interval ``[low, high]`` over ``n_pairs`` pairs.

    The published difference is itself noisy: one run (Cao et al.) or a mean of ``paper_runs`` runs
    (Menon et al.: 5). So it is compared with the *prediction* interval for such a number,
    ``mean ± t * s * sqrt(1/n + 1/m)`` with ``n = n_pairs``, ``m = paper_runs`` and ``s`` the spread of
    our paired differences; from our interval's half-width ``h = t * s / sqrt(n)`` that is
    ``mean ± h * sqrt(1 + n/m)`` (same level, same t). ``"consistent"`` when ``paper`` lies inside it
    and its half-width ``H`` is below ``margin``; ``"not consistent"`` when it lies outside such a
    narrow interval; ``"interval too wide to compare (±H points)"`` when ``H >= margin``;
    ``"cannot judge (our interval has zero width)"`` when ``low == high`` (no spread over our pairs);
    ``"-"`` when ``paper``, ``low`` or ``high`` is NaN (no published number, or one seed pair). With
    ``paper_runs`` None (not known) ``m = 1`` is used and the verdict says so.

    Raises:
        ValueError: if ``margin`` is not positive, ``low > high``, ``n_pairs < 2`` with an interval, or
            ``paper_runs < 1``.
    """
    if not margin > 0:
        raise ValueError(f"margin must be positive (points), got {margin}")
    if paper_runs is not None and paper_runs < 1:
        raise ValueError(f"paper_runs must be a positive count or None, got {paper_runs}")
    if math.isnan(paper) or math.isnan(low) or math.isnan(high):
        return "-"
    if low > high:
        raise ValueError(f"low must not exceed high, got [{low}, {high}]")
    if n_pairs < 2:
        raise ValueError(f"n_pairs must be at least 2 for an interval, got {n_pairs}")
    if high == low:
        return "cannot judge (our interval has zero width)"
    runs = 1 if paper_runs is None else paper_runs
    half = (high - low) / 2 * math.sqrt(1 + n_pairs / runs)
    note = " (the paper's run count is unknown: taken as 1)" if paper_runs is None else ""
    if half >= margin:
        return f"interval too wide to compare (\u00b1{half:.1f} points){note}"
    inside = abs(paper - (low + high) / 2) <= half
    return ("consistent" if inside else "not consistent") + note


def summarize(table: pd.DataFrame, metrics: Sequence[str] = ("accuracy", "balanced_accuracy", "few_recall",
              "worst_class_recall"), percent: bool = True) -> pd.DataFrame:  # fmt: skip
    """Mean ± std over the runs (seed pairs) of ``metrics`` per method (rows in the table's method order), as strings.

    With ``percent`` the values are shown in percent with one decimal: ``"97.3 ± 0.4"``. The std is the
    spread of single runs; for comparisons between methods use :func:`paired_table`.
    """
    missing = [m for m in metrics if m not in table.columns]
    if missing:
        raise ValueError(f"metrics {missing} are not columns of the table")
    order = list(dict.fromkeys(table["method"]))
    scale = 100.0 if percent else 1.0
    grouped = table.groupby("method", sort=False)[list(metrics)]
    mean, std = grouped.mean().loc[order] * scale, grouped.std(ddof=1).loc[order].fillna(0.0) * scale
    fmt = "{:.1f} ± {:.1f}" if percent else "{:.3f} ± {:.3f}"
    out = pd.DataFrame(
        {m: [fmt.format(a, b) for a, b in zip(mean[m], std[m], strict=True)] for m in metrics}, index=order
    )
    out.index.name = "method"
    return out


#: The verdict when fewer than two pairs of runs exist (no interval can be computed).
ONE_PAIR_VERDICT = "cannot be judged from a single pair of runs"


def planned_epochs(run: RunRecord) -> int:
    """The run's planned number of epochs: ``run.extra["config"]["epochs"]``, else the history's length.

    A run that diverged stops early, so its history can be shorter than the plan; the runner
    (:mod:`helpers.longtail_runner`) records the config in ``run.extra["config"]``.
    """
    config = run.extra.get("config") or {}
    epochs = int(config["epochs"]) if "epochs" in config else len(run.history.get("train_ce", []))
    if epochs < 1:
        raise ValueError(f"run.extra['config']['epochs'] must be >= 1 (or a non-empty history), got {epochs}")
    return epochs


def plain_ce_rises(run: RunRecord) -> tuple[int, int]:
    """Rises of the plain training cross-entropy from one epoch to the next: ``(elsewhere, at_switch)``.

    ``run.history["train_ce"]`` holds one mean per epoch. A rise into epoch ``e`` counts as *at the
    switch* when the run has a deferred re-weighting switch (``run.extra["drw_start_step"]`` and
    ``["drw_fraction"]``, :mod:`helpers.longtail_runner`) and ``e`` is the epoch holding the switch step
    or, when the switch falls inside an epoch, the first epoch wholly after it: those epochs' means
    change because the loss was designed to change. Every other rise counts as *elsewhere*. A run
    without a switch has ``at_switch == 0``. Steps per epoch come from the planned number of epochs
    (:func:`planned_epochs`), not from the history, which is short when a diverged run stopped early.
    """
    ce = [float(v) for v in run.history.get("train_ce", [])]
    switch: set[int] = set()
    if "drw_start_step" in run.extra:
        start, fraction = int(run.extra["drw_start_step"]), float(run.extra["drw_fraction"])
        if start < 0 or not 0 <= fraction <= 1 or (start > 0) != (fraction > 0):
            raise ValueError(f"run.extra needs drw_start_step >= 0 and drw_fraction in [0, 1], got {start}, {fraction}")
        if start == 0 or not ce:
            switch = {0}
        else:
            steps_per_epoch = round(start / fraction) // planned_epochs(run)
            epoch, offset = divmod(start, steps_per_epoch)
            switch = {epoch, epoch + 1} if offset else {epoch}
    rises = [e for e in range(1, len(ce)) if ce[e] > ce[e - 1]]
    at_switch = sum(e in switch for e in rises)
    return len(rises) - at_switch, at_switch


def _by_pair(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """``column`` as a (seed, data_seed) x method frame."""
    if column not in table.columns:
        raise ValueError(f"{column!r} is not a column of the table; have {sorted(table.columns)}")
    frame = table if "data_seed" in table.columns else table.assign(data_seed=0)
    if frame.duplicated(["method", "seed", "data_seed"]).any():
        raise ValueError("the table has several runs of one method for the same (seed, data_seed): "
                         "pass one setting (dataset, profile, imbalance ratio) at a time")  # fmt: skip
    return frame.pivot(index=["seed", "data_seed"], columns="method", values=column)


def val_best_set(
    table: pd.DataFrame,
    metric: str = "balanced_accuracy",
    methods: Sequence[str] | None = None,
    level: float = 0.95,
    higher_is_better: bool = True,
) -> list[str]:
    """Methods that may be the best on the VALIDATION ``metric`` (``val_<metric>``), best mean first.

    :func:`helpers.stats.possibly_best` over the ``(seed, data_seed)`` pairs: Hsu's multiple
    comparisons with the best, which keeps the truly best method with probability at least ``level``
    and is monotone in the means (a method with a higher mean than a kept one is kept). A method with a
    diverged (NaN) run is not a contender. With fewer than two pairs nothing can be separated and
    every contender is returned. A one-element result is a clear winner, chosen without the test set.
    """
    wide = _by_pair(table, f"val_{metric}")
    methods = list(methods) if methods is not None else list(dict.fromkeys(table["method"]))
    contenders = [m for m in methods if m in wide.columns and wide[m].notna().all()]
    if len(wide) < 2 or len(contenders) < 2:
        return contenders
    return possibly_best({m: wide[m].to_numpy() for m in contenders}, level, higher_is_better)


def paired_stats(
    table: pd.DataFrame,
    baseline: str = "ce",
    metric: str = "balanced_accuracy",
    methods: Sequence[str] | None = None,
    level: float = 0.95,
    quick: bool | None = None,
    higher_is_better: bool = True,
    holm: bool = True,
) -> pd.DataFrame:
    """Per method: mean and std of ``metric`` (test and validation), and the paired difference against ``baseline``.

    Runs are paired by ``(seed, data_seed)``: with the default paired seeds, every pair has its own
    drawn subset and its own initialisation, so the interval covers both sources of variance. For each
    method the difference ``method - baseline`` per pair gives a mean and a Student-t ``level``
    interval over the pairs (:func:`helpers.stats.paired_difference`), and
    :func:`helpers.stats.verdict` turns it into "improves", "hurts" or "cannot be told apart from"
    (:data:`helpers.stats.QUICK_VERDICT` in quick mode, :data:`ONE_PAIR_VERDICT` with one pair).
    With ``holm`` (default) a test verdict names a direction only when, in addition, the paired
    t-test's p-value stays below ``1 - level`` after Holm's adjustment over the compared methods
    (columns ``p_value``, ``p_holm``); the intervals themselves are the unadjusted ``level`` ones.
    Pairs where either run diverged (NaN) are left out of that method's difference.

    Returns:
        One row per method (index ``method``) with columns ``n_pairs``, ``mean``, ``std``,
        ``val_mean``, ``val_std``, ``diff``, ``diff_low``, ``diff_high``, ``verdict``,
        ``val_diff``, ``val_diff_low``, ``val_diff_high``, ``val_verdict``, ``p_value``, ``p_holm``,
        ``val_tied_best``
        (:func:`val_best_set`), ``many_recall``, ``medium_recall``, ``few_recall`` (means, if in the
        table) and ``diverged`` (number of diverged runs). Values are fractions, as in the table.
    """
    quick = quick_mode() if quick is None else quick
    methods = list(methods) if methods is not None else list(dict.fromkeys(table["method"]))
    if baseline not in methods:
        raise ValueError(f"baseline {baseline!r} is not among the methods {methods}")
    missing = [m for m in methods if m not in set(table["method"])]
    if missing:
        raise ValueError(f"methods {missing} have no runs in the table")
    test, val = _by_pair(table, metric), _by_pair(table, f"val_{metric}")
    best = set(val_best_set(table, metric, methods, level, higher_is_better))
    groups = [g for g in ("many_recall", "medium_recall", "few_recall") if g in table.columns]
    diverged = table.groupby("method")["diverged"].sum() if "diverged" in table.columns else None

    def compare(wide: pd.DataFrame, m: str) -> tuple[float, float, float, str]:
        if m == baseline:
            return math.nan, math.nan, math.nan, "baseline"
        both = wide[[m, baseline]].dropna()
        if len(both) < 2:
            d = float((both[m] - both[baseline]).mean()) if len(both) else math.nan
            return d, math.nan, math.nan, QUICK_VERDICT if quick else ONE_PAIR_VERDICT
        diff = paired_difference(both[m].to_numpy(), both[baseline].to_numpy(), level)
        return diff.mean, diff.low, diff.high, verdict(diff, quick=quick, higher_is_better=higher_is_better)

    def p_of(m: str) -> float:
        both = test[[m, baseline]].dropna()
        if m == baseline or len(both) < 2:
            return math.nan
        return paired_p_value(both[m].to_numpy(), both[baseline].to_numpy())

    p_values = np.array([p_of(m) for m in methods])
    p_holm = holm_adjust(p_values) if holm else p_values
    rows = []
    for m, p, ph in zip(methods, p_values, p_holm, strict=True):
        d, lo, hi, word = compare(test, m)
        if holm and not quick and not math.isnan(ph) and ph >= 1 - level and word in ("improves", "hurts"):
            word = "cannot be told apart from (after Holm)"
        vd, vlo, vhi, vword = compare(val, m)
        row = {
            "method": m, "n_pairs": int(test[m].notna().sum()), "mean": test[m].mean(), "std": test[m].std(ddof=1),
            "val_mean": val[m].mean(), "val_std": val[m].std(ddof=1), "diff": d, "diff_low": lo, "diff_high": hi,
            "verdict": word, "p_value": p, "p_holm": ph, "val_diff": vd, "val_diff_low": vlo,
            "val_diff_high": vhi, "val_verdict": vword,
            "val_tied_best": m in best,
        }  # fmt: skip
        for g in groups:
            row[g] = table.loc[table["method"] == m, g].mean()
        row["diverged"] = int(diverged.get(m, 0)) if diverged is not None else 0
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")


def paired_table(
    table: pd.DataFrame,
    baseline: str = "ce",
    metric: str = "balanced_accuracy",
    methods: Sequence[str] | None = None,
    level: float = 0.95,
    quick: bool | None = None,
    percent: bool = True,
    higher_is_better: bool = True,
    holm: bool = True,
    display_names: bool = False,
) -> pd.DataFrame:
    """:func:`paired_stats` formatted for the page: one row per method, strings in percent (points for differences).

    Columns: ``<metric> (test)`` ``"mean ± std"``; ``vs <baseline>, 95% CI`` ``"+1.2 [+0.4, +2.0]"``
    (paired over seed pairs on the fixed test set, in points); ``verdict`` (the word
    :func:`helpers.stats.verdict` gives, Holm-adjusted with ``holm``); ``val <metric>``
    ``"mean ± std"``; ``val: possibly best`` ("yes" for the methods of :func:`val_best_set`);
    ``many / medium / few recall (test)``; ``pairs`` (runs used) and ``diverged``. With one pair the
    std and the interval are blank. ``display_names`` shows :data:`helpers.longtail_methods.DISPLAY_NAMES`
    instead of the registry ids in the index.
    """
    stats = paired_stats(table, baseline, metric, methods, level, quick, higher_is_better, holm)
    scale = 100.0 if percent else 1.0
    digits = 1 if percent else 3

    # No-break spaces inside "91.6 ± 1.0" and "[+7.6, +8.7]": a narrow table cell (a phone, the book's
    # column) wraps an interval only before its bracket, never inside it.
    nb = "\u00a0"

    def spread(mean: float, std: float) -> str:
        return f"{mean * scale:.{digits}f}" + ("" if math.isnan(std) else f"{nb}±{nb}{std * scale:.{digits}f}")

    def interval(d: float, lo: float, hi: float) -> str:
        if math.isnan(d):
            return "-"
        text = f"{d * scale:+.{digits}f}"
        return text if math.isnan(lo) else f"{text} [{lo * scale:+.{digits}f},{nb}{hi * scale:+.{digits}f}]"

    pct = f"{int(round(level * 100))}% CI"
    out = pd.DataFrame(index=stats.index)
    name = metric.replace("_", " ")
    out[f"{name} (test)"] = [spread(a, b) for a, b in zip(stats["mean"], stats["std"], strict=True)]
    out[f"vs {baseline}, {pct}"] = [interval(*v) for v in stats[["diff", "diff_low", "diff_high"]].to_numpy()]
    # "X cannot be told apart from CE" reads as a sentence in the prose; in a column headed by the
    # comparison the trailing "from" would dangle.
    out["verdict"] = [v.replace("apart from", "apart") for v in stats["verdict"]]
    out[f"val {name}"] = [spread(a, b) for a, b in zip(stats["val_mean"], stats["val_std"], strict=True)]
    out["val: possibly best"] = ["yes" if t else "" for t in stats["val_tied_best"]]
    if {"many_recall", "medium_recall", "few_recall"} <= set(stats.columns):
        out["many / medium / few recall (test)"] = [
            " / ".join("-" if math.isnan(v) else f"{v * scale:.{digits}f}" for v in vals)
            for vals in stats[["many_recall", "medium_recall", "few_recall"]].to_numpy()
        ]
    out["pairs"] = stats["n_pairs"]
    out["diverged"] = stats["diverged"]
    if display_names:
        out.index = [display_name(m) for m in out.index]
        out.index.name = "method"
    return out
