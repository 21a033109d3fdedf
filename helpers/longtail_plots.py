"""Figures of long-tail runs: per-class recall, confusion, curves, reliability, paired differences."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd
import torch

from helpers.longtail_methods import display_name
from helpers.longtail_tables import paired_stats
from helpers.longtail_types import RunRecord

__all__ = [
    "per_class_recall_of", "plot_confusion", "plot_curves", "plot_paired_differences", "plot_per_class_recall",
    "plot_reliability", "reliability",
]  # fmt: skip


def _mean_over_seeds(runs: Sequence[RunRecord], method: str, fn: Callable[[RunRecord], torch.Tensor]) -> torch.Tensor:
    values = [fn(r) for r in runs if r.method == method]
    if not values:
        raise ValueError(f"no runs of method {method!r}; have {sorted({r.method for r in runs})}")
    return torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in values]).mean(0)


def per_class_recall_of(run: RunRecord) -> torch.Tensor:
    """Test recall of each class for one run, ``float64`` ``(C,)``."""
    from helpers.metrics import per_class_recall

    return per_class_recall(run.test_logits, run.test_targets, run.test_logits.shape[1])


def plot_per_class_recall(ax, runs: Sequence[RunRecord], methods: Sequence[str], title: str = "") -> None:
    """Test recall per class (mean over seeds) for each method, classes ordered by training count."""
    counts = runs[0].counts
    order = sorted(range(len(counts)), key=lambda c: -counts[c])
    for method in methods:
        recall = _mean_over_seeds(runs, method, per_class_recall_of)
        ax.plot(range(len(order)), 100 * recall[order], marker="o", label=display_name(method))
    ax.set_xticks(range(len(order)), [f"{c}\n({counts[c]})" for c in order], fontsize=10)
    ax.set_xlabel("class (training examples), head to tail")
    ax.set_ylabel("test recall (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=10)


def plot_confusion(ax, run: RunRecord, class_names: Sequence[str] | None = None, title: str = "") -> None:
    """Row-normalised test confusion matrix of one run (rows: true class; entries in %)."""
    from helpers.metrics import confusion_matrix

    cm = confusion_matrix(run.test_logits, run.test_targets, run.test_logits.shape[1]).double()
    cm = 100 * cm / cm.sum(1, keepdim=True).clamp(min=1)
    image = ax.imshow(cm, cmap="Blues", vmin=0, vmax=100)
    names = list(class_names) if class_names is not None else [str(c) for c in range(cm.shape[0])]
    ax.set_xticks(range(len(names)), names, fontsize=10)
    ax.set_yticks(range(len(names)), names, fontsize=10)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title or f"{display_name(run.method)} (seed pair {run.seed})")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j] >= 1:
                ax.text(j, i, f"{cm[i, j]:.0f}", ha="center", va="center", fontsize=6,
                        color="white" if cm[i, j] > 60 else "black")
    return image


def plot_curves(axes, runs: Sequence[RunRecord], methods: Sequence[str],
                keys: Sequence[str] = ("train_loss", "val_balanced_accuracy")) -> None:
    """Per-epoch curves (mean over seeds) of ``keys`` from the runs' histories, one axis per key."""
    labels = {
        "train_loss": "training loss (the method's own loss)",
        "val_balanced_accuracy": "validation balanced accuracy",
        "val_accuracy": "validation accuracy",
        "val_loss": "validation cross-entropy (nats)",
        "val_worst_class_recall": "validation worst-class recall",
    }
    for ax, key in zip(axes, keys, strict=True):
        for method in methods:
            curve = _mean_over_seeds(runs, method, lambda r, k=key: torch.tensor(r.history[k]))
            ax.plot(range(1, len(curve) + 1), curve, marker=".", label=display_name(method))
        ax.set_xlabel("epoch")
        ax.set_ylabel(labels.get(key, key))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=10)


def reliability(run: RunRecord, n_bins: int = 10) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reliability diagram data of one run: mean confidence, accuracy and count per confidence bin."""
    probs = run.test_logits.softmax(1)
    confidence, pred = probs.max(1)
    correct = (pred == run.test_targets).double()
    bins = torch.clamp((confidence * n_bins).ceil().long() - 1, 0, n_bins - 1)
    size = torch.bincount(bins, minlength=n_bins).double()
    conf = torch.bincount(bins, weights=confidence.double(), minlength=n_bins) / size
    acc = torch.bincount(bins, weights=correct, minlength=n_bins) / size
    return conf, acc, size


def plot_reliability(ax, runs: Sequence[RunRecord], methods: Sequence[str], seed: int = 0, n_bins: int = 10) -> None:
    """Reliability diagram (accuracy against confidence, test set) of ONE seed pair (``seed``) of each method.

    The ECE in the legend is computed from the plotted bins: the count-weighted mean of
    ``|accuracy - confidence|`` over the ``n_bins`` equal-width bins of the same run.
    """
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
    for method in methods:
        run = next(r for r in runs if r.method == method and r.seed == seed)
        conf, acc, size = reliability(run, n_bins)
        keep = size > 0
        ece = float(((acc - conf).abs()[keep] * size[keep]).sum() / size.sum())
        ax.plot(conf[keep], acc[keep], marker="o", label=f"{display_name(method)} (ECE {100 * ece:.1f}%)")
    ax.set_xlabel("confidence of the predicted class")
    ax.set_ylabel("accuracy in the confidence bin")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=10)


def plot_paired_differences(
    ax, table: pd.DataFrame, baseline: str = "ce", metric: str = "balanced_accuracy",
    methods: Sequence[str] | None = None, level: float = 0.95, title: str = "",
) -> pd.DataFrame:  # fmt: skip
    """Forest plot: each method's paired difference to ``baseline`` (points) with its ``level`` t-interval.

    An interval that crosses the dotted zero line cannot be told apart from the baseline. Returns the
    :func:`paired_stats` it drew. Methods with fewer than two pairs are drawn as a point without bars.
    """
    stats = paired_stats(table, baseline, metric, methods, level).drop(index=baseline)
    y = range(len(stats))
    mean = 100 * stats["diff"].to_numpy()
    low = 100 * stats["diff_low"].fillna(stats["diff"]).to_numpy()
    high = 100 * stats["diff_high"].fillna(stats["diff"]).to_numpy()
    ax.errorbar(mean, list(y), xerr=[mean - low, high - mean], fmt="o", capsize=3,
                label=f"mean difference, {int(round(100 * level))}% t-interval over seed pairs")  # fmt: skip
    ax.axvline(0, color="grey", linestyle=":", lw=1)
    ax.set_yticks(list(y), [display_name(m) for m in stats.index])
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric.replace('_', ' ')} minus {baseline}'s (percentage points, test set)")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=10)
    return stats
