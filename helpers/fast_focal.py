r"""A fast softmax focal loss: one :class:`torch.autograd.Function` with a hand-written backward.

:class:`helpers.losses.FocalLoss` is the readable reference. Autograd records every step of it
(log-softmax, gather, masking the true class, a second log-sum-exp, exponentials, products) and
keeps several ``(N, C)`` tensors alive for the backward pass, so it costs several times a plain
cross-entropy. Here the forward pass is one fused ``log_softmax`` plus ``(N,)``-sized arithmetic,
and the backward pass is the closed form below, applied to the softmax in place.

For logits :math:`z_i`, label :math:`y_i`, :math:`\log p_t = \operatorname{log\_softmax}(z_i)_{y_i}`,
per-class weights :math:`\alpha` (all ones when ``None``) and :math:`m_i = (1 - p_t)^\gamma`,

.. math::
    \ell_i = -\alpha_{y_i}\, m_i \log p_t, \qquad
    \frac{\partial \ell_i}{\partial z_{ij}} = \alpha_{y_i}\, m_i \Bigl(1 - \gamma\, p_t \frac{\log p_t}{1 - p_t}\Bigr)
    \bigl(p_{ij} - [j = y_i]\bigr).

The ratio :math:`\log p_t / (1 - p_t)` tends to :math:`-1` as :math:`p_t \to 1`; where :math:`1 - p_t`
rounds to 0 the factor :math:`m_i` is 0 too, so the product is 0 and ``gamma < 1`` gives finite
gradients at saturated logits (the expression :math:`(1-p_t)^{\gamma - 1}` alone would be infinite
there). ``'mean'`` with ``alpha`` divides by :math:`\sum_i \alpha_{y_i}`, like
:class:`~helpers.losses.FocalLoss` and ``F.cross_entropy(weight=...)``; targets equal to
``ignore_index`` contribute 0 and are left out of that denominator. Only the logits get a gradient
(``alpha`` is a constant buffer), and the function is differentiable once (no double backward).

What is kept for the backward pass: the logits themselves (``save_for_backward(input, ...)``; they
are alive anyway while the graph that produced them is) and three ``(N,)`` vectors. No *new*
``(N, C)`` tensor is allocated and kept between forward and backward, which is where the memory
saving over the eager :class:`~helpers.losses.FocalLoss` comes from. Nothing in the forward pass
reads a tensor value on the host, so it neither synchronises with a GPU nor breaks
``torch.compile(fullgraph=True)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from helpers.losses import FocalLoss
from helpers.validation import check_class_targets, check_class_weight, check_reduction

__all__ = ["FastFocalLoss", "FocalLossFunction", "fast_focal_loss"]


class FocalLossFunction(torch.autograd.Function):
    r"""Softmax focal loss on ``(N, C)`` logits with a closed-form backward (see the module docstring).

    ``FocalLossFunction.apply(input, target, alpha, gamma, reduction, ignore_index)`` with ``input``
    ``(N, C)`` floating, ``target`` ``(N,)`` int64 in ``[0, C)`` (or equal to ``ignore_index``),
    ``alpha`` ``(C,)`` in ``input``'s dtype or None, ``gamma >= 0``, ``reduction`` in
    ``'none' | 'mean' | 'sum'`` and ``ignore_index`` an int or None (the default: no target ignored).
    Arguments are not validated here; :func:`fast_focal_loss` does that.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx,
        input: Tensor,
        target: Tensor,
        alpha: Tensor | None,
        gamma: float,
        reduction: str,
        ignore_index: int | None = None,
    ) -> Tensor:
        # Per-example weight alpha_t: alpha of the label, times 0 for an ignored target (None: all ones).
        kept = None if ignore_index is None else target != ignore_index
        if kept is not None:
            target = target.masked_fill(~kept, 0)
        alpha_t = None if alpha is None else alpha.gather(0, target)
        if kept is not None:
            alpha_t = kept.to(input.dtype) if alpha_t is None else alpha_t * kept
        index = target.unsqueeze(1)
        log_pt = F.log_softmax(input, dim=1).gather(1, index).squeeze(1)  # the (N, C) result is freed here
        # Keep the logits (already alive in the graph) and the (N,) log-sum-exp, not an (N, C) softmax.
        lse = input.gather(1, index).squeeze(1).sub_(log_pt)
        if gamma == 0:
            loss = log_pt.neg()
            coef = torch.ones_like(log_pt) if alpha_t is None else alpha_t
        else:
            pt = log_pt.exp()
            one_minus_pt = torch.expm1(log_pt).neg_()
            modulating = one_minus_pt * one_minus_pt if gamma == 2 else one_minus_pt.pow(gamma)
            loss = modulating * log_pt.neg()
            # d loss_i / d(-log p_t) = m (1 - gamma p_t log p_t / (1 - p_t)); where 1 - p_t rounds to 0
            # the ratio is replaced by 0 (its limit is -1, but m = 0 there, so the product is 0 either way).
            ratio = log_pt.div_(one_minus_pt.clamp_min_(torch.finfo(log_pt.dtype).tiny))
            coef = torch.addcmul(modulating, modulating * pt, ratio, value=-gamma)
            if alpha_t is not None:
                coef.mul_(alpha_t)
        if alpha_t is not None:
            loss = loss * alpha_t
        if reduction == "mean":
            normalizer = alpha_t.sum() if alpha_t is not None else float(len(target))
            coef = coef / normalizer
            out = loss.sum() / normalizer
        elif reduction == "sum":
            out = loss.sum()
        else:
            out = loss
        ctx.save_for_backward(input, target, lse, coef)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad_output: Tensor) -> tuple[Tensor | None, None, None, None, None, None]:
        input, target, lse, coef = ctx.saved_tensors
        k = (coef * grad_output).unsqueeze(1)  # grad_output is a scalar or (N,)
        grad = torch.sub(input, lse.unsqueeze(1)).exp_()  # softmax, computed once, in place
        grad.mul_(k)
        grad.scatter_add_(1, target.unsqueeze(1), -k)
        return grad, None, None, None, None, None


def fast_focal_loss(
    input: Tensor,
    target: Tensor,
    alpha: Tensor | Sequence[float] | None = None,
    gamma: float = 2.0,
    reduction: str = "mean",
    ignore_index: int = -100,
) -> Tensor:
    r"""Softmax focal loss with the hand-written backward of :class:`FocalLossFunction`.

    Same values and gradients as ``helpers.losses.FocalLoss(gamma, alpha, reduction, ignore_index)``
    (to rounding), several times faster.

    Args:
        input: logits ``(N, C)`` or ``(N, C, d1, ...)``, floating.
        target: class indices ``(N)`` or ``(N, d1, ...)``, int64 in ``[0, C)`` or equal to ``ignore_index``.
        alpha: optional per-class weights ``(C,)``, non-negative; cast to ``input``'s dtype and device.
            (Its values are checked here, on the host: pass a CPU tensor or a list, or use
            :class:`FastFocalLoss`, which checks them once at construction.)
        gamma: focusing parameter :math:`\gamma \ge 0`; 0 with ``alpha=None`` is cross-entropy.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``.
        ignore_index: target value that contributes neither loss nor weight (default -100).

    Returns:
        A scalar, or a tensor of the target's shape for ``reduction='none'``.
    """
    num_classes = check_class_targets(input, target, ignore_index)
    check_reduction(reduction)
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0 <= gamma < float("inf"):
        raise ValueError(f"gamma must be a finite number >= 0, got {gamma!r}")
    alpha = check_class_weight(alpha, num_classes, name="alpha")
    return _focal_nd(input, target, alpha, float(gamma), reduction, ignore_index)


def _focal_nd(
    input: Tensor, target: Tensor, alpha: Tensor | None, gamma: float, reduction: str, ignore_index: int
) -> Tensor:
    """:class:`FocalLossFunction` on checked ``(N, C, d1, ...)`` inputs (flattened to ``(N * d1 * ..., C)``)."""
    if alpha is not None:
        alpha = alpha.to(dtype=input.dtype, device=input.device)
    if input.dim() == 2:
        return FocalLossFunction.apply(input, target, alpha, gamma, reduction, ignore_index)
    flat_input = input.movedim(1, -1).reshape(-1, input.shape[1])
    out = FocalLossFunction.apply(flat_input, target.reshape(-1), alpha, gamma, reduction, ignore_index)
    return out.view(target.shape) if reduction == "none" else out


class FastFocalLoss(FocalLoss):
    r"""Drop-in replacement for :class:`helpers.losses.FocalLoss` that calls :func:`fast_focal_loss`.

    Same arguments (``ignore_index`` included), buffer (``weight``, readable as ``alpha``),
    ``state_dict`` and formula:

    .. math::
        \ell_i = -\alpha_{y_i} \, (1 - p_{i,y_i})^{\gamma} \, \log p_{i,y_i}.

    Shape:
        input ``(N, C)`` or ``(N, C, d1, ...)`` logits; target ``(N)`` or ``(N, d1, ...)`` int64.
    """

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        self._check(input, target, self.ignore_index)  # FocalLoss's checks; the rest were checked in __init__
        return _focal_nd(input, target, self.weight, self.gamma, self.reduction, self.ignore_index)
