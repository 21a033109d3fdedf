"""Squared error against one-hot targets: what "weighted MSE for classification" can sensibly mean.

``nn.MSELoss`` has no ``weight`` argument (``nn.MSELoss(weight=...)`` raises ``TypeError``). For a
classifier trained by regressing its outputs onto one-hot targets, the sensible meaning of a
per-class weight is the one ``nn.CrossEntropyLoss(weight=...)`` has: each *example* is weighted by
the weight of its true class, applied to the element-wise errors that
``F.mse_loss(..., reduction='none')`` returns, and the weighted mean divides by the total weight.
:class:`OneHotMSELoss` does exactly that.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from helpers.validation import (
    check_class_targets,
    check_class_weight,
    check_reduction,
    float32_under_autocast,
    reduce_loss,
    same_device,
)

__all__ = ["OneHotMSELoss"]


class OneHotMSELoss(nn.Module):
    r"""Mean squared error between outputs and one-hot targets, optionally weighted per class.

    For outputs :math:`x \in \mathbb{R}^{N \times C}` (raw network outputs, not probabilities),
    class-index targets :math:`y_n` and class weights :math:`w \in \mathbb{R}^C_{\ge 0}`:

    .. math::

        \ell_n = w_{y_n} \, \frac{1}{C} \sum_{c=1}^{C} \bigl(x_{n,c} - [c = y_n]\bigr)^2,
        \qquad
        \ell = \begin{cases}
            \sum_n \ell_n \,/\, \sum_n w_{y_n} & \text{reduction='mean'} \\
            \sum_n \ell_n & \text{reduction='sum'}
        \end{cases}

    The weighted mean divides by the total weight of the targets, as ``F.cross_entropy`` does, so
    that without weights (or with equal weights) ``'mean'`` equals ``F.mse_loss(x, one_hot(y))``.

    Args:
        num_classes: :math:`C`.
        weight: per-class weights ``(C,)`` (e.g. inverse class frequencies); None means all ones.
            Stored as a buffer (moves with ``.to()``, saved in ``state_dict``); it must be on the
            input's device (``RuntimeError`` otherwise, as in ``nn.CrossEntropyLoss``).
        reduction: ``'none'`` (per-example losses ``(N,)``), ``'mean'`` or ``'sum'``.

    Shape:
        - input: ``(N, C)`` floating point.
        - target: ``(N,)`` int64 class indices in ``[0, C)``.

    Raises:
        ValueError: on a bad ``reduction``, ``num_classes``, weight length or target range/shape.
        TypeError: on a non-floating input or non-int64 target.
    """

    weight: torch.Tensor | None

    def __init__(
        self, num_classes: int, weight: torch.Tensor | Sequence[float] | None = None, reduction: str = "mean"
    ) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
        self.num_classes = num_classes
        self.reduction = check_reduction(reduction)
        self.register_buffer("weight", check_class_weight(weight, num_classes))

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of outputs ``(N, C)`` against class indices ``(N,)`` (see the class docstring)."""
        num_classes = check_class_targets(input, target)
        if input.dim() != 2 or num_classes != self.num_classes:
            raise ValueError(f"input must have shape (N, {self.num_classes}), got {tuple(input.shape)}")
        input = float32_under_autocast(input)
        one_hot = (torch.arange(num_classes, device=input.device) == target.unsqueeze(1)).to(input.dtype)
        per_example = F.mse_loss(input, one_hot, reduction="none").mean(dim=1)
        if self.weight is None:
            return reduce_loss(per_example, self.reduction)
        w = same_device(self.weight, input, "weight")[target]
        return reduce_loss(w * per_example, self.reduction, weight_sum=w.sum())

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, weighted={self.weight is not None}, reduction={self.reduction!r}"
