r"""A fast softmax focal loss: one :class:`torch.autograd.Function` with a hand-written backward.

:class:`helpers.losses.FocalLoss` is the readable reference. Autograd records every step of it
(log-softmax, gather, masking the true class, a second log-sum-exp, exponentials, products) and
keeps several ``(N, C)`` tensors alive for the backward pass, so at many classes it costs several
times a plain cross-entropy (chapter 6's benchmark measures the ratio per number of classes). Here
the forward pass is one fused ``log_softmax`` plus ``(N,)``-sized arithmetic, and the backward pass is
the closed form below, applied to the softmax in place.

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
``ignore_index`` contribute 0 and are left out of that denominator. A ``'mean'`` over a batch whose
targets are all ignored (or empty) is 0/0 = NaN with a zero gradient, as in ``F.cross_entropy``.
Only the logits get a gradient (``alpha`` is a constant buffer).

What is kept for the backward pass: the logits as they were passed to :class:`FocalLossFunction`
(``(N, C)``; for ``(N, C, d1, ...)`` logits the flattened ``(N * d1 * ..., C)`` view, which is the
logits' own storage for a channels_last input and a reshaped *copy* for a contiguous one) and three
``(N,)`` vectors. The saving over the eager :class:`~helpers.losses.FocalLoss` is that no softmax,
log-softmax or mask of shape ``(N, C)`` is kept, and the backward pass works in place on one
``(N, C)`` buffer. The logits are not "free": an ``nn.Linear`` head saves its *input*, so the
logits stay alive only because this loss saves them (``F.cross_entropy`` saves its log-softmax, the
same size).

Conventions of a ``torch.nn`` loss that an ``autograd.Function`` has to provide by hand, and how:

* autocast: :class:`FastFocalLoss` and :func:`fast_focal_loss` pass 16-bit logits in float32
  under autocast (:func:`helpers.validation.float32_under_autocast`), and the backward computes in
  the dtype of the saved coefficients and returns the gradient in the input's dtype, so an op that
  autocast moved to float32 inside ``forward`` cannot make the backward mix dtypes;
* ``torch.func``: ``forward`` takes no ``ctx`` and :meth:`FocalLossFunction.setup_context` saves
  what the backward needs, with ``generate_vmap_rule = True``, so ``vmap(grad(...))`` works;
* double backward: grad mode is on inside ``backward`` when the backward itself is differentiated
  (``create_graph=True``) and also under a first-order ``torch.func.grad`` (so ``vmap(grad(...))``
  takes this path too, with the same values); ``backward`` then recomputes the closed-form gradient
  from the saved logits with differentiable operations, so ``torch.autograd.gradgradcheck`` passes
  in float64, at saturated logits too (where ``1 - p_t`` rounds to 0 every term is a ``torch.where``
  on a safe operand); otherwise it takes the fast in-place path;
* forward mode is not provided: there is no ``jvp`` staticmethod, so ``torch.func.jvp``,
  ``jacfwd`` and ``hessian`` raise ``NotImplementedError`` (they work on
  :class:`~helpers.losses.FocalLoss`).

Nothing in the forward pass reads a tensor value on the host, so it neither synchronises with a GPU
nor breaks ``torch.compile(fullgraph=True)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import FunctionCtx

from helpers.losses import FocalLoss
from helpers.validation import (
    check_class_targets,
    check_class_weight,
    check_reduction,
    float32_under_autocast,
    same_device,
)

__all__ = ["FastFocalLoss", "FocalLossFunction", "fast_focal_loss"]


def _focal_terms(
    input: Tensor, target: Tensor, alpha: Tensor | None, gamma: float, reduction: str, ignore_index: int | None
) -> tuple[Tensor, Tensor, Tensor]:
    """The loss, the ``(N,)`` log-sum-exp and the ``(N,)`` coefficient of the gradient.

    Out-of-place operations only, so the same code serves the forward pass and the differentiable
    (double-backward) path of :meth:`FocalLossFunction.backward`.
    """
    # Per-example weight alpha_t: alpha of the label, times 0 for an ignored target (None: all ones).
    kept = None if ignore_index is None else target != ignore_index
    target = _clamp_ignored(target, ignore_index)
    alpha_t = None if alpha is None else alpha.gather(0, target)
    if kept is not None:
        alpha_t = kept.to(input.dtype) if alpha_t is None else alpha_t * kept
    index = target.unsqueeze(1)
    log_pt = F.log_softmax(input, dim=1).gather(1, index).squeeze(1)  # the (N, C) result is freed here
    # Keep the (N,) log-sum-exp, not an (N, C) softmax: the backward recomputes the softmax from it.
    lse = input.gather(1, index).squeeze(1) - log_pt
    if gamma == 0:
        loss = -log_pt
        coef = torch.ones_like(log_pt) if alpha_t is None else alpha_t
    else:
        pt = log_pt.exp()
        one_minus_pt = -torch.expm1(log_pt)
        # Where 1 - p_t rounds to 0, every term below is replaced by its value 0 through torch.where on a
        # safe operand (1), so neither the value nor any derivative of it is NaN or inf (u ** gamma with
        # 0 < gamma < 1 and log p_t / u have infinite derivatives at u = 0).
        positive = one_minus_pt > 0
        safe = torch.where(positive, one_minus_pt, torch.ones_like(one_minus_pt))
        if gamma == 2:
            modulating = one_minus_pt * one_minus_pt
        else:
            modulating = torch.where(positive, safe.pow(gamma), torch.zeros_like(safe))
        loss = modulating * -log_pt
        # d loss_i / d(-log p_t) = m (1 - gamma p_t log p_t / (1 - p_t)); where 1 - p_t rounds to 0
        # the ratio is replaced by 0 (its limit is -1, but m = 0 there, so the product is 0 either way).
        ratio = torch.where(positive, log_pt / safe, torch.zeros_like(safe))
        coef = torch.addcmul(modulating, modulating * pt, ratio, value=-gamma)
        if alpha_t is not None:
            coef = coef * alpha_t
    if alpha_t is not None:
        loss = loss * alpha_t
    if reduction == "mean":
        if alpha_t is None:  # no ignore_index and no alpha: divide by N (0/0 = NaN for an empty batch)
            out, coef = loss.sum() / len(target), coef / max(len(target), 1)
        else:
            normalizer = alpha_t.sum()
            out = loss.sum() / normalizer  # 0/0 = NaN when every target is ignored, as in F.cross_entropy,
            # ... with a zero gradient, as F.cross_entropy's: the coefficients are divided by 1 instead of 0.
            coef = coef / torch.where(normalizer > 0, normalizer, torch.ones_like(normalizer))
    elif reduction == "sum":
        out = loss.sum()
    else:
        out = loss
    return out, lse, coef


def _clamp_ignored(target: Tensor, ignore_index: int | None) -> Tensor:
    """``target`` with ``ignore_index`` replaced by class 0 (those rows have a zero coefficient)."""
    return target if ignore_index is None else target.masked_fill(target == ignore_index, 0)


class FocalLossFunction(torch.autograd.Function):
    r"""Softmax focal loss on ``(N, C)`` logits with a closed-form backward (see the module docstring).

    ``FocalLossFunction.apply(input, target, alpha, gamma, reduction, ignore_index)`` with ``input``
    ``(N, C)`` floating, ``target`` ``(N,)`` int64 in ``[0, C)`` (or equal to ``ignore_index``),
    ``alpha`` ``(C,)`` in ``input``'s dtype or None, ``gamma >= 0``, ``reduction`` in
    ``'none' | 'mean' | 'sum'`` and ``ignore_index`` an int or None (the default: no target ignored).
    Arguments are not validated here; :func:`fast_focal_loss` does that.

    It returns the loss and, as extra outputs marked non-differentiable, the tensors the backward
    needs; :func:`fast_focal_loss` keeps the loss. This ``forward`` + :meth:`setup_context` form is
    what ``torch.func`` requires (``generate_vmap_rule = True`` derives the ``vmap`` rule).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(  # type: ignore[override]
        input: Tensor,
        target: Tensor,
        alpha: Tensor | None,
        gamma: float,
        reduction: str,
        ignore_index: int | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        return _focal_terms(input, target, alpha, gamma, reduction, ignore_index)

    @staticmethod
    def setup_context(ctx: FunctionCtx, inputs: tuple, output: tuple) -> None:
        input, target, alpha, gamma, reduction, *rest = inputs  # ignore_index may be left to its default
        ignore_index = rest[0] if rest else None
        _, lse, coef = output
        ctx.mark_non_differentiable(lse, coef)
        ctx.save_for_backward(input, target, lse, coef, alpha)
        ctx.options = (gamma, reduction, ignore_index)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: FunctionCtx, grad_output: Tensor, *unused: Tensor
    ) -> tuple[Tensor | None, None, None, None, None, None]:
        input, target, lse, coef, alpha = ctx.saved_tensors
        gamma, reduction, ignore_index = ctx.options
        index = _clamp_ignored(target, ignore_index).unsqueeze(1)
        if torch.is_grad_enabled():
            # The backward is itself differentiated (create_graph=True, torch.func.grad): recompute the
            # coefficients from the logits with differentiable operations, so second derivatives are exact.
            _, lse, coef = _focal_terms(input, target, alpha, gamma, reduction, ignore_index)
            k = (coef * grad_output).unsqueeze(1)
            grad = (input - lse.unsqueeze(1)).exp() * k - torch.zeros_like(input).scatter(1, index, k)
            return grad, None, None, None, None, None
        k = (coef * grad_output).unsqueeze(1)  # grad_output is a scalar or (N,)
        # Compute in k's dtype: under CUDA autocast log_softmax returns float32 for 16-bit logits, so
        # coef and k are float32 while the logits are not (autocast is off in the backward pass).
        grad = torch.sub(input.to(k.dtype), lse.to(k.dtype).unsqueeze(1)).exp_()  # softmax, once, in place
        grad.mul_(k)
        grad.scatter_add_(1, index, -k)
        return grad.to(input.dtype), None, None, None, None, None


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
    (to rounding), with a cheaper backward pass; chapter 6's benchmark measures its time against
    ``FocalLoss`` and cross-entropy per number of classes (the gain is large at C >= 100 on the
    benchmark machine; none to speak of at C = 10). Reverse-mode autograd only (no ``jvp``).

    Args:
        input: logits ``(N, C)`` or ``(N, C, d1, ...)``, floating.
        target: class indices ``(N)`` or ``(N, d1, ...)``, int64 in ``[0, C)`` or equal to ``ignore_index``.
        alpha: optional per-class weights ``(C,)``, non-negative, on ``input``'s device; cast to its dtype.
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
    given_as_tensor = isinstance(alpha, Tensor)
    alpha = check_class_weight(alpha, num_classes, name="alpha")
    if alpha is not None and not given_as_tensor:
        alpha = alpha.to(input.device)  # a list has no device: build it on the input's
    return _focal_nd(input, target, alpha, float(gamma), reduction, ignore_index)


def _focal_nd(
    input: Tensor, target: Tensor, alpha: Tensor | None, gamma: float, reduction: str, ignore_index: int
) -> Tensor:
    """:class:`FocalLossFunction` on checked ``(N, C, d1, ...)`` inputs (flattened to ``(N * d1 * ..., C)``)."""
    input = float32_under_autocast(input)
    if alpha is not None:
        alpha = same_device(alpha, input, "alpha")
    if input.dim() == 2:
        return FocalLossFunction.apply(input, target, alpha, gamma, reduction, ignore_index)[0]
    flat_input = input.movedim(1, -1).reshape(-1, input.shape[1])
    out = FocalLossFunction.apply(flat_input, target.reshape(-1), alpha, gamma, reduction, ignore_index)[0]
    return out.view(target.shape) if reduction == "none" else out


class FastFocalLoss(FocalLoss):
    r"""Replacement for :class:`helpers.losses.FocalLoss` in reverse-mode autograd; calls :func:`fast_focal_loss`.

    Forward-mode AD (``torch.func.jvp``, ``jacfwd``, ``hessian``) raises ``NotImplementedError``: the
    Function defines no ``jvp``.

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
