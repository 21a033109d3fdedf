r"""Losses and class weights for long-tailed (class-imbalanced) classification.

Weights from class counts (each normalized to sum to the number of classes ``C``, as in the papers):

* :func:`inverse_frequency_weights`: :math:`w_c \propto n_c^{-p}`;
* :func:`class_balanced_weights`: :math:`w_c \propto (1-\beta)/(1-\beta^{n_c})`, the inverse effective
  number of Cui et al. (2019) {cite}`cui2019classbalanced`;
* :func:`ldam_margins`: :math:`\Delta_c \propto n_c^{-1/4}` (Cao et al. 2019 {cite}`cao2019ldam`).

Loss modules (``torch.nn`` conventions: ``forward(input, target)`` with logits ``(N, C)`` or
``(N, C, d1, ...)`` and ``int64`` class indices ``(N)`` or ``(N, d1, ...)``; ``reduction`` in
``'none' | 'mean' | 'sum'``; a weighted ``'mean'`` divides by the summed weights of the targets, as
:func:`torch.nn.functional.cross_entropy` does; per-class weights are the registered buffer ``weight``,
which may be ``None`` and must be on the input's device (``RuntimeError`` otherwise, as in
``nn.CrossEntropyLoss``); the result has the dtype and device of the input, and is float32 for
16-bit logits under autocast; ``forward`` never reads a tensor value on the host, so it does not
synchronise with a GPU and compiles with ``torch.compile(fullgraph=True)``; it works under
``torch.func`` transforms (``vmap(grad(...))``) and has exact second derivatives, see
:mod:`helpers.validation`):

* :class:`FocalLoss` (Lin et al. 2017 {cite}`lin2017focal`), softmax form, optional per-class alpha and
  ``ignore_index``;
* :class:`LDAMLoss` (Cao et al. 2019 {cite}`cao2019ldam`);
* :class:`LogitAdjustedLoss` (Menon et al. 2021 {cite}`menon2021logitadjustment`);
* :class:`BalancedSoftmaxLoss` (Ren et al. 2020 {cite}`ren2020balancedsoftmax`);

plus :class:`DeferredReweighting` (the DRW schedule of Cao et al.) and :func:`posthoc_logit_adjustment`.
Class-weighted cross-entropy needs no class of its own: ``nn.CrossEntropyLoss(weight=w)``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from helpers.validation import (
    check_class_counts,
    check_class_targets,
    check_class_weight,
    check_reduction,
    check_weight_length,
    float32_under_autocast,
    reduce_loss,
    same_device,
)

Counts = torch.Tensor | Sequence[int]


def _check_number(name: str, value: float, low: float, high: float = math.inf, *, open_high: bool = False) -> float:
    """``value`` as a float in ``[low, high]`` (or ``[low, high)``), else ``TypeError`` / ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    too_high = value >= high if open_high else value > high
    if not math.isfinite(value) or value < low or too_high:
        interval = f"[{low:g}, {high:g}{')' if open_high else ']'}"
        raise ValueError(f"{name} must be a finite number in {interval}, got {value}")
    return value


def _normalize_to_num_classes(w: torch.Tensor) -> torch.Tensor:
    """Scale float64 weights to sum to their length; return them in the default dtype."""
    return (w * (w.numel() / w.sum())).to(torch.get_default_dtype())


def inverse_frequency_weights(class_counts: Counts, power: float = 1.0) -> torch.Tensor:
    r"""Inverse-frequency class weights :math:`w_c = C \, n_c^{-p} / \sum_k n_k^{-p}`.

    Args:
        class_counts: training examples per class, ``C`` positive integers.
        power: :math:`p \ge 0`; 1 is plain inverse frequency, 0.5 its square root, 0 uniform weights.

    Returns:
        Tensor of shape ``(C,)`` in the default dtype, summing to ``C``.

    Example: counts ``[1, 2, 4]`` give ``[12/7, 6/7, 3/7]``.
    """
    counts = check_class_counts(class_counts)
    power = _check_number("power", power, 0.0)
    return _normalize_to_num_classes(counts.pow(-power))


def class_balanced_weights(class_counts: Counts, beta: float) -> torch.Tensor:
    r"""Class-balanced weights from the effective number of samples (Cui et al. 2019).

    .. math::
        E_{n_c} = \frac{1 - \beta^{n_c}}{1 - \beta}, \qquad
        w_c = C \, \frac{1 / E_{n_c}}{\sum_k 1 / E_{n_k}}.

    ``beta = 0`` gives uniform weights; ``beta -> 1`` tends to inverse frequency. The paper uses
    ``beta`` in ``{0.9, 0.99, 0.999, 0.9999}``. :math:`1-\beta^{n}` is computed as
    ``-expm1(n * log(beta))`` so that ``beta`` close to 1 keeps full precision.

    Args:
        class_counts: training examples per class, ``C`` positive integers.
        beta: :math:`\beta \in [0, 1)`.

    Returns:
        Tensor of shape ``(C,)`` in the default dtype, summing to ``C``.

    Example: counts ``[1, 2]`` with ``beta=0.5``: :math:`E = (1, 1.5)`, weights ``[1.2, 0.8]``.
    """
    counts = check_class_counts(class_counts)
    beta = _check_number("beta", beta, 0.0, 1.0, open_high=True)
    if beta == 0.0:
        return _normalize_to_num_classes(torch.ones_like(counts))
    effective = -torch.expm1(counts * math.log(beta)) / (1.0 - beta)
    return _normalize_to_num_classes(1.0 / effective)


def ldam_margins(class_counts: Counts, max_margin: float = 0.5) -> torch.Tensor:
    r"""LDAM per-class margins :math:`\Delta_c = \Delta_{max} \, n_c^{-1/4} / \max_k n_k^{-1/4}` (Cao et al. 2019).

    The rarest class gets ``max_margin``; the paper (and its code) uses 0.5.

    Args:
        class_counts: training examples per class, ``C`` positive integers.
        max_margin: :math:`\Delta_{max} \ge 0`.

    Returns:
        Tensor of shape ``(C,)`` in the default dtype, with maximum ``max_margin``.

    Example: counts ``[1, 16, 81]`` give ``[0.5, 0.25, 1/6]``.
    """
    counts = check_class_counts(class_counts)
    max_margin = _check_number("max_margin", max_margin, 0.0)
    m = counts.pow(-0.25)
    return (m * (max_margin / m.max())).to(torch.get_default_dtype())


def _class_shape(input: torch.Tensor) -> tuple[int, ...]:
    """Shape that broadcasts a per-class vector against ``input`` of shape ``(N, C, d1, ...)``."""
    return (1, input.shape[1]) + (1,) * (input.dim() - 2)


def _is_target_class(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Boolean mask of ``input``'s shape, True at each position's target class (no in-place scatter,
    so ``vmap`` has a batching rule for it)."""
    classes = torch.arange(input.shape[1], device=input.device).view(_class_shape(input))
    return classes == target.unsqueeze(1)


class _ClassLoss(nn.Module):
    """Shared plumbing: ``reduction``, the ``weight`` buffer, and input checks against the class count."""

    weight: torch.Tensor | None

    def __init__(self, weight: torch.Tensor | Sequence[float] | None, reduction: str, num_classes: int | None) -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)
        self.num_classes = num_classes
        weight = check_class_weight(weight, num_classes)
        self.register_buffer("weight", None if weight is None else weight.detach().clone())

    def _check(self, input: torch.Tensor, target: torch.Tensor, ignore_index: int | None = None) -> int:
        num_classes = check_class_targets(input, target, ignore_index)
        if self.num_classes is not None and num_classes != self.num_classes:
            raise ValueError(
                f"input has {num_classes} classes (dim 1 of shape {tuple(input.shape)}) but "
                f"{type(self).__name__} was built for {self.num_classes} classes"
            )
        check_weight_length(self.weight, num_classes)
        return num_classes

    def _weight_like(self, input: torch.Tensor) -> torch.Tensor | None:
        return None if self.weight is None else same_device(self.weight, input, "weight")

    def _cross_entropy(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target, weight=self._weight_like(logits), reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, weighted={self.weight is not None}"


class FocalLoss(_ClassLoss):
    r"""Softmax focal loss (Lin et al. 2017 {cite}`lin2017focal`), with optional per-class alpha.

    .. math::
        \ell_i = -\alpha_{y_i} \, (1 - p_{i,y_i})^{\gamma} \, \log p_{i,y_i}, \qquad
        p_i = \operatorname{softmax}(x_i).

    The modulating factor is computed in log space from the logits, :math:`(1-p_t)^\gamma =
    \exp\big(\gamma\,[\operatorname{logsumexp}_{j \ne t} x_j - \operatorname{logsumexp}_j x_j]\big)`,
    never from :math:`1 - p_t` itself: that difference rounds to 0 for a confident prediction, and
    :math:`0^{\gamma}` has an infinite derivative for :math:`\gamma < 1`, which makes the gradient NaN.
    With ``gamma=0`` this is exactly ``F.cross_entropy(input, target, weight=alpha, ignore_index=...)``.

    Positions whose target equals ``ignore_index`` contribute 0 and are left out of the ``'mean'``
    denominator, as in :func:`torch.nn.functional.cross_entropy`: ``'mean'`` divides by the number of
    kept targets, or with ``alpha`` by :math:`\sum_i \alpha_{y_i}` over the kept targets (a batch
    whose targets are all ignored gives 0/0 = NaN, as cross-entropy does).

    This is the *softmax* focal loss: one probability per example, :math:`\alpha` a per-class weight
    of the example's label. It is not the loss of the focal-loss paper's experiments, which is the
    *sigmoid* focal loss of RetinaNet (``torchvision.ops.sigmoid_focal_loss``,
    :class:`helpers.custom_losses.SigmoidFocalLoss`): one binary problem per class, and
    :math:`\alpha` the weight of the positive entries (:math:`1-\alpha` for the negatives). Nor is
    ``FocalLoss(alpha=class_balanced_weights(counts, beta))`` the "class-balanced focal loss" of Cui et
    al. (2019) {cite}`cui2019classbalanced`: theirs is the sigmoid focal loss summed over the classes,
    every term of an example weighted by the class-balanced weight of its label, the sum divided by
    the number of positive labels (the batch size for single-label data), trained with the last
    layer's bias initialised to :math:`-\log(C-1)` (so that every sigmoid starts at :math:`1/C`). The
    softmax form with class-balanced ``alpha`` is a different loss, one that chapter 6 compares with it.

    Args:
        gamma: focusing parameter :math:`\gamma \ge 0` (default 2, as in the paper).
        alpha: per-class weights of shape ``(C,)`` or None; stored as the buffer ``weight`` (so
            :class:`DeferredReweighting` can switch it) and readable as ``alpha``.
        reduction: ``'none' | 'mean' | 'sum'``; a weighted ``'mean'`` divides by :math:`\sum_i \alpha_{y_i}`.
        ignore_index: target value that contributes neither loss nor weight (default -100, as in
            ``F.cross_entropy``).

    Shape:
        input ``(N, C)`` or ``(N, C, d1, ...)`` logits; target ``(N)`` or ``(N, d1, ...)`` ``int64`` in
        ``[0, C)`` or equal to ``ignore_index``; output scalar, or the target's shape for
        ``reduction='none'``.
    """

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: torch.Tensor | Sequence[float] | None = None,
        reduction: str = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__(alpha, reduction, None)
        self.gamma = _check_number("gamma", gamma, 0.0)
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise TypeError(f"ignore_index must be an int, got {ignore_index!r}")
        self.ignore_index = ignore_index

    @property
    def alpha(self) -> torch.Tensor | None:
        """The per-class weights (the ``weight`` buffer)."""
        return self.weight

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self._check(input, target, self.ignore_index)
        input = float32_under_autocast(input)
        ignored = target == self.ignore_index
        target = target.masked_fill(ignored, 0)
        index = target.unsqueeze(1)
        lse = torch.logsumexp(input, dim=1)
        log_pt = input.gather(1, index).squeeze(1) - lse
        loss = -log_pt
        if self.gamma != 0.0:
            others = input.masked_fill(_is_target_class(input, target), -math.inf)
            log_one_minus_pt = (torch.logsumexp(others, dim=1) - lse).clamp(max=0.0)
            loss = torch.exp(self.gamma * log_one_minus_pt) * loss
        weight = self._weight_like(input)
        kept = (~ignored).to(input.dtype)
        target_weight = kept if weight is None else weight[target] * kept
        loss = loss.masked_fill(ignored, 0.0)
        if weight is not None:
            loss = loss * target_weight
        return reduce_loss(loss, self.reduction, target_weight.sum())

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, ignore_index={self.ignore_index}, {super().extra_repr()}"


class LDAMLoss(_ClassLoss):
    r"""Label-distribution-aware margin loss (Cao et al. 2019 {cite}`cao2019ldam`).

    .. math::
        \ell_i = -w_{y_i} \log \frac{e^{s (x_{i,y_i} - \Delta_{y_i})}}
        {e^{s (x_{i,y_i} - \Delta_{y_i})} + \sum_{j \ne y_i} e^{s x_{ij}}}, \qquad
        \Delta_c = \Delta_{max} \, \frac{n_c^{-1/4}}{\max_k n_k^{-1/4}},

    i.e. weighted cross-entropy on the scaled logits after subtracting the true class's margin
    (rare classes get larger margins). With ``max_margin=0`` and ``scale=1`` it is cross-entropy.
    The paper pairs it with deferred re-weighting (LDAM-DRW, see :class:`DeferredReweighting`).

    Args:
        class_counts: training examples per class, ``C`` positive integers.
        max_margin: :math:`\Delta_{max} \ge 0` (default 0.5, the paper's).
        scale: :math:`s > 0` (default 30, the paper's code; it applies it to normalized features, and
            a plain linear head usually wants a smaller value).
        weight: per-class weights ``(C,)`` or None (buffer ``weight``).
        reduction: ``'none' | 'mean' | 'sum'``.

    Buffers: ``margins`` ``(C,)``, ``weight`` ``(C,)`` or None.

    Shape:
        as :class:`FocalLoss`.
    """

    margins: torch.Tensor

    def __init__(
        self,
        class_counts: Counts,
        max_margin: float = 0.5,
        scale: float = 30.0,
        weight: torch.Tensor | Sequence[float] | None = None,
        reduction: str = "mean",
    ) -> None:
        margins = ldam_margins(class_counts, max_margin)
        super().__init__(weight, reduction, margins.numel())
        self.max_margin = float(max_margin)
        self.scale = _check_number("scale", scale, 0.0)
        if self.scale == 0.0:
            raise ValueError("scale must be positive, got 0.0")
        self.register_buffer("margins", margins)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self._check(input, target)
        input = float32_under_autocast(input)
        true_class = _is_target_class(input, target)
        margins = same_device(self.margins, input, "margins").view(_class_shape(input))
        return self._cross_entropy(self.scale * (input - true_class * margins), target)

    def extra_repr(self) -> str:
        return f"max_margin={self.max_margin}, scale={self.scale}, {super().extra_repr()}"


class LogitAdjustedLoss(_ClassLoss):
    r"""Logit-adjusted cross-entropy (Menon et al. 2021 {cite}`menon2021logitadjustment`).

    .. math::
        \ell_i = -w_{y_i} \log \frac{e^{x_{i,y_i} + \tau \log \pi_{y_i}}}{\sum_j e^{x_{ij} + \tau \log \pi_j}},
        \qquad \pi_c = \frac{n_c}{\sum_k n_k}.

    Training with the prior added to the logits makes the *plain* logits estimate a balanced
    classifier, so predict with ``input.argmax(1)`` (no adjustment at test time). ``tau=0`` is
    cross-entropy; the paper uses ``tau=1``.

    Args:
        class_counts: training examples per class, ``C`` positive integers.
        tau: :math:`\tau \ge 0`.
        weight: per-class weights ``(C,)`` or None (buffer ``weight``).
        reduction: ``'none' | 'mean' | 'sum'``.

    Buffers: ``log_prior`` ``(C,)`` (:math:`\log \pi`), ``weight``.

    Shape:
        as :class:`FocalLoss`.
    """

    log_prior: torch.Tensor

    def __init__(
        self,
        class_counts: Counts,
        tau: float = 1.0,
        weight: torch.Tensor | Sequence[float] | None = None,
        reduction: str = "mean",
    ) -> None:
        log_prior = log_class_prior(class_counts)
        super().__init__(weight, reduction, log_prior.numel())
        self.tau = _check_number("tau", tau, 0.0)
        self.register_buffer("log_prior", log_prior)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self._check(input, target)
        input = float32_under_autocast(input)
        shift = same_device(self.log_prior, input, "log_prior").view(_class_shape(input))
        return self._cross_entropy(input + self.tau * shift, target)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, {super().extra_repr()}"


class BalancedSoftmaxLoss(LogitAdjustedLoss):
    r"""Balanced softmax cross-entropy (Ren et al. 2020 {cite}`ren2020balancedsoftmax`).

    .. math::
        \ell_i = -w_{y_i} \log \frac{n_{y_i} e^{x_{i,y_i}}}{\sum_j n_j e^{x_{ij}}}
        = -w_{y_i} \log \operatorname{softmax}(x_i + \log n)_{y_i}.

    Adding :math:`\log n_c` or :math:`\log \pi_c` gives the same softmax (they differ by a constant), so
    this is :class:`LogitAdjustedLoss` with ``tau = 1``, derived independently by Ren et al. With equal
    counts it is cross-entropy. Predict with ``input.argmax(1)``.

    Args:
        class_counts: training examples per class, ``C`` positive integers.
        weight: per-class weights ``(C,)`` or None (buffer ``weight``).
        reduction: ``'none' | 'mean' | 'sum'``.
    """

    def __init__(
        self, class_counts: Counts, weight: torch.Tensor | Sequence[float] | None = None, reduction: str = "mean"
    ) -> None:
        super().__init__(class_counts, tau=1.0, weight=weight, reduction=reduction)

    def extra_repr(self) -> str:
        return _ClassLoss.extra_repr(self)


def log_class_prior(class_counts: Counts, dtype: torch.dtype | None = None) -> torch.Tensor:
    r"""Log class prior :math:`\log \pi_c = \log (n_c / \sum_k n_k)`, shape ``(C,)``, ``dtype`` (default dtype)."""
    counts = check_class_counts(class_counts)
    return (counts / counts.sum()).log().to(dtype or torch.get_default_dtype())


def posthoc_logit_adjustment(logits: torch.Tensor, class_counts: Counts, tau: float = 1.0) -> torch.Tensor:
    r"""Post-hoc logit adjustment (Menon et al. 2021): :math:`x_{ic} - \tau \log \pi_c`.

    Applied to the logits of a model trained with plain cross-entropy, ``argmax`` of the result
    approximates the balanced-error-optimal prediction; the paper uses ``tau=1``.

    Args:
        logits: ``(N, C)`` or ``(N, C, d1, ...)`` floating tensor.
        class_counts: training examples per class, ``C`` positive integers.
        tau: :math:`\tau \ge 0`.

    Returns:
        Adjusted logits, same shape, dtype and device as ``logits``.
    """
    if not isinstance(logits, torch.Tensor) or not torch.is_floating_point(logits):
        raise TypeError("logits must be a floating-point tensor")
    if logits.dim() < 2:
        raise ValueError(f"logits must have shape (N, C) or (N, C, d1, ...), got {tuple(logits.shape)}")
    log_prior = log_class_prior(class_counts, torch.float64)
    if log_prior.numel() != logits.shape[1]:
        raise ValueError(f"class_counts has {log_prior.numel()} entries but logits have {logits.shape[1]} classes")
    tau = _check_number("tau", tau, 0.0)
    return logits - tau * log_prior.to(dtype=logits.dtype, device=logits.device).view(_class_shape(logits))


class DeferredReweighting:
    """Deferred re-weighting (DRW, Cao et al. 2019 {cite}`cao2019ldam`): no class weights, then ``weights``.

    ``drw(loss_fn, epoch)`` sets ``loss_fn.weight`` to None for ``epoch < start_epoch`` and to ``weights``
    from ``start_epoch`` on (epochs counted from 0). It works with any loss that keeps its class weights
    in the attribute ``weight``: ``nn.CrossEntropyLoss``, :class:`FocalLoss`, :class:`LDAMLoss`,
    :class:`LogitAdjustedLoss`, ... The weights are moved to the device and dtype of the loss's
    buffers (e.g. LDAM's margins) when it has any; for a loss without buffers, such as a plain
    ``nn.CrossEntropyLoss()``, pass ``weights`` already on the training device. The paper uses
    class-balanced weights with ``beta=0.9999`` and starts at 80% of training (epoch 160 of 200).
    Call it at the start of every epoch, e.g. ``train(..., on_epoch_start=lambda e: drw(loss_fn, e))``.

    Args:
        weights: per-class weights ``(C,)``, finite and non-negative.
        start_epoch: first epoch (from 0) trained with the weights, ``>= 0``.
    """

    def __init__(self, weights: torch.Tensor | Sequence[float], start_epoch: int) -> None:
        checked = check_class_weight(weights, name="weights")
        if checked is None:
            raise TypeError("weights must be a 1-D tensor of per-class weights, got None")
        if isinstance(start_epoch, bool) or not isinstance(start_epoch, int) or start_epoch < 0:
            raise ValueError(f"start_epoch must be a non-negative int, got {start_epoch!r}")
        self.weights = checked
        self.start_epoch = start_epoch

    def weight_at(self, epoch: int) -> torch.Tensor | None:
        """The class weights for ``epoch``: None before ``start_epoch``, else ``weights``."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
        return None if epoch < self.start_epoch else self.weights

    def __call__(self, loss_fn: nn.Module, epoch: int) -> None:
        if not hasattr(loss_fn, "weight"):
            raise TypeError(f"loss_fn must keep class weights in the attribute 'weight', got {type(loss_fn).__name__}")
        weight = self.weight_at(epoch)
        if weight is not None:
            buffers = [b for b in loss_fn.buffers() if torch.is_floating_point(b)]  # incl. a current weight
            if buffers:
                weight = weight.to(device=buffers[0].device, dtype=buffers[0].dtype)
        loss_fn.weight = weight

    def __repr__(self) -> str:
        return f"DeferredReweighting(start_epoch={self.start_epoch}, weights={self.weights.tolist()})"
