r"""Cross-entropy normalised over a whole optimizer step: gradient accumulation and data parallelism.

``F.cross_entropy(..., reduction='mean')`` divides the summed loss of a batch by its own
*denominator*: the number of counted targets (those not equal to ``ignore_index``) or, with class
weights :math:`w`, the total weight of the counted targets. For one optimizer step made of
micro-batches :math:`j = 1..k` (gradient accumulation) spread over ``world_size`` data-parallel
workers, with :math:`S_j` the summed loss and :math:`D_j` the denominator of micro-batch :math:`j`,
the loss of the big batch is

.. math::
    L = \frac{\sum_j S_j}{\sum_j D_j}
    \;\neq\; \frac{1}{k} \sum_j \frac{S_j}{D_j} \quad\text{(unless every } D_j \text{ is equal)}.

The denominator depends only on the targets, so it is known before any forward pass:
:func:`mean_denominator` computes :math:`D` for a set of targets (sum it over the micro-batches and
all-reduce it over the workers), and :func:`step_cross_entropy` returns the share
:math:`S_j / D` of one micro-batch, multiplied by ``world_size`` because data-parallel training
(``DistributedDataParallel``) *averages* the gradients of the workers. Backpropagating every share
and averaging over workers gives exactly the gradient of :math:`L`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

from helpers.validation import check_class_targets, check_values

__all__ = ["mean_denominator", "step_cross_entropy"]


def mean_denominator(
    targets: Tensor | Iterable[Tensor], ignore_index: int = -100, weight: Tensor | None = None
) -> Tensor:
    r"""The denominator of ``F.cross_entropy``'s ``'mean'`` over one or several target tensors.

    .. math::
        D = \sum_{i:\, y_i \neq \text{ignore\_index}} w_{y_i}
        \qquad (w_{y_i} = 1 \text{ without class weights}),

    summed over every tensor in ``targets`` (e.g. the micro-batches of one optimizer step).

    Args:
        targets: an int64 tensor of class indices of any shape, or an iterable of them.
        ignore_index: the target value that is not counted (``F.cross_entropy``'s default, -100).
        weight: optional class weights of shape ``(C,)``.

    Returns:
        A 0-dim tensor: an int64 count without weights, the total weight (weight's dtype) with them.

    Raises:
        TypeError: a target is not int64, or ``weight`` is not a floating-point tensor.
        ValueError: ``targets`` is empty, ``weight`` is not 1-D, or a value check fails: a counted target
            negative or (with ``weight``) not below ``C``, a negative or non-finite weight. Value checks
            go through :func:`helpers.validation.check_values`: a ``ValueError`` in eager mode on the
            CPU, a device-side assertion elsewhere, so counting never waits for a GPU (no host sync;
            ``weight`` must be on the targets' device).
    """
    tensors = [targets] if isinstance(targets, Tensor) else list(targets)
    if not tensors:
        raise ValueError("targets must hold at least one tensor of class indices")
    w = _check_weight(weight)
    total: Tensor | None = None
    for i, target in enumerate(tensors):
        if not isinstance(target, Tensor) or target.dtype != torch.int64:
            got = target.dtype if isinstance(target, Tensor) else type(target).__name__
            raise TypeError(f"targets[{i}] must be an int64 tensor of class indices, got {got}")
        counted = target != ignore_index
        check_values(
            (target >= 0) | ~counted,
            f"targets[{i}] holds a value that is neither a class nor ignore_index={ignore_index}",
        )
        if w is None:
            part = counted.sum()
        else:
            num_classes = w.shape[0]
            check_values(
                (target < num_classes) | ~counted,
                f"targets[{i}] holds a class >= {num_classes}, the number of classes of weight",
            )
            # ignored targets read class 0's weight and are multiplied by 0: no boolean-mask indexing
            part = (w[torch.where(counted, target, 0)] * counted).sum()
        total = part if total is None else total + part
    assert total is not None
    return total


def _check_weight(weight: Tensor | None, num_classes: int | None = None) -> Tensor | None:
    """Class weights as a 1-D floating tensor, checked without a host sync (:func:`check_values`)."""
    if weight is None:
        return None
    if not isinstance(weight, Tensor) or not torch.is_floating_point(weight):
        got = weight.dtype if isinstance(weight, Tensor) else type(weight).__name__
        raise TypeError(f"weight must be a floating-point tensor of class weights, got {got}")
    if weight.dim() != 1 or (num_classes is not None and weight.numel() != num_classes):
        expected = f"({num_classes},)" if num_classes is not None else "(C,)"
        raise ValueError(f"weight must have shape {expected}, one entry per class, got {tuple(weight.shape)}")
    check_values(torch.isfinite(weight) & (weight >= 0), "weight must be finite and non-negative")
    return weight


def step_cross_entropy(
    input: Tensor,
    target: Tensor,
    denominator: Tensor | float,
    ignore_index: int = -100,
    weight: Tensor | None = None,
    world_size: int = 1,
) -> Tensor:
    r"""One micro-batch's share of the cross-entropy of a whole optimizer step.

    .. math::
        \ell_j = \text{world\_size} \cdot \frac{S_j}{D}, \qquad
        S_j = \texttt{F.cross\_entropy(input, target, reduction='sum')},

    where :math:`D` is the step's global :func:`mean_denominator` (over every micro-batch of every
    worker). Summing :math:`\ell_j` over the micro-batches of every worker and dividing by
    ``world_size`` (what data-parallel gradient averaging does) gives the step's mean loss, and
    the same holds for the gradients.

    Args:
        input: logits ``(N, C)`` or ``(N, C, d1, ...)`` (e.g. ``(batch, vocabulary, sequence)``).
        target: int64 class indices ``(N)`` or ``(N, d1, ...)``; ``ignore_index`` marks padding.
        denominator: the global :func:`mean_denominator`, positive.
        ignore_index: the target value that contributes nothing.
        weight: optional class weights ``(C,)``, the same as those given to :func:`mean_denominator`.
        world_size: number of data-parallel workers whose gradients are averaged (1 without data parallelism).

    Returns:
        A 0-dim tensor in ``input``'s dtype.

    Raises:
        TypeError: non-floating ``input``, non-int64 ``target`` or non-floating ``weight``.
        ValueError: mismatched shapes, a bad ``world_size``, a non-scalar or non-positive
            ``denominator``, targets out of range. Checks of tensor values (targets, a tensor
            ``denominator``, ``weight``) go through :func:`helpers.validation.check_values`, so the
            function never waits for a GPU: keep ``denominator`` on ``input``'s device (where
            :func:`mean_denominator` and an all-reduce leave it) or as a 0-dim CPU tensor, and
            ``weight`` on ``input``'s device.
    """
    num_classes = check_class_targets(input, target, ignore_index)
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a positive int, got {world_size!r}")
    if isinstance(denominator, Tensor):
        if denominator.numel() != 1:
            raise ValueError(
                f"denominator must be a scalar (the global mean_denominator), got shape {tuple(denominator.shape)}"
            )
        # a 0-dim CPU tensor combines with a tensor on any device without a copy to that device; at
        # least float32, so a float16 count above 65,504 does not become inf and bf16 does not round it
        d = denominator.reshape(()).to(dtype=torch.promote_types(input.dtype, torch.float32))
        check_values(d > 0, "denominator must be positive (the global mean_denominator)")
    elif isinstance(denominator, bool) or not isinstance(denominator, (int, float)) or not denominator > 0:
        raise ValueError(f"denominator must be a positive scalar (the global mean_denominator), got {denominator!r}")
    else:
        d = float(denominator)
    w = _check_weight(weight, num_classes)
    if w is not None:
        w = w.to(dtype=input.dtype)  # not to input's device: a copy from the host would wait for the device
    summed = F.cross_entropy(input, target, weight=w, ignore_index=ignore_index, reduction="sum")
    return (summed * (world_size / d)).to(summed.dtype)
