"""Custom loss modules that behave like ``torch.nn``'s own (chapter 6).

Each class follows the conventions of :mod:`torch.nn` losses: ``reduction`` in
``{'none', 'mean', 'sum'}``, a weighted ``'mean'`` divides by the total weight (as
``F.cross_entropy`` does), weights are registered buffers (so ``.to()`` and ``state_dict`` work),
dtype and device follow the input, and bad arguments raise ``ValueError``/``TypeError`` naming the
argument and the expected shape or dtype. A buffer on another device than the input raises
``RuntimeError`` (as ``nn.CrossEntropyLoss`` does), and under autocast a 16-bit input gives a
float32 loss computed in float32 (:func:`helpers.validation.float32_under_autocast`). ``forward``
reads no tensor value on the host: value checks (targets in range, probabilities in ``[0, 1]``) go
through :func:`helpers.validation.check_values`, a ``ValueError`` in eager mode on the CPU and a
device-side assertion elsewhere, so a loss neither synchronises with a GPU nor breaks
``torch.compile(fullgraph=True)``; under ``torch.func`` transforms (``vmap(grad(...))``) the value
checks step aside and the losses work.

* :class:`SigmoidFocalLoss` -- the binary/multi-label focal loss of RetinaNet; equal to
  :func:`torchvision.ops.sigmoid_focal_loss` up to rounding, with the modulating factor computed in
  log space so that ``gamma < 1`` keeps finite gradients at saturated logits.
* :class:`LabelSmoothingCrossEntropy` -- equal to ``F.cross_entropy(..., label_smoothing=eps)``,
  including class weights and ``ignore_index``; written out so that each term is visible.
* :class:`SoftDiceLoss` -- soft Dice on probabilities for segmentation-shaped inputs.
* :class:`UncertaintyWeightedLoss` -- Kendall et al. (2018) multi-task weighting with learnable
  log-variances.

The softmax multi-class focal loss is :class:`helpers.losses.FocalLoss`; its fast version is in
:mod:`helpers.fast_focal`.
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
    check_values,
    check_weight_length,
    float32_under_autocast,
    reduce_loss,
    same_device,
)

__all__ = [
    "LabelSmoothingCrossEntropy",
    "SigmoidFocalLoss",
    "SoftDiceLoss",
    "UncertaintyWeightedLoss",
    "sigmoid_focal_terms",
]


def sigmoid_focal_terms(input: torch.Tensor, target: torch.Tensor, gamma: float) -> torch.Tensor:
    r"""Elementwise :math:`(1 - p_t)^\gamma \cdot \mathrm{BCE}(x, t)` without ``alpha``, computed in log space.

    ``input`` logits and ``target`` values in ``[0, 1]``: same shape and dtype, not checked here (the
    callers check them). :math:`(1 - p_t)^\gamma = \exp(\gamma \log(1 - p_t))` with
    :math:`\log(1 - p_t) = \operatorname{logaddexp}(\log\sigma(x) + \log(1 - t), \log\sigma(-x) + \log t)`,
    so values and first and second derivatives are finite where :math:`p_t` rounds to 1, for any
    :math:`\gamma \ge 0`.
    """
    loss = F.binary_cross_entropy_with_logits(input, target, reduction="none")
    if gamma == 0:
        return loss
    # log(1 - p_t) = log(p (1 - t) + (1 - p) t), without forming 1 - p_t by subtraction. Hard
    # targets take their one term directly: log(0) = -inf inside logaddexp makes its second
    # derivative NaN.
    log_p, log_not_p = F.logsigmoid(input), F.logsigmoid(-input)
    soft = (target > 0) & (target < 1)
    t = torch.where(soft, target, torch.full_like(target, 0.5))
    log_one_minus_pt = torch.where(
        soft,
        torch.logaddexp(log_p + torch.log1p(-t), log_not_p + torch.log(t)),
        torch.where(target == 1, log_not_p, log_p),
    )
    return loss * torch.exp(gamma * log_one_minus_pt)


def _check_nonnegative(value: float, name: str) -> float:
    """Return ``value`` as a float if it is a finite number >= 0, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _class_weight_view(weight: torch.Tensor, input: torch.Tensor) -> torch.Tensor:
    """Reshape per-class ``weight`` (C,) to broadcast against ``input`` (N, C, d1, ...), in its dtype."""
    return same_device(weight, input, "weight").view(1, -1, *([1] * (input.dim() - 2)))


class SigmoidFocalLoss(nn.Module):
    r"""Sigmoid focal loss (Lin et al., 2017), the RetinaNet loss for binary and multi-label targets.

    For logits :math:`x` and targets :math:`t \in [0, 1]` of the same shape, with
    :math:`p = \sigma(x)` and :math:`p_t = p\,t + (1 - p)(1 - t)`,

    .. math::
        \ell = \alpha_t\,(1 - p_t)^{\gamma}\,\operatorname{BCE}(x, t), \qquad
        \alpha_t = \alpha\,t + (1 - \alpha)(1 - t),

    element-wise, then reduced. ``alpha = -1`` (or ``None``) drops :math:`\alpha_t`. This is the
    formula of :func:`torchvision.ops.sigmoid_focal_loss` and the values and gradients agree with it
    to rounding for every reduction. The difference is numerical: the modulating factor is computed
    as :math:`\exp(\gamma \log(1 - p_t))` with
    :math:`\log(1 - p_t) = \operatorname{logaddexp}(\log\sigma(x) + \log(1 - t), \log\sigma(-x) + \log t)`,
    which never forms :math:`1 - p_t` by cancellation. So ``gamma < 1`` has finite gradients where
    :math:`p_t` rounds to 1 (torchvision's returns NaN there), and confident examples keep their
    tiny but non-zero loss in float32.

    Args:
        alpha: weight of the positive class in ``[0, 1]``, or ``-1``/``None`` for no weighting.
        gamma: focusing parameter :math:`\gamma \ge 0`; ``gamma = 0`` gives (alpha-weighted) BCE.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. ``'mean'`` averages over all elements, as
            torchvision does. (torchvision's function defaults to ``'none'``; this module, like
            ``nn.BCEWithLogitsLoss``, defaults to ``'mean'``.)

    Shape:
        input: any shape ``(*)`` of logits. target: the same shape, floating, values in ``[0, 1]``.
        Output: scalar, or ``(*)`` for ``reduction='none'``.

    Gradients flow to ``input``; ``target`` is treated as data (it is detached, so a target that
    requires grad, e.g. a teacher's output, gets no gradient from this loss; the log-space factor
    would give NaN for the derivative at hard 0/1 targets).
    """

    def __init__(self, alpha: float | None = 0.25, gamma: float = 2.0, reduction: str = "mean") -> None:
        super().__init__()
        if alpha is not None and not (isinstance(alpha, (int, float)) and (0 <= alpha <= 1 or alpha == -1)):
            raise ValueError(f"alpha must be in [0, 1], or -1 / None for no weighting, got {alpha!r}")
        self.alpha = None if alpha is None or alpha == -1 else float(alpha)
        self.gamma = _check_nonnegative(gamma, "gamma")
        self.reduction = check_reduction(reduction)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the focal loss of logits ``input`` against targets ``target`` (same shape)."""
        if not torch.is_floating_point(input):
            raise TypeError(f"input must be a floating-point tensor of logits, got dtype {input.dtype}")
        if not torch.is_floating_point(target):
            raise TypeError(
                f"target must be a floating-point tensor of 0/1 (or soft) labels, got dtype {target.dtype}; "
                "use target.float()"
            )
        if target.shape != input.shape:
            raise ValueError(f"target must have the shape of input {tuple(input.shape)}, got {tuple(target.shape)}")
        check_values(
            (target >= 0) & (target <= 1),
            "target values must be in [0, 1]",
            lambda: f", got min {target.min():g} and max {target.max():g}",
        )
        input = float32_under_autocast(input)
        target = target.detach().to(input.dtype)
        loss = sigmoid_focal_terms(input, target, self.gamma)
        if self.alpha is not None:
            loss = (self.alpha * target + (1 - self.alpha) * (1 - target)) * loss
        return reduce_loss(loss, self.reduction)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, gamma={self.gamma}, reduction={self.reduction!r}"


class LabelSmoothingCrossEntropy(nn.Module):
    r"""Cross-entropy with label smoothing (Szegedy et al., 2016), written out term by term.

    With :math:`\log p = \operatorname{log\_softmax}(x)` over the class dimension, smoothing
    :math:`\varepsilon`, :math:`C` classes and class weights :math:`w` (all ones by default), the loss
    of one (non-ignored) example with label :math:`y` is

    .. math::
        \ell = (1 - \varepsilon)\,\bigl(-w_y \log p_y\bigr)
             + \frac{\varepsilon}{C} \sum_{c=1}^{C} \bigl(-w_c \log p_c\bigr),

    and examples whose target equals ``ignore_index`` contribute 0. ``'mean'`` divides the sum by
    :math:`\sum_i w_{y_i}` over the non-ignored examples (their number when unweighted). This is
    exactly what ``F.cross_entropy(input, target, weight, ignore_index=..., label_smoothing=eps)``
    computes (values and gradients agree to rounding). Note the weighted smoothing term: every class
    :math:`c` is weighted by :math:`w_c`, not by the label's weight, and the normaliser stays
    :math:`\sum_i w_{y_i}`.

    Args:
        label_smoothing: :math:`\varepsilon \in [0, 1]`; 0 gives plain cross-entropy.
        weight: optional per-class weights ``(C,)``, stored as a buffer.
        ignore_index: target value that contributes neither loss nor weight.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``.

    Shape:
        input: ``(N, C)`` or ``(N, C, d1, ...)`` logits. target: ``(N)`` or ``(N, d1, ...)`` int64.
        Output: scalar, or the target's shape for ``reduction='none'``.
    """

    weight: torch.Tensor | None

    def __init__(
        self,
        label_smoothing: float = 0.1,
        weight: torch.Tensor | Sequence[float] | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if (
            isinstance(label_smoothing, bool)
            or not isinstance(label_smoothing, (int, float))
            or not (0.0 <= label_smoothing <= 1.0)
        ):
            raise ValueError(f"label_smoothing must be a number in [0, 1], got {label_smoothing!r}")
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise TypeError(f"ignore_index must be an int, got {ignore_index!r}")
        self.label_smoothing = float(label_smoothing)
        self.ignore_index = ignore_index
        self.reduction = check_reduction(reduction)
        self.register_buffer("weight", check_class_weight(weight))

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the label-smoothed cross-entropy of logits ``input`` against class indices ``target``."""
        num_classes = check_class_targets(input, target, self.ignore_index)
        check_weight_length(self.weight, num_classes)
        input = float32_under_autocast(input)
        log_p = F.log_softmax(input, dim=1)
        valid = target != self.ignore_index
        safe_target = target.masked_fill(~valid, 0).unsqueeze(1)
        nll = -log_p.gather(1, safe_target).squeeze(1)
        if self.weight is None:
            smooth = -log_p.sum(dim=1)
            target_weight = valid.to(input.dtype)
        else:
            w = _class_weight_view(self.weight, input)
            smooth = -(log_p * w).sum(dim=1)
            target_weight = w.expand_as(input).gather(1, safe_target).squeeze(1) * valid
        nll = nll * target_weight
        smooth = smooth.masked_fill(~valid, 0.0)
        loss = (1.0 - self.label_smoothing) * nll + (self.label_smoothing / num_classes) * smooth
        return reduce_loss(loss, self.reduction, weight_sum=target_weight.sum())

    def extra_repr(self) -> str:
        return (
            f"label_smoothing={self.label_smoothing}, ignore_index={self.ignore_index}, "
            f"reduction={self.reduction!r}, weighted={self.weight is not None}"
        )


class SoftDiceLoss(nn.Module):
    r"""Soft Dice loss (Milletari et al., 2016) on class probabilities, for segmentation.

    For probabilities :math:`p_{n,c,i}` and one-hot (or soft) targets :math:`g_{n,c,i}` over the
    spatial positions :math:`i`, each image :math:`n` and class :math:`c` get

    .. math::
        \ell_{n,c} = 1 - \frac{2 \sum_i p_{n,c,i}\, g_{n,c,i} + s}{\sum_i p_{n,c,i} + \sum_i g_{n,c,i} + s},

    with a smoothing constant :math:`s` that makes a class absent from both prediction and target
    score a perfect 0. With ``batch_dice=True`` the sums also run over the batch (one value per
    class, the "global" Dice). Optional class weights :math:`w_c` multiply :math:`\ell_{n,c}`, and
    ``'mean'`` then divides by the total weight (:math:`N \sum_c w_c`), the weighted-mean convention.

    The input must be **probabilities** (after softmax or sigmoid), not logits and not an argmax:
    the Dice of hard argmax predictions is piecewise constant in the logits and has no gradient.

    Args:
        smooth: :math:`s \ge 0`.
        weight: optional per-class weights ``(C,)``, stored as a buffer.
        ignore_index: with class-index targets, positions with this label are left out of every sum.
        batch_dice: sum over the batch too and return one value per class.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``.

    Shape:
        input: ``(N, C, d1, ...)`` probabilities in ``[0, 1]`` (e.g. ``(N, C, H, W)``).
        target: ``(N, d1, ...)`` int64 class indices, or a floating tensor of ``input``'s shape.
        Output: scalar; for ``reduction='none'``, ``(N, C)`` (or ``(C,)`` with ``batch_dice``).
    """

    weight: torch.Tensor | None

    def __init__(
        self,
        smooth: float = 1.0,
        weight: torch.Tensor | Sequence[float] | None = None,
        ignore_index: int | None = None,
        batch_dice: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.smooth = _check_nonnegative(smooth, "smooth")
        self.ignore_index = ignore_index
        self.batch_dice = bool(batch_dice)
        self.reduction = check_reduction(reduction)
        self.register_buffer("weight", check_class_weight(weight))

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the soft Dice loss of probabilities ``input`` against ``target``."""
        if not torch.is_floating_point(input):
            raise TypeError(f"input must be a floating-point tensor of probabilities, got dtype {input.dtype}")
        if input.dim() < 3:
            raise ValueError(f"input must have shape (N, C, d1, ...), e.g. (N, C, H, W), got {tuple(input.shape)}")
        check_values(
            (input >= 0) & (input <= 1),
            "input must hold probabilities in [0, 1] (apply softmax or sigmoid to logits first)",
            lambda: f", got min {input.min():g} and max {input.max():g}",
        )
        input = float32_under_autocast(input)
        num_classes = input.shape[1]
        mask = None
        if torch.is_floating_point(target):
            if target.shape != input.shape:
                raise ValueError(
                    f"a floating target must have the shape of input {tuple(input.shape)}, got {tuple(target.shape)}"
                )
            onehot = target.to(input.dtype)
        else:
            check_class_targets(input, target, self.ignore_index, input_name="input")
            if self.ignore_index is not None:
                mask = (target != self.ignore_index).unsqueeze(1).to(input.dtype)
                target = target.masked_fill(mask.squeeze(1) == 0, 0)
            classes = torch.arange(num_classes, device=input.device).view(1, -1, *([1] * (input.dim() - 2)))
            onehot = (classes == target.unsqueeze(1)).to(input.dtype)  # F.one_hot reads values (a sync)
        probs = input if mask is None else input * mask
        onehot = onehot if mask is None else onehot * mask
        dims = tuple(range(2, input.dim()))
        if self.batch_dice:
            dims = (0, *dims)
        intersection = (probs * onehot).sum(dims)
        denominator = probs.sum(dims) + onehot.sum(dims)
        loss = 1.0 - (2.0 * intersection + self.smooth) / (denominator + self.smooth)
        if self.weight is None:
            return reduce_loss(loss, self.reduction)
        check_weight_length(self.weight, num_classes)
        w = same_device(self.weight, loss, "weight")
        rows = 1 if self.batch_dice else loss.shape[0]
        return reduce_loss(loss * w, self.reduction, weight_sum=w.sum() * rows)

    def extra_repr(self) -> str:
        return f"smooth={self.smooth}, batch_dice={self.batch_dice}, reduction={self.reduction!r}"


TASK_SCALES = {"classification": 1.0, "regression": 0.5}


class UncertaintyWeightedLoss(nn.Module):
    r"""Multi-task loss weighted by learned homoscedastic uncertainty (Kendall et al., 2018).

    For task losses :math:`L_1, \dots, L_T` and learnable log-variances
    :math:`s_k = \log \sigma_k^2` (initialised to ``init_log_var``),

    .. math::
        L = \sum_{k=1}^{T} \Bigl( c_k\, e^{-s_k} L_k + \tfrac{1}{2} s_k \Bigr),

    with :math:`c_k = 1/2` for a regression task (Gaussian likelihood, :math:`L_k` the mean squared
    error) and :math:`c_k = 1` for a classification task (:math:`L_k` the cross-entropy); the
    :math:`\tfrac12 s_k = \log\sigma_k` term stops every :math:`\sigma_k` from growing without bound.

    The log-variances are ``nn.Parameter`` s of this module: **pass them to the optimizer** together
    with the network's (``optimizer = Adam([*model.parameters(), *loss_fn.parameters()])``), or
    they never move and the weights stay at their initial values. For a fixed :math:`L_k` the
    optimum is :math:`e^{s_k} = 2 c_k L_k`, where the task's term equals
    :math:`\tfrac12 + \tfrac12 \log(2 c_k L_k)`: negative as soon as :math:`L_k < 1/(2 c_k e)`.
    A negative total is therefore expected once the tasks are learned, and clamping it at zero
    would remove every gradient.

    Args:
        num_tasks: number of task losses :math:`T \ge 1`.
        task_types: ``'classification'`` or ``'regression'`` per task (default: all classification).
        init_log_var: initial :math:`s_k` (0 means every task starts with weight :math:`c_k`).
        reduction: ``'sum'`` (default, the total above), ``'mean'`` (divided by :math:`T`) or
            ``'none'`` (the per-task terms, shape ``(T,)``).

    Shape:
        forward takes the :math:`T` task losses as scalars (separate arguments, a sequence, or a
        ``(T,)`` tensor) and returns a scalar, or ``(T,)`` for ``reduction='none'``.
    """

    scales: torch.Tensor

    def __init__(
        self,
        num_tasks: int,
        task_types: Sequence[str] | None = None,
        init_log_var: float = 0.0,
        reduction: str = "sum",
    ) -> None:
        super().__init__()
        if isinstance(num_tasks, bool) or not isinstance(num_tasks, int) or num_tasks < 1:
            raise ValueError(f"num_tasks must be a positive int, got {num_tasks!r}")
        types = ["classification"] * num_tasks if task_types is None else list(task_types)
        if len(types) != num_tasks:
            raise ValueError(f"task_types must have num_tasks={num_tasks} entries, got {len(types)}")
        unknown = [t for t in types if t not in TASK_SCALES]
        if unknown:
            raise ValueError(f"task_types entries must be in {tuple(TASK_SCALES)}, got {unknown}")
        self.task_types = tuple(types)
        self.reduction = check_reduction(reduction)
        self.log_vars = nn.Parameter(torch.full((num_tasks,), float(init_log_var)))
        self.register_buffer("scales", torch.tensor([TASK_SCALES[t] for t in types]))

    @property
    def num_tasks(self) -> int:
        return self.log_vars.numel()

    def forward(self, *losses: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Combine the task losses into the uncertainty-weighted total."""
        if len(losses) == 1 and not (isinstance(losses[0], torch.Tensor) and losses[0].dim() == 0):
            losses = tuple(losses[0])
        if len(losses) != self.num_tasks:
            raise ValueError(f"expected {self.num_tasks} task losses (one per task), got {len(losses)}")
        for k, loss in enumerate(losses):
            if not isinstance(loss, torch.Tensor) or loss.dim() != 0 or not torch.is_floating_point(loss):
                shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
                raise ValueError(f"task loss {k} must be a floating scalar tensor (reduce it first), got {shape}")
        stacked = float32_under_autocast(torch.stack(list(losses)))
        log_vars = same_device(self.log_vars, stacked, "log_vars")
        terms = same_device(self.scales, stacked, "scales") * torch.exp(-log_vars) * stacked + 0.5 * log_vars
        return reduce_loss(terms, self.reduction)

    @torch.no_grad()
    def weights(self) -> torch.Tensor:
        r"""The current effective task weights :math:`c_k e^{-s_k}` (a detached ``(T,)`` tensor)."""
        return self.scales * torch.exp(-self.log_vars.detach())

    def extra_repr(self) -> str:
        return f"task_types={self.task_types}, reduction={self.reduction!r}"
