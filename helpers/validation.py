"""Argument checks shared by the book's loss functions.

Every check raises ``ValueError`` (bad value or shape) or ``TypeError`` (bad dtype or type) with a
message that names the argument and says what was expected, as ``torch.nn`` losses do.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

REDUCTIONS = ("none", "mean", "sum")


def check_reduction(reduction: str) -> str:
    """Return ``reduction`` if it is one of ``'none'``, ``'mean'``, ``'sum'``; else raise ``ValueError``."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def reduce_loss(loss: torch.Tensor, reduction: str, weight_sum: torch.Tensor | None = None) -> torch.Tensor:
    """Apply ``reduction`` to element-wise losses.

    ``'mean'`` divides the sum by ``weight_sum`` when given (the weighted-mean convention of
    ``F.cross_entropy`` and ``F.nll_loss``: divide by the total weight of the targets), otherwise by
    the number of elements.
    """
    check_reduction(reduction)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if weight_sum is None:
        return loss.mean()
    return loss.sum() / weight_sum


def check_class_targets(
    input: torch.Tensor, target: torch.Tensor, ignore_index: int | None = None, *, input_name: str = "input"
) -> int:
    """Check logits ``(N, C)`` or ``(N, C, d1, ...)`` against class-index targets ``(N)`` or ``(N, d1, ...)``.

    Returns ``C``. Raises ``TypeError`` for a non-floating input or a non-int64 target, and
    ``ValueError`` for mismatched shapes or target values outside ``[0, C)`` (other than
    ``ignore_index``).
    """
    if not torch.is_floating_point(input):
        raise TypeError(f"{input_name} must be a floating-point tensor of logits, got dtype {input.dtype}")
    if input.dim() < 2:
        raise ValueError(f"{input_name} must have shape (N, C) or (N, C, d1, ...), got {tuple(input.shape)}")
    if target.dtype != torch.int64:
        raise TypeError(f"target must be an int64 tensor of class indices, got dtype {target.dtype}")
    expected = (input.shape[0], *input.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(
            f"target must have shape {expected} to match {input_name} of shape {tuple(input.shape)}, "
            f"got {tuple(target.shape)}"
        )
    num_classes = int(input.shape[1])
    valid = target if ignore_index is None else target[target != ignore_index]
    if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= num_classes):
        raise ValueError(
            f"target values must be in [0, {num_classes})"
            + (f" or equal ignore_index={ignore_index}" if ignore_index is not None else "")
            + f", got min {int(valid.min())} and max {int(valid.max())}"
        )
    return num_classes


def check_class_weight(
    weight: torch.Tensor | Sequence[float] | None, num_classes: int | None = None, name: str = "weight"
) -> torch.Tensor | None:
    """Return ``weight`` as a 1-D floating tensor (or None), checking length and non-negativity."""
    if weight is None:
        return None
    w = torch.as_tensor(weight)
    if not torch.is_floating_point(w):
        w = w.to(torch.get_default_dtype())
    if w.dim() != 1:
        raise ValueError(f"{name} must be a 1-D tensor with one entry per class, got shape {tuple(w.shape)}")
    if num_classes is not None and w.numel() != num_classes:
        raise ValueError(f"{name} must have {num_classes} entries (one per class), got {w.numel()}")
    if not torch.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"{name} must be finite and non-negative, got {w.tolist()}")
    return w


def check_class_counts(
    class_counts: torch.Tensor | Sequence[int], num_classes: int | None = None, name: str = "class_counts"
) -> torch.Tensor:
    """Return per-class training counts as a 1-D float64 tensor; every count must be a positive integer."""
    counts = torch.as_tensor(class_counts)
    if counts.dim() != 1 or counts.numel() < 2:
        raise ValueError(
            f"{name} must be a 1-D sequence with one count per class (at least 2), got shape {tuple(counts.shape)}"
        )
    if num_classes is not None and counts.numel() != num_classes:
        raise ValueError(f"{name} must have {num_classes} entries, got {counts.numel()}")
    counts = counts.to(torch.float64)
    if not torch.isfinite(counts).all() or (counts <= 0).any() or (counts != counts.round()).any():
        raise ValueError(
            f"{name} must be positive integers (a class with zero examples has no prior), got {counts.tolist()}"
        )
    return counts
