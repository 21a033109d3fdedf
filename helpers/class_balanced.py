r"""Cui et al.'s class-balanced focal loss and Cao et al.'s class-balanced resampling, as the papers define them.

Both baselines use the *effective number* of samples of Cui et al. (2019) {cite}`cui2019classbalanced`,
:math:`E_{n} = (1 - \beta^{n}) / (1 - \beta)`, with :math:`\beta = 0.9999` on CIFAR.

**CB Focal** (Cui et al., Sec. 4 and their public code) is a *sigmoid* focal loss: each of the ``C``
logits is an independent binary classifier ("is it class c?"), the focal factor of Lin et al. multiplies
each binary cross-entropy, every term of an example is weighted by the class-balanced weight
:math:`w_{y}` of the example's label, and the sum is divided by the number of positive labels (one per
example, so by the batch size ``N``):

.. math::

    p_{ic} = \sigma(z_{ic}), \quad t_{ic} = [c = y_i], \quad
    p^t_{ic} = t_{ic} p_{ic} + (1 - t_{ic})(1 - p_{ic}), \qquad
    \mathcal{L} = \frac{1}{N} \sum_{i=1}^{N} w_{y_i} \sum_{c=1}^{C} -(1 - p^t_{ic})^{\gamma} \log p^t_{ic},

with :math:`w_c = C \, E_{n_c}^{-1} / \sum_k E_{n_k}^{-1}` (:func:`helpers.losses.class_balanced_weights`).
The last layer's bias starts at :math:`b = -\log((1 - \pi) / \pi)` with the prior :math:`\pi = 1/C`,
i.e. :math:`-\log(C - 1)` (:func:`init_prior_bias`), so that every sigmoid starts near :math:`1/C`
instead of 1/2 and the ``C - 1`` negative terms do not swamp the first steps. This is NOT
``FocalLoss(alpha=cb_weights)`` (:class:`helpers.losses.FocalLoss`), which is a softmax focal loss: the
softmax couples the classes, the sigmoid does not. The building block is the log-space focal term of
:class:`helpers.custom_losses.SigmoidFocalLoss` without ``alpha``
(:func:`helpers.custom_losses.sigmoid_focal_terms`): the values of
:func:`torchvision.ops.sigmoid_focal_loss` with ``alpha=-1``, but finite gradients at saturated logits
for :math:`\gamma < 1`, where torchvision's are NaN.

**CB RS** (Cao et al. 2019 {cite}`cao2019ldam`, Table 2, implemented in their public code) draws training
examples with replacement, an example of class ``c`` with probability proportional to
:math:`(1 - \beta) / (1 - \beta^{n_c}) = 1 / E_{n_c}`. A *class* is therefore drawn in proportion to
:math:`n_c / E_{n_c}`: on CIFAR-10-LT (5000 ... 50 images, ratio 100, :math:`\beta = 0.9999`) from 0.119
for the head class to 0.094 for the tail, nearly but not exactly uniform. :func:`effective_number_sampling`
gives the per-example weights (for :class:`helpers.train.TrainConfig.sampling_weights`) and
:func:`class_sampling_probabilities` the class shares.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from helpers.custom_losses import sigmoid_focal_terms
from helpers.losses import class_balanced_weights
from helpers.validation import (
    check_class_counts,
    check_reduction,
    check_values,
    float32_under_autocast,
    same_device,
)

__all__ = [
    "ClassBalancedSigmoidFocalLoss",
    "class_sampling_probabilities",
    "effective_number_sampling",
    "init_prior_bias",
]

Counts = torch.Tensor | Sequence[int]


def _check_beta(beta: float) -> float:
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0.0 <= float(beta) < 1.0:
        raise ValueError(f"beta must be a number in [0, 1), got {beta!r}")
    return float(beta)


def effective_number_sampling(class_counts: Counts, beta: float = 0.9999) -> torch.Tensor:
    r"""Per-example sampling weights of CB RS: :math:`w_c = (1 - \beta) / (1 - \beta^{n_c})`, ``float64`` ``(C,)``.

    An example of class ``c`` is drawn with probability proportional to :math:`w_c`. ``beta = 0`` gives
    1 for every class (plain sampling with replacement, classes in proportion to their counts);
    :math:`\beta \to 1` tends to :math:`1 / n_c` (class-balanced, every class equally likely).
    :math:`1 - \beta^{n}` is computed as ``-expm1(n log beta)`` for precision near 1.
    """
    counts = check_class_counts(class_counts, name="class_counts")
    beta = _check_beta(beta)
    if beta == 0.0:
        return torch.ones_like(counts)
    return (1.0 - beta) / -torch.expm1(counts * math.log(beta))


def class_sampling_probabilities(class_counts: Counts, beta: float = 0.9999) -> torch.Tensor:
    r"""Probability that a CB RS draw is of class ``c``: :math:`n_c w_c / \sum_k n_k w_k`, ``float64`` ``(C,)``."""
    counts = check_class_counts(class_counts, name="class_counts")
    share = counts * effective_number_sampling(counts, beta)
    return share / share.sum()


def init_prior_bias(model: nn.Module, prior: float | None = None) -> nn.Module:
    r"""Set the bias of the model's last :class:`nn.Linear` so every output starts at :math:`-\log((1-\pi)/\pi)`.

    Cui et al. initialise the last layer's bias this way for their sigmoid losses, with :math:`\pi = 1/C`
    by default here (:math:`-\log(C-1)`). When the model multiplies its logits by a constant
    ``model.logit_scale`` (e.g. :class:`helpers.cifar.FastNet`), the bias is divided by it so that the
    *output* bias is the prior's. Returns the model (changed in place).

    Raises:
        ValueError: if the model has no ``nn.Linear`` with a bias, or ``prior`` is not in (0, 1).
    """
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    if last is None or last.bias is None:
        raise ValueError("init_prior_bias needs a model whose last layer is an nn.Linear with a bias")
    num_classes = last.out_features
    pi = 1.0 / num_classes if prior is None else float(prior)
    if not 0.0 < pi < 1.0:
        raise ValueError(f"prior must be in (0, 1), got {prior!r}")
    scale = float(getattr(model, "logit_scale", 1.0))
    with torch.no_grad():
        last.bias.fill_(-math.log((1.0 - pi) / pi) / scale)
    return model


class ClassBalancedSigmoidFocalLoss(nn.Module):
    r"""Cui et al.'s class-balanced sigmoid focal loss ("CB Focal"), formula in the module docstring.

    Args:
        class_counts: training examples per class (``C`` positive integers).
        beta: effective-number :math:`\beta \in [0, 1)` (the paper: 0.9999 on CIFAR-10).
        gamma: focal exponent :math:`\gamma \ge 0` (the paper's best on CIFAR-10-LT: 1.0; 0 gives the
            class-balanced sigmoid cross-entropy).
        reduction: ``'none'`` (per-example loss :math:`w_{y_i} \sum_c \mathrm{FL}_{ic}`, shape ``(N,)``),
            ``'sum'``, or ``'mean'``: the sum divided by the number of positive labels, which for
            single-label data is ``N``. This is the paper's normalisation; it is *not* the division by
            the summed weights that a weighted ``F.cross_entropy`` does. An empty batch gives 0/0 =
            NaN, as torch's losses do.

    Shapes: ``input`` ``(N, C)`` floating logits, ``target`` ``(N,)`` int64 in ``[0, C)``. The weights
    are the registered buffer ``weight``: on the input's device (``RuntimeError`` otherwise, as in
    ``nn.CrossEntropyLoss``), cast to its dtype. Errors: ``TypeError`` for a dtype (non-floating
    input, non-int64 target), ``ValueError`` for a shape or value. Under autocast 16-bit logits give
    a float32 loss.
    """

    def __init__(self, class_counts: Counts, beta: float = 0.9999, gamma: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not math.isfinite(gamma) or gamma < 0:
            raise ValueError(f"gamma must be a finite number >= 0, got {gamma!r}")
        self.beta, self.gamma = _check_beta(beta), float(gamma)
        self.reduction = check_reduction(reduction)
        self.register_buffer("weight", class_balanced_weights(class_counts, self.beta))

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not isinstance(input, torch.Tensor) or not torch.is_floating_point(input):
            raise TypeError(f"input must be a floating-point tensor of logits, got {getattr(input, 'dtype', input)}")
        if input.dim() != 2:
            raise ValueError(f"input must be logits of shape (N, C), got {tuple(input.shape)}")
        num_classes = self.weight.numel()
        if input.shape[1] != num_classes:
            raise ValueError(f"input has {input.shape[1]} classes but class_counts has {num_classes}")
        if not isinstance(target, torch.Tensor) or target.dtype != torch.int64:
            got = getattr(target, "dtype", type(target).__name__)
            raise TypeError(f"target must be an int64 tensor of class indices, got {got}")
        if target.shape != input.shape[:1]:
            raise ValueError(f"target must have shape ({input.shape[0]},) to match input, got {tuple(target.shape)}")
        # ValueError on the CPU; a device-side assert on CUDA and under torch.compile (no host sync).
        check_values(
            (target >= 0) & (target < num_classes),
            f"target must be in [0, {num_classes})",
            lambda: f", got values from {int(target.min())} to {int(target.max())}",
        )
        input = float32_under_autocast(input)
        weight = same_device(self.weight, input, "weight")
        onehot = (torch.arange(num_classes, device=input.device) == target.unsqueeze(1)).to(input.dtype)
        # torchvision's sigmoid_focal_loss(alpha=-1) gives the same values, but NaN gradients at saturated
        # logits for gamma < 1; the log-space terms of helpers.custom_losses.SigmoidFocalLoss do not.
        terms = sigmoid_focal_terms(input, onehot, self.gamma)
        per_example = weight[target] * terms.sum(1)
        if self.reduction == "none":
            return per_example
        total = per_example.sum()
        return total if self.reduction == "sum" else total / target.shape[0]  # empty batch: 0/0 = NaN

    def extra_repr(self) -> str:
        return f"beta={self.beta}, gamma={self.gamma}, reduction={self.reduction!r}"
