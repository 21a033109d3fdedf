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

Head / medium / tail groups are defined by *training* counts (see :func:`class_groups`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from helpers.validation import check_class_counts

GROUPS = ("head", "medium", "tail")


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


def class_groups(
    train_counts: torch.Tensor | Sequence[int], thresholds: tuple[float, float] | None = None
) -> dict[str, list[int]]:
    r"""Split classes into head / medium / tail by their *training* counts.

    Default rule (relative, works for any dataset size): place each class on the log-count range,
    :math:`r_c = \log(n_{max}/n_c) / \log(n_{max}/n_{min}) \in [0, 1]`; head if :math:`r_c < 0.3`, tail
    if :math:`r_c > 0.7`, medium otherwise. For the exponential profile with 10 classes this gives
    3 head, 4 medium and 3 tail classes at any imbalance ratio (for CIFAR-10-LT at ratio 100: more
    than 1500, 200 to 1500, fewer than 200 images), and the boundaries fall between classes, not on
    them; for the step profile, the two halves are head and tail and medium is empty. With equal
    counts every class is head.

    ``thresholds=(few, many)`` uses absolute counts instead, as Liu et al. (2019) for ImageNet-LT
    (``(20, 100)``): head if :math:`n_c > \text{many}`, tail if :math:`n_c < \text{few}`, medium otherwise.

    Returns:
        ``{"head": [...], "medium": [...], "tail": [...]}``, class indices in increasing order.
    """
    counts = check_class_counts(train_counts, name="train_counts")
    if thresholds is not None:
        few, many = (float(t) for t in thresholds)
        if not few <= many:
            raise ValueError(f"thresholds must be (few, many) with few <= many, got {thresholds}")
        head, tail = counts > many, counts < few
    else:
        spread = math.log(counts.max().item() / counts.min().item())
        position = (counts.max() / counts).log() / spread if spread > 0 else torch.zeros_like(counts)
        head, tail = position < 0.3, position > 0.7
    medium = ~head & ~tail
    return {name: mask.nonzero().flatten().tolist() for name, mask in zip(GROUPS, (head, medium, tail), strict=True)}


def group_recall(
    recall: torch.Tensor, train_counts: torch.Tensor | Sequence[int], thresholds: tuple[float, float] | None = None
) -> dict[str, float]:
    """Mean recall of the head, medium and tail classes (:func:`class_groups`); ``NaN`` for an empty group.

    Args:
        recall: per-class recall ``(C,)`` (e.g. :func:`per_class_recall`); NaN entries are skipped.
        train_counts: training examples per class, ``C`` positive integers.
        thresholds: see :func:`class_groups`.
    """
    recall = torch.as_tensor(recall, dtype=torch.float64).cpu()
    groups = class_groups(train_counts, thresholds)
    if recall.dim() != 1 or recall.numel() != sum(len(g) for g in groups.values()):
        raise ValueError(f"recall must have shape ({len(torch.as_tensor(train_counts))},), got {tuple(recall.shape)}")
    return {name: recall[idx].nanmean().item() if idx else math.nan for name, idx in groups.items()}


def classification_report(
    logits: torch.Tensor, target: torch.Tensor, train_counts: torch.Tensor | Sequence[int], n_bins: int = 15
) -> dict[str, float]:
    """All scalar metrics of a model's ``logits`` ``(N, C)`` on ``target`` ``(N,)``.

    Keys: ``accuracy``, ``balanced_accuracy``, ``worst_class_recall``, ``macro_f1``, ``head_recall``,
    ``medium_recall``, ``tail_recall`` (groups by ``train_counts``, see :func:`class_groups`), ``ece``
    (of the softmax probabilities) and ``nll`` (mean cross-entropy).
    """
    num_classes = len(check_class_counts(train_counts, name="train_counts"))
    if not isinstance(logits, torch.Tensor) or not torch.is_floating_point(logits):
        raise TypeError("logits must be a floating tensor of shape (N, C)")
    logits = logits.float()
    pred, target, _ = _prepare(logits, target, num_classes)
    recall = per_class_recall(pred, target, num_classes)
    groups = group_recall(recall, train_counts)
    return {
        "accuracy": accuracy(pred, target),
        "balanced_accuracy": recall.nanmean().item(),
        "worst_class_recall": _worst(recall),
        "macro_f1": macro_f1(pred, target, num_classes),
        **{f"{name}_recall": value for name, value in groups.items()},
        "ece": expected_calibration_error(logits.softmax(1), target, n_bins),
        "nll": F.cross_entropy(logits, target).item(),
    }
