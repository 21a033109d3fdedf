r"""Classification metrics for class-imbalanced problems.

Every function takes predictions either as class indices ``pred`` (``int64``, shape ``(N,)``) or as
``logits`` / scores (floating, shape ``(N, C)``, reduced with ``argmax``), and ``target`` class indices
(``int64``, ``(N,)``). ``num_classes`` defaults to ``C`` of the logits, else ``max(pred, target) + 1``.
Scalars are returned as Python floats, per-class values as ``float64`` tensors (``NaN`` for a class
with no test example, so it is left out of averages rather than counted as 0).

* recall of class ``c``: :math:`r_c = TP_c / (TP_c + FN_c)`;
* balanced accuracy: :math:`\frac{1}{|K|} \sum_{c \in K} r_c` over the classes ``K`` present in ``target``;
* macro-F1: mean of :math:`F_1 = 2TP / (2TP + FP + FN)` over classes present in ``target`` or ``pred``
  (``sklearn.metrics.f1_score(average='macro')``, with 0 for a class never predicted correctly);
* expected calibration error (Guo et al. 2017): :math:`\sum_b \frac{|B_b|}{N} |\mathrm{acc}(B_b) -
  \mathrm{conf}(B_b)|` over ``n_bins`` equal-width confidence bins ``(b/n, (b+1)/n]``.

Many-shot / medium-shot / few-shot groups are defined by *training* counts (see :func:`class_groups`, which
states the rule it uses: the standard thresholds for 100+ classes, thirds by rank for 10 classes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from helpers.validation import check_class_counts

GROUPS = ("many", "medium", "few")
#: Older names of the first and last group, kept as aliases in :func:`classification_report`.
GROUP_ALIASES = {"head_recall": "many_recall", "tail_recall": "few_recall"}


def _as_pred(pred: torch.Tensor, num_classes: int | None, name: str = "pred") -> tuple[torch.Tensor, int | None]:
    """Class indices from ``pred`` (indices or ``(N, C)`` scores), and the class count the scores imply."""
    if not isinstance(pred, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(pred).__name__}")
    if torch.is_floating_point(pred):
        if pred.dim() != 2:
            raise ValueError(f"floating {name} must be logits of shape (N, C), got {tuple(pred.shape)}")
        if num_classes is not None and pred.shape[1] != num_classes:
            raise ValueError(f"{name} has {pred.shape[1]} classes but num_classes={num_classes}")
        return pred.argmax(1), int(pred.shape[1])
    if pred.dtype != torch.int64:
        raise TypeError(f"{name} must be int64 class indices or floating logits, got dtype {pred.dtype}")
    if pred.dim() != 1:
        raise ValueError(f"{name} class indices must have shape (N,), got {tuple(pred.shape)}")
    return pred, num_classes


def _prepare(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int | None
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Validated ``(pred indices, target, C)``."""
    pred, num_classes = _as_pred(pred, num_classes)
    if not isinstance(target, torch.Tensor) or target.dtype != torch.int64:
        raise TypeError(f"target must be an int64 tensor of class indices, got {getattr(target, 'dtype', target)}")
    if target.shape != pred.shape:
        raise ValueError(
            f"target must have shape {tuple(pred.shape)} to match the predictions, got {tuple(target.shape)}"
        )
    if target.numel() == 0:
        raise ValueError("target is empty")
    target = target.to(pred.device)
    high = max(int(pred.max()), int(target.max()))
    if num_classes is None:
        num_classes = high + 1
    if min(int(pred.min()), int(target.min())) < 0 or high >= num_classes:
        raise ValueError(f"pred and target must be in [0, {num_classes}), got values up to {high}")
    return pred, target, num_classes


def accuracy(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Fraction of correct predictions."""
    pred, target, _ = _prepare(pred, target, None)
    return (pred == target).double().mean().item()


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """Counts ``M[i, j]`` of examples of true class ``i`` predicted as ``j``; ``int64`` of shape ``(C, C)``.

    Rows are true classes and columns predictions, as in ``sklearn.metrics.confusion_matrix``.
    """
    pred, target, num_classes = _prepare(pred, target, num_classes)
    flat = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return flat.view(num_classes, num_classes).cpu()


def per_class_recall(pred: torch.Tensor, target: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """Recall of each class, ``float64`` of shape ``(C,)``; ``NaN`` for a class absent from ``target``."""
    cm = confusion_matrix(pred, target, num_classes).double()
    return cm.diagonal() / cm.sum(1)  # 0/0 = NaN for absent classes


def balanced_accuracy(pred: torch.Tensor, target: torch.Tensor, num_classes: int | None = None) -> float:
    """Mean per-class recall over the classes present in ``target``."""
    return per_class_recall(pred, target, num_classes).nanmean().item()


def worst_class_recall(pred: torch.Tensor, target: torch.Tensor, num_classes: int | None = None) -> float:
    """Smallest per-class recall over the classes present in ``target``."""
    return _worst(per_class_recall(pred, target, num_classes))


def _worst(recall: torch.Tensor) -> float:
    return recall[~recall.isnan()].min().item()


def per_class_f1(pred: torch.Tensor, target: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """F1 of each class, ``2TP / (2TP + FP + FN)``, ``float64`` ``(C,)``; ``NaN`` if absent from both."""
    cm = confusion_matrix(pred, target, num_classes).double()
    tp = cm.diagonal()
    return 2 * tp / (cm.sum(0) + cm.sum(1))


def macro_f1(pred: torch.Tensor, target: torch.Tensor, num_classes: int | None = None) -> float:
    """Mean per-class F1 over the classes present in ``target`` or ``pred``."""
    return per_class_f1(pred, target, num_classes).nanmean().item()


def expected_calibration_error(probs: torch.Tensor, target: torch.Tensor, n_bins: int = 15) -> float:
    """Expected calibration error of the top-class confidence (see the module docstring).

    Args:
        probs: class probabilities ``(N, C)``, rows summing to 1 (e.g. ``logits.softmax(1)``).
        target: ``int64`` ``(N,)``.
        n_bins: number of equal-width confidence bins (15, as in Guo et al. 2017).
    """
    if not isinstance(probs, torch.Tensor) or not torch.is_floating_point(probs) or probs.dim() != 2:
        raise TypeError("probs must be a floating tensor of class probabilities of shape (N, C)")
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive int, got {n_bins!r}")
    probs = probs.double()
    if (
        (probs < 0).any()
        or (probs > 1).any()
        or not torch.allclose(probs.sum(1), torch.ones_like(probs[:, 0]), atol=1e-3)
    ):
        raise ValueError(
            "probs must be probabilities (rows in [0, 1] summing to 1); pass logits.softmax(1), not logits"
        )
    pred, target, _ = _prepare(probs, target, None)
    confidence = probs.max(1).values
    correct = (pred == target).double()
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64, device=probs.device)[1:-1]
    bins = torch.bucketize(confidence, edges)  # bin b holds confidences in (b/n, (b+1)/n]
    size = torch.bincount(bins, minlength=n_bins).double()
    gap = torch.bincount(bins, weights=correct, minlength=n_bins) - torch.bincount(
        bins, weights=confidence, minlength=n_bins
    )
    return (gap.abs().sum() / size.sum()).item()


#: Absolute thresholds of the standard many/medium/few split (Liu et al. 2019, OLTR; Kang et al. 2020):
#: many-shot > 100 training images, medium-shot 20..100, few-shot < 20. Made for 100+ classes.
STANDARD_THRESHOLDS = (20, 100)
#: Below this many classes the standard thresholds leave groups empty or nearly so, and
#: :func:`class_groups` splits by rank instead (see ``rule="rank"``).
STANDARD_MIN_CLASSES = 100
GROUPING_RULES = ("auto", "rank", "standard", "thresholds")


def _grouping_rule(num_classes: int, rule: str, thresholds: tuple[float, float] | None) -> str:
    if rule not in GROUPING_RULES:
        raise ValueError(f"rule must be one of {GROUPING_RULES}, got {rule!r}")
    if thresholds is not None:
        if rule not in ("auto", "thresholds"):
            raise ValueError(f"thresholds go with rule='thresholds' (or 'auto'), got rule={rule!r}")
        return "thresholds"
    if rule == "thresholds":
        raise ValueError("rule='thresholds' needs thresholds=(few, many)")
    if rule == "auto":
        return "standard" if num_classes >= STANDARD_MIN_CLASSES else "rank"
    return rule


def class_groups(
    train_counts: torch.Tensor | Sequence[int],
    thresholds: tuple[float, float] | None = None,
    rule: str = "auto",
) -> dict[str, list[int]]:
    r"""Split classes into many-shot / medium-shot / few-shot groups by their *training* counts.

    Rules (``rule``):

    * ``"standard"``: many if :math:`n_c > 100`, few if :math:`n_c < 20`, medium otherwise (Liu et
      al. 2019; Kang et al. 2020), the split used for CIFAR-100-LT, ImageNet-LT, Places-LT and
      iNaturalist. It is made for 100 and more classes.
    * ``"rank"``: by thirds of the classes ordered by training count: the ``round(0.3 C)`` largest
      classes are many, the ``round(0.3 C)`` smallest few, the rest medium (3 / 4 / 3 for 10
      classes). Classes with equal counts always share a group (a tie with a many class is many, then
      a tie with a few class is few), so the step profile gives its two halves and an empty medium
      group, and a balanced set is all many. Used for 10-class sets (MNIST-LT, CIFAR-10-LT), where the
      standard thresholds leave groups empty or of one or two classes (CIFAR-10-LT at ratio 100 has
      8 classes above 100 images and none below 20), so a group mean would rest on one class; by
      rank every group of the exponential profile has 3 or 4 classes, and on its log-count axis the
      cuts fall at equal thirds (about 30% and 70% of the way from head to tail).
    * ``"thresholds"``: ``thresholds=(few, many)`` in absolute counts: many if :math:`n_c > 	ext{many}`,
      few if :math:`n_c < 	ext{few}`.
    * ``"auto"`` (default): ``"thresholds"`` when ``thresholds`` is given, else ``"standard"`` for
      100 or more classes and ``"rank"`` below. :func:`describe_groups` says in words which rule
      applied and what it gave.

    Returns:
        ``{"many": [...], "medium": [...], "few": [...]}``, class indices in increasing order.
    """
    counts = check_class_counts(train_counts, name="train_counts")
    chosen = _grouping_rule(len(counts), rule, thresholds)
    if chosen in ("thresholds", "standard"):
        few, many = (float(t) for t in (thresholds if chosen == "thresholds" else STANDARD_THRESHOLDS))
        if not few <= many:
            raise ValueError(f"thresholds must be (few, many) with few <= many, got {thresholds}")
        head, tail = counts > many, counts < few
    else:
        k = max(1, round(0.3 * len(counts)))
        ordered = counts.sort(descending=True).values
        head = counts >= ordered[k - 1]
        tail = (counts <= ordered[-k]) & ~head
    medium = ~head & ~tail
    return {name: mask.nonzero().flatten().tolist() for name, mask in zip(GROUPS, (head, medium, tail), strict=True)}


def describe_groups(
    train_counts: torch.Tensor | Sequence[int], thresholds: tuple[float, float] | None = None, rule: str = "auto"
) -> str:
    """One sentence naming the grouping rule :func:`class_groups` applied and the groups it gave.

    Example (CIFAR-10-LT, ratio 100): ``"many/medium/few by rank of training count (3 largest,
    4 middle, 3 smallest of 10 classes): many = 3 classes (1077-4900 images), medium = 4 classes
    (139-645), few = 3 classes (49-83)"``.
    """
    counts = check_class_counts(train_counts, name="train_counts")
    chosen = _grouping_rule(len(counts), rule, thresholds)
    groups = class_groups(counts, thresholds, rule)
    sizes = {g: len(v) for g, v in groups.items()}
    if chosen == "rank":
        head = (f"many/medium/few by rank of training count ({sizes['many']} largest, {sizes['medium']} middle, "
                f"{sizes['few']} smallest of {len(counts)} classes; ties share a group)")  # fmt: skip
    else:
        few, many = thresholds if chosen == "thresholds" else STANDARD_THRESHOLDS
        label = "standard thresholds" if chosen == "standard" else "thresholds"
        head = f"many/medium/few by {label} (many > {many:g}, medium {few:g}-{many:g}, few < {few:g} training images)"

    def part(name: str) -> str:
        idx = groups[name]
        if not idx:
            return f"{name} = no class"
        values = counts[idx]
        low, high = int(values.min()), int(values.max())
        span = f"{low}" if low == high else f"{low}-{high}"
        return f"{name} = {len(idx)} class{'es' if len(idx) != 1 else ''} ({span} images)"

    return f"{head}: " + ", ".join(part(g) for g in GROUPS)


def group_recall(
    recall: torch.Tensor,
    train_counts: torch.Tensor | Sequence[int],
    thresholds: tuple[float, float] | None = None,
    rule: str = "auto",
) -> dict[str, float]:
    """Mean recall of the many, medium and few groups (:func:`class_groups`); ``NaN`` for an empty group.

    Args:
        recall: per-class recall ``(C,)`` (e.g. :func:`per_class_recall`); NaN entries are skipped.
        train_counts: training examples per class, ``C`` positive integers.
        thresholds, rule: see :func:`class_groups`.
    """
    recall = torch.as_tensor(recall, dtype=torch.float64).cpu()
    groups = class_groups(train_counts, thresholds, rule)
    if recall.dim() != 1 or recall.numel() != sum(len(g) for g in groups.values()):
        raise ValueError(f"recall must have shape ({len(torch.as_tensor(train_counts))},), got {tuple(recall.shape)}")
    return {name: recall[idx].nanmean().item() if idx else math.nan for name, idx in groups.items()}


def classification_report(
    logits: torch.Tensor,
    target: torch.Tensor,
    train_counts: torch.Tensor | Sequence[int],
    n_bins: int = 15,
    rule: str = "auto",
) -> dict[str, float]:
    """All scalar metrics of a model's ``logits`` ``(N, C)`` on ``target`` ``(N,)``.

    Keys: ``accuracy``, ``balanced_accuracy``, ``worst_class_recall``, ``macro_f1``, ``many_recall``,
    ``medium_recall``, ``few_recall`` (groups by ``train_counts`` under ``rule``, see
    :func:`class_groups` and :func:`describe_groups`), ``ece`` (of the softmax probabilities) and
    ``nll`` (mean cross-entropy). ``head_recall`` and ``tail_recall`` repeat ``many_recall`` and
    ``few_recall`` under their older names (:data:`GROUP_ALIASES`).
    """
    num_classes = len(check_class_counts(train_counts, name="train_counts"))
    if not isinstance(logits, torch.Tensor) or not torch.is_floating_point(logits):
        raise TypeError("logits must be a floating tensor of shape (N, C)")
    logits = logits.float()
    pred, target, _ = _prepare(logits, target, num_classes)
    recall = per_class_recall(pred, target, num_classes)
    groups = {f"{name}_recall": value for name, value in group_recall(recall, train_counts, rule=rule).items()}
    return {
        "accuracy": accuracy(pred, target),
        "balanced_accuracy": recall.nanmean().item(),
        "worst_class_recall": _worst(recall),
        "macro_f1": macro_f1(pred, target, num_classes),
        **groups,
        **{alias: groups[name] for alias, name in GROUP_ALIASES.items()},
        "ece": expected_calibration_error(logits.softmax(1), target, n_bins),
        "nll": F.cross_entropy(logits, target).item(),
    }
