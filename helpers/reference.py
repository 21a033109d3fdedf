"""From-scratch reference implementations of every ``torch.nn`` loss, and the atlas that checks them.

Each function below re-implements one ``torch.nn`` loss from the formula in its documentation with
plain tensor operations (``log``, ``exp``, ``clamp``, ``gather``, ``logsumexp``...). None of them calls
the loss it re-implements, nor any other ``torch.nn.functional`` loss: they exist so that the book can
*check* torch against its documentation instead of repeating it. Signatures mirror
``torch.nn.functional`` (same argument names and defaults, ``reduction`` in ``'none' | 'mean' | 'sum'``).

The second half of the module is the **atlas**: one :class:`AtlasEntry` per loss class exported by
``torch.nn`` (task, what the input must be, the target's dtype and shape, the options), each with
random test cases that exercise the options. :func:`check_entry` runs the ``torch.nn`` module and the
reference on every case and every reduction and compares values and input gradients in float64
(tolerances :data:`RTOL`, :data:`ATOL`). :func:`torch_loss_classes` discovers the loss classes of the
installed torch, so that a new one without an atlas entry is noticed (the unit tests fail). Entries for
losses newer than the running torch (:data:`NEWER_LOSSES`) are left out of :data:`ATLAS` and named, with
the reason, in :data:`SKIPPED`.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

from helpers.validation import check_reduction, reduce_loss
from helpers.versions import torch_at_least

__all__ = [
    "ATLAS",
    "ATOL",
    "RTOL",
    "AtlasEntry",
    "Case",
    "CheckResult",
    "adaptive_log_softmax",
    "atlas_checks_frame",
    "atlas_frame",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "check_entry",
    "cosine_embedding_loss",
    "cross_entropy",
    "ctc_loss",
    "gaussian_nll_loss",
    "hinge_embedding_loss",
    "huber_loss",
    "kl_div",
    "l1_loss",
    "linear_cross_entropy",
    "log_softmax",
    "margin_ranking_loss",
    "mse_loss",
    "multi_margin_loss",
    "multilabel_margin_loss",
    "multilabel_soft_margin_loss",
    "nll_loss",
    "pairwise_distance",
    "poisson_nll_loss",
    "smooth_l1_loss",
    "soft_margin_loss",
    "torch_loss_classes",
    "triplet_margin_loss",
    "triplet_margin_with_distance_loss",
]

#: Relative and absolute tolerances of the atlas checks (float64 inputs, values and gradients).
RTOL = 1e-7
ATOL = 1e-9


# --------------------------------------------------------------------------------------------------
# small building blocks (plain tensor ops)
# --------------------------------------------------------------------------------------------------


def _same_shape(input: Tensor, target: Tensor, input_name: str = "input", target_name: str = "target") -> None:
    if input.shape != target.shape:
        raise ValueError(
            f"{target_name} must have the same shape as {input_name} {tuple(input.shape)}, got {tuple(target.shape)}"
        )


def _float(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not torch.is_floating_point(x):
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def _logsumexp(x: Tensor, dim: int) -> Tensor:
    """``log(sum(exp(x), dim))``, stable, and with a zero (not NaN) gradient when a slice is all ``-inf``."""
    m = x.detach().amax(dim, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    s = (x - m).exp().sum(dim)
    positive = s > 0
    safe_log = torch.where(positive, s, torch.ones_like(s)).log()
    return torch.where(positive, safe_log + m.squeeze(dim), torch.full_like(s, -math.inf))


def log_softmax(x: Tensor, dim: int = 1, dtype: torch.dtype | None = None) -> Tensor:
    """``x - log(sum(exp(x)))`` along ``dim`` (max-shifted, so large logits do not overflow).

    As ``F.log_softmax``: ``dtype`` casts ``x`` first; a 0-d ``x`` is one element (log-probability 0);
    a tensor with no elements comes back empty, with its shape.
    """
    if dtype is not None:
        x = x.to(dtype)
    if x.dim() == 0 or x.numel() == 0:
        return x - x  # log(1) = 0 for the lone element (gradient 0), or the empty tensor itself
    return x - _logsumexp(x, dim).unsqueeze(dim)


def _log_sigmoid(x: Tensor) -> Tensor:
    """``log(sigmoid(x)) = -log(1 + exp(-x))``, computed stably as ``-logaddexp(0, -x)``."""
    return -torch.logaddexp(torch.zeros_like(x), -x)


def pairwise_distance(x1: Tensor, x2: Tensor, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False) -> Tensor:
    r"""The distance torch's triplet losses use: :math:`\lVert x_1 - x_2 + \epsilon \rVert_p` over the last dim
    (kept as a size-1 dimension with ``keepdim``)."""
    diff = (x1 - x2 + eps).abs()
    if p == math.inf:
        return diff.amax(-1, keepdim=keepdim)
    return diff.pow(p).sum(-1, keepdim=keepdim).pow(1.0 / p)


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    return reduce_loss(loss, check_reduction(reduction))


# --------------------------------------------------------------------------------------------------
# regression
# --------------------------------------------------------------------------------------------------


def l1_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    r"""Mean absolute error :math:`\ell_n = |x_n - y_n|`; input and target of the same shape ``(*)``."""
    _float(input, "input")
    _same_shape(input, target)
    return _reduce((input - target).abs(), reduction)


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    r"""Mean squared error :math:`\ell_n = (x_n - y_n)^2`; input and target of the same shape ``(*)``."""
    _float(input, "input")
    _same_shape(input, target)
    return _reduce((input - target) ** 2, reduction)


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0) -> Tensor:
    r"""Huber loss: :math:`\tfrac12 r^2` if :math:`|r| < \delta`, else :math:`\delta(|r| - \tfrac12\delta)`, with
    :math:`r = x - y`; shapes ``(*)``, ``delta > 0``."""
    _float(input, "input")
    _same_shape(input, target)
    if delta <= 0:
        raise ValueError(f"delta must be positive, got {delta}")
    r = (input - target).abs()
    return _reduce(torch.where(r < delta, 0.5 * r**2, delta * (r - 0.5 * delta)), reduction)


def smooth_l1_loss(input: Tensor, target: Tensor, reduction: str = "mean", beta: float = 1.0) -> Tensor:
    r"""Smooth L1: :math:`\tfrac12 r^2/\beta` if :math:`|r| < \beta`, else :math:`|r| - \tfrac12\beta`
    (``beta = 0`` is L1); shapes ``(*)``. Equals ``huber_loss(delta=beta) / beta``."""
    _float(input, "input")
    _same_shape(input, target)
    if beta < 0:
        raise ValueError(f"beta must be non-negative, got {beta}")
    r = (input - target).abs()
    if beta == 0:
        return _reduce(r, reduction)
    return _reduce(torch.where(r < beta, 0.5 * r**2 / beta, r - 0.5 * beta), reduction)


def poisson_nll_loss(
    input: Tensor,
    target: Tensor,
    log_input: bool = True,
    full: bool = False,
    eps: float = 1e-8,
    reduction: str = "mean",
) -> Tensor:
    r"""Poisson negative log-likelihood, target :math:`y \sim \mathrm{Poisson}(\lambda)`.

    :math:`\ell = e^{x} - y x` if ``log_input`` (input is :math:`\log\lambda`), else
    :math:`\ell = x - y \log(x + \epsilon)` (input is :math:`\lambda`). ``full`` adds the Stirling
    term :math:`y\log y - y + \tfrac12\log(2\pi y)` where :math:`y > 1`. Shapes ``(*)``.
    """
    _float(input, "input")
    _same_shape(input, target)
    loss = input.exp() - target * input if log_input else input - target * (input + eps).log()
    if full:
        safe = torch.where(target > 1, target, torch.ones_like(target))
        stirling = safe * safe.log() - safe + 0.5 * (2 * math.pi * safe).log()
        loss = loss + torch.where(target > 1, stirling, torch.zeros_like(stirling))
    return _reduce(loss, reduction)


def gaussian_nll_loss(
    input: Tensor,
    target: Tensor,
    var: Tensor | float,
    full: bool = False,
    eps: float = 1e-6,
    reduction: str = "mean",
) -> Tensor:
    r"""Gaussian negative log-likelihood with predicted mean ``input`` and variance ``var``.

    :math:`\ell = \tfrac12\left(\log v + (x - y)^2 / v\right)` with :math:`v = \max(\sigma^2, \epsilon)`,
    plus :math:`\tfrac12\log 2\pi` if ``full``. Shapes, as torch accepts them: ``input`` ``(N, *)`` or
    ``(*)``; ``target`` any shape that broadcasts with ``input`` (the documented same shape, one
    dimension of size 1, but also a 0-d target or one with fewer leading dimensions; ``'none'`` then
    returns the broadcast shape); ``var`` a float, the shape of ``input``, that shape without its last
    dimension, that shape with a last dimension of size 1, or (from torch 2.10) the same number of
    dimensions where the ones that differ from ``input``'s have sizes adding up to 1 (e.g. ``(1, D)``).

    Gradient: torch clamps ``var`` in place under ``no_grad``, so autograd treats the clamp as the
    identity (*straight-through*): the gradient is the formula's gradient **evaluated at the clamped
    variance** :math:`v`, e.g. :math:`\partial\ell/\partial\sigma^2 = \tfrac12(1/v - (x - y)^2/v^2)`, and it
    reaches ``var`` even where :math:`\sigma^2 < \epsilon` (where the clamp's true derivative is 0). This
    reference reproduces that documented behaviour on purpose ("the clamping of var is ignored with
    respect to autograd"), so the atlas lists no gradient divergence for it.
    """
    _float(input, "input")
    if not isinstance(target, Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    try:
        torch.broadcast_shapes(input.shape, target.shape)
    except RuntimeError:
        raise ValueError(
            f"target must broadcast with input {tuple(input.shape)}, got {tuple(target.shape)}"
        ) from None
    if not isinstance(var, Tensor):
        var = torch.full_like(input, float(var))
    if var.shape != input.shape:
        differ = [v for i, v in zip(input.shape, var.shape, strict=False) if i != v]
        if var.shape == input.shape[:-1]:
            var = var.unsqueeze(-1)
        elif var.dim() == input.dim() and var.shape[:-1] == input.shape[:-1] and var.shape[-1] == 1:
            pass  # one variance per row: every torch accepts it
        elif not (torch_at_least("2.10") and var.dim() == input.dim() and sum(differ) == 1):
            # torch 2.10 widened the rule to any one dimension of size 1 (e.g. var (1, D))
            raise ValueError(
                f"var must have the shape of input {tuple(input.shape)}, that shape with one dimension of size 1 "
                f"or without its last dimension, or be a float; got {tuple(var.shape)}"
            )
    if (var < 0).any():
        raise ValueError("var has negative entries")
    var = var + (var.clamp(min=eps) - var).detach()  # straight-through: value clamped, gradient as if not
    loss = 0.5 * (var.log() + (input - target) ** 2 / var)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, reduction)


# --------------------------------------------------------------------------------------------------
# classification
# --------------------------------------------------------------------------------------------------


def _class_dim_last(x: Tensor) -> Tensor:
    """``(N, C, d1, ...) -> (N, d1, ..., C)`` so that the class dimension is last."""
    return x.movedim(1, -1) if x.dim() > 2 else x


def nll_loss(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Negative log-likelihood on log-probabilities: :math:`\ell_n = -w_{y_n} x_{n, y_n}`.

    ``input`` ``(N, C)`` or ``(N, C, d1, ...)`` log-probabilities; ``target`` int64 ``(N)`` or
    ``(N, d1, ...)`` in ``[0, C)`` or ``ignore_index`` (contributes 0). ``'mean'`` divides by
    :math:`\sum_n w_{y_n}` over non-ignored targets.
    """
    _float(input, "input")
    if target.dtype != torch.int64:
        raise TypeError(f"target must be int64 class indices, got {target.dtype}")
    if input.dim() == 1:  # unbatched (C,) with target ()
        loss = nll_loss(input.unsqueeze(0), target.unsqueeze(0), weight, ignore_index, reduction)
        return loss.squeeze(0) if reduction == "none" else loss
    x = _class_dim_last(input)
    keep = target != ignore_index
    safe_t = torch.where(keep, target, torch.zeros_like(target))
    w = torch.ones(x.shape[-1], dtype=x.dtype, device=x.device) if weight is None else weight.to(x.dtype)
    w_n = w[safe_t] * keep
    picked = x.gather(-1, safe_t.unsqueeze(-1)).squeeze(-1)
    loss = -w_n * picked
    return reduce_loss(loss, check_reduction(reduction), weight_sum=w_n.sum())


def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    r"""Cross-entropy on raw logits :math:`x`, with :math:`\log p = \operatorname{log\_softmax}(x)`.

    The target distribution is :math:`q = (1-\varepsilon)\,\mathrm{target} + \varepsilon / C`
    (``label_smoothing`` :math:`\varepsilon`), and :math:`\ell_n = -\sum_c w_c q_{n,c} \log p_{n,c}`.
    Class-index targets (int64 ``(N)`` or ``(N, d1, ...)``): ``'mean'`` divides by
    :math:`\sum_n w_{y_n}` over targets that are not ``ignore_index``. Probability targets (float, same
    shape as ``input``): ``'mean'`` divides by the number of rows :math:`N \cdot d_1 \cdots`.
    ``input`` ``(N, C)``, ``(N, C, d1, ...)`` or unbatched ``(C)``.
    """
    _float(input, "input")
    check_reduction(reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    if input.dim() == 1:  # unbatched (C,) with target () or (C,)
        loss = cross_entropy(input.unsqueeze(0), target.unsqueeze(0), weight, ignore_index, reduction, label_smoothing)
        return loss.squeeze(0) if reduction == "none" else loss
    logp = _class_dim_last(log_softmax(input, 1))
    num_classes = logp.shape[-1]
    w = torch.ones(num_classes, dtype=logp.dtype, device=logp.device) if weight is None else weight.to(logp.dtype)
    if torch.is_floating_point(target):
        _same_shape(input, target)
        q = _class_dim_last(target) * (1 - label_smoothing) + label_smoothing / num_classes
        loss = -(w * q * logp).sum(-1)
        return reduce_loss(loss, reduction)
    if target.dtype != torch.int64:
        raise TypeError(f"target must be int64 class indices or float probabilities, got {target.dtype}")
    keep = target != ignore_index
    safe_t = torch.where(keep, target, torch.zeros_like(target))
    q = torch.zeros_like(logp).scatter_(-1, safe_t.unsqueeze(-1), 1.0)
    q = q * (1 - label_smoothing) + label_smoothing / num_classes
    loss = -(w * q * logp).sum(-1) * keep
    return reduce_loss(loss, reduction, weight_sum=(w[safe_t] * keep).sum())


def linear_cross_entropy(
    input: Tensor,
    linear_weight: Tensor,
    target: Tensor,
    linear_bias: Tensor | None = None,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    options: object | None = None,
) -> Tensor:
    r"""Cross-entropy of the logits :math:`x W^\top + b` (``F.linear_cross_entropy``).

    ``input`` ``(N, in)`` or unbatched ``(in)``, ``linear_weight`` ``(C, *out, in)``, ``linear_bias``
    ``(C, *out)``; the logits have shape ``(N, C, *out)`` (``(C, *out)`` unbatched) and are passed to
    :func:`cross_entropy`. ``options`` (torch's ``LinearCrossEntropyOptions``) chooses how torch
    computes the same number (its chunked path, which never holds all the logits at once); it does not
    change the value, so the reference accepts and ignores it. With ``options=None`` torch itself runs
    this plain linear-then-cross-entropy.
    """
    _float(input, "input")
    if input.dim() not in (1, 2):
        raise ValueError(f"input must be (N, in) or (in), got {tuple(input.shape)}")
    w2 = linear_weight.reshape(-1, linear_weight.shape[-1])
    logits = (input @ w2.T).reshape(*input.shape[:-1], *linear_weight.shape[:-1])
    if linear_bias is not None:
        logits = logits + linear_bias
    return cross_entropy(logits, target, weight, ignore_index, reduction, label_smoothing)


def adaptive_log_softmax(
    input: Tensor,
    target: Tensor,
    head_weight: Tensor,
    tail_weights: Sequence[tuple[Tensor, Tensor]],
    cutoffs: Sequence[int],
    head_bias: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Adaptive softmax (Grave et al., 2017): ``(output, loss)`` as ``nn.AdaptiveLogSoftmaxWithLoss`` returns.

    The classes are split by ``cutoffs`` :math:`0 < k_1 < \dots < k_m < n`: a *shortlist*
    :math:`[0, k_1)` scored by the head, and clusters :math:`[k_i, k_{i+1})`. The head is a linear layer
    ``head_weight`` ``(k_1 + m, in)`` (+ ``head_bias``) whose last :math:`m` outputs score the clusters;
    cluster :math:`i` has its own two-layer projection ``tail_weights[i] = (proj (h_i, in), out (size_i, h_i))``:

    .. math::

        \log p(y) = \begin{cases} \log\operatorname{softmax}(h)_y & y < k_1 \\
            \log\operatorname{softmax}(h)_{k_1 + i} + \log\operatorname{softmax}(t_i)_{y - k_i} & y \in [k_i, k_{i+1})
            \end{cases}

    with :math:`h = W_h x (+ b)`, :math:`t_i = W_{\text{out},i} W_{\text{proj},i}\, x`. ``output`` is
    :math:`\log p(y_n)`, ``(N)`` (``()`` for an unbatched ``(in)`` input with a 0-d target), and
    ``loss`` is :math:`-\frac1N \sum_n \log p(y_n)` (always the mean: the module has no ``reduction``).
    """
    _float(input, "input")
    if target.dtype != torch.int64:
        raise TypeError(f"target must be int64 class indices, got {target.dtype}")
    unbatched = target.dim() == 0
    if unbatched != (input.dim() == 1) or (not unbatched and (input.dim() != 2 or target.shape != input.shape[:1])):
        raise ValueError(f"input (N, in) needs target (N,), input (in) a 0-d target; got {tuple(input.shape)} "
                         f"and {tuple(target.shape)}")
    x, y = (input.unsqueeze(0), target.unsqueeze(0)) if unbatched else (input, target)
    bounds = [0, *cutoffs]
    if len(tail_weights) != len(bounds) - 2:
        raise ValueError(f"{len(cutoffs)} cutoffs (the last = number of classes) need {len(bounds) - 2} tail "
                         f"clusters, got {len(tail_weights)}")
    if ((y < 0) | (y >= bounds[-1])).any():
        raise ValueError(f"target must be in [0, {bounds[-1]}), got values from {int(y.min())} to {int(y.max())}")
    head = x @ head_weight.T + (0 if head_bias is None else head_bias)
    head_logp = log_softmax(head, 1)
    shortlist = bounds[1]
    parts = [head_logp[:, :shortlist]]
    for i, (proj, out) in enumerate(tail_weights):
        parts.append(log_softmax(x @ proj.T @ out.T, 1) + head_logp[:, shortlist + i : shortlist + i + 1])
    logp = torch.cat(parts, 1)  # (N, n_classes): every class's log-probability
    output = logp.gather(1, y.unsqueeze(1)).squeeze(1)
    loss = -output.mean()
    return (output.squeeze(0) if unbatched else output), loss


def binary_cross_entropy(
    input: Tensor, target: Tensor, weight: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    r"""Binary cross-entropy on probabilities: :math:`\ell = -w\,[y\log x + (1-y)\log(1-x)]`.

    Each log is clamped to :math:`\ge -100` (as documented), so :math:`x \in \{0, 1\}` gives a finite loss.
    ``input`` probabilities in ``[0, 1]``, ``target`` float of the same shape; ``weight`` broadcasts.
    """
    _float(input, "input")
    _float(target, "target")
    _same_shape(input, target)
    if ((input < 0) | (input > 1)).any():
        raise ValueError("input must contain probabilities in [0, 1]")
    loss = -(target * input.log().clamp(min=-100) + (1 - target) * (1 - input).log().clamp(min=-100))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    reduction: str = "mean",
    pos_weight: Tensor | None = None,
) -> Tensor:
    r"""Sigmoid + binary cross-entropy on logits: :math:`\ell = -w\,[p\,y\log\sigma(x) + (1-y)\log(1-\sigma(x))]`.

    ``pos_weight`` :math:`p` (a tensor broadcasting against the last dimension, one entry per class in
    multi-label use) scales the positive term. Computed with :math:`\log\sigma(x) = -\log(1 + e^{-x})`.
    """
    _float(input, "input")
    _float(target, "target")
    _same_shape(input, target)
    pos = target * _log_sigmoid(input)
    if pos_weight is not None:
        pos = pos * pos_weight
    loss = -(pos + (1 - target) * _log_sigmoid(-input))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def kl_div(input: Tensor, target: Tensor, reduction: str = "mean", log_target: bool = False) -> Tensor:
    r"""Pointwise KL divergence :math:`\ell = y(\log y - x)` with ``input`` :math:`x` **log**-probabilities.

    Summed over classes this is :math:`\mathrm{KL}(\mathrm{target}\,\Vert\,\mathrm{input})`. ``log_target``:
    the target is given as log-probabilities too, :math:`\ell = e^{y}(y - x)`. Terms with :math:`y = 0`
    are 0. ``reduction='batchmean'`` divides the sum by ``input.size(0)`` (the true KL per example);
    ``'mean'`` divides by the number of elements.
    """
    _float(input, "input")
    if reduction == "batchmean":
        return kl_div(input, target, "sum", log_target) / (input.shape[0] if input.dim() else 1)
    if log_target:
        loss = target.exp() * (target - input)
    else:
        loss = torch.xlogy(target, target) - target * input  # xlogy: 0 * log 0 = 0
    return _reduce(loss, reduction)


def multi_margin_loss(
    input: Tensor,
    target: Tensor,
    p: int = 1,
    margin: float = 1.0,
    weight: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    r"""Multi-class hinge (Weston-Watkins / Crammer-Singer style sum over wrong classes):

    :math:`\ell(x, y) = \frac{1}{C}\sum_{i \ne y} w_y \max(0, \mathrm{margin} - x_y + x_i)^p` with
    ``p`` in {1, 2}. ``input`` ``(N, C)`` scores with ``target`` int64 ``(N)``, or unbatched: ``input``
    ``(C)`` with ``target`` ``()`` or ``(1)``, or a 0-d ``input`` (one class, loss 0). ``'mean'`` averages
    over N.
    """
    _float(input, "input")
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p}")
    if target.dtype != torch.int64:
        raise TypeError(f"target must be int64 class indices, got {target.dtype}")
    if input.dim() <= 1:  # unbatched: (C,) or () with target () or (1,)
        if target.numel() != 1 or target.dim() > 1:
            raise ValueError(f"an unbatched input {tuple(input.shape)} needs a target of shape () or (1,), "
                             f"got {tuple(target.shape)}")
        loss = multi_margin_loss(input.reshape(1, -1), target.reshape(1), p, margin, weight, reduction)
        return loss.reshape(target.shape) if reduction == "none" else loss
    if input.dim() != 2 or target.shape != input.shape[:1]:
        raise ValueError(f"input must be (N, C) with target (N,), got {tuple(input.shape)} and {tuple(target.shape)}")
    num_classes = input.shape[1]
    x_y = input.gather(1, target.unsqueeze(1))
    h = (margin - x_y + input).clamp(min=0) ** p
    h = h * (torch.arange(num_classes, device=input.device) != target.unsqueeze(1))
    if weight is not None:
        h = h * weight.to(input.dtype)[target].unsqueeze(1)
    return _reduce(h.sum(1) / num_classes, reduction)


def multilabel_margin_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    r"""Multi-label hinge: :math:`\ell(x, y) = \sum_{j, i} \max(0, 1 - (x_{y_j} - x_i)) / C`.

    ``target`` int64 ``(N, C)`` lists the positive classes :math:`y_j` and is ended by the first ``-1``;
    :math:`i` runs over the classes that are not positive. ``input`` ``(N, C)``, unbatched ``(C)``, or
    0-d (one class: nothing to rank, loss 0); ``target`` of the same shape.
    """
    _float(input, "input")
    if target.dtype != torch.int64:
        raise TypeError(f"target must be int64, got {target.dtype}")
    _same_shape(input, target)
    if input.dim() > 2:
        raise ValueError(f"input must be (N, C), (C) or 0-d, got {tuple(input.shape)}")
    unbatched = input.dim() <= 1
    if unbatched:
        input, target = input.reshape(1, -1), target.reshape(1, -1)
    num_classes = input.shape[1]
    valid = (target >= 0).long().cumprod(1).bool()  # positions before the first -1
    safe = torch.where(valid, target, torch.zeros_like(target))
    is_pos = torch.zeros(input.shape, dtype=input.dtype, device=input.device)
    is_pos.scatter_add_(1, safe, valid.to(input.dtype))
    is_pos = is_pos > 0
    x_pos = input.gather(1, safe)  # (N, J)
    pair = (1 - (x_pos.unsqueeze(2) - input.unsqueeze(1))).clamp(min=0)  # (N, J, C)
    pair = pair * valid.unsqueeze(2) * (~is_pos).unsqueeze(1)
    loss = pair.sum((1, 2)) / num_classes
    return _reduce(loss.squeeze(0) if unbatched else loss, reduction)


def multilabel_soft_margin_loss(
    input: Tensor, target: Tensor, weight: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    r"""One-vs-all logistic loss: :math:`\ell = -\frac{1}{C}\sum_c w_c[y_c\log\sigma(x_c) + (1-y_c)\log\sigma(-x_c)]`.

    ``input`` ``(N, C)`` logits, ``target`` ``(N, C)`` in {0, 1}; ``'mean'`` averages over N.
    """
    _float(input, "input")
    _same_shape(input, target)
    loss = -(target * _log_sigmoid(input) + (1 - target) * _log_sigmoid(-input))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss.mean(-1), reduction)


def soft_margin_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    r"""Two-class logistic loss with :math:`y \in \{-1, 1\}`: :math:`\ell = \log(1 + e^{-y x})`; shapes ``(*)``."""
    _float(input, "input")
    _same_shape(input, target)
    return _reduce(torch.logaddexp(torch.zeros_like(input), -target * input), reduction)


def hinge_embedding_loss(input: Tensor, target: Tensor, margin: float = 1.0, reduction: str = "mean") -> Tensor:
    r""":math:`\ell = x` if :math:`y = 1`, :math:`\max(0, \mathrm{margin} - x)` if :math:`y = -1`.

    ``input`` is usually a *distance* (e.g. L1 between two embeddings), not a classifier score; this is
    not the SVM hinge. Shapes ``(*)``, 0-d included. As in torch, a target that is not :math:`\pm 1`
    (outside the documented domain) receives both terms: the input where :math:`y \ne -1` plus the
    hinge where :math:`y \ne 1`.
    """
    _float(input, "input")
    _same_shape(input, target)
    zero = torch.zeros_like(input)
    loss = torch.where(target != -1, input, zero) + torch.where(target != 1, (margin - input).clamp(min=0), zero)
    return _reduce(loss, reduction)


# --------------------------------------------------------------------------------------------------
# ranking and metric learning
# --------------------------------------------------------------------------------------------------


def margin_ranking_loss(
    input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0.0, reduction: str = "mean"
) -> Tensor:
    r"""Pairwise ranking hinge :math:`\ell = \max(0, -y(x_1 - x_2) + \mathrm{margin})`, :math:`y \in \{-1, 1\}`."""
    _float(input1, "input1")
    _same_shape(input1, input2, "input1", "input2")
    return _reduce((-target * (input1 - input2) + margin).clamp(min=0), reduction)


def cosine_embedding_loss(
    input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0.0, reduction: str = "mean"
) -> Tensor:
    r""":math:`\ell = 1 - \cos(x_1, x_2)` if :math:`y = 1`, :math:`\max(0, \cos(x_1, x_2) - \mathrm{margin})`
    if :math:`y = -1`. ``input1``/``input2`` ``(N, D)`` with ``target`` ``(N)``, or unbatched ``(D)`` with ``()``."""
    _float(input1, "input1")
    _same_shape(input1, input2, "input1", "input2")
    if input1.dim() not in (1, 2) or target.shape != input1.shape[:-1]:
        raise ValueError(f"inputs must be (N, D) with target (N,), or (D) with target (); got "
                         f"{tuple(input1.shape)} and {tuple(target.shape)}")
    eps = 1e-12  # torch adds this to both squared norms
    cos = (input1 * input2).sum(-1) / ((input1.pow(2).sum(-1) + eps) * (input2.pow(2).sum(-1) + eps)).sqrt()
    loss = torch.where(target == 1, 1 - cos, torch.zeros_like(cos)) + torch.where(
        target == -1, (cos - margin).clamp(min=0), torch.zeros_like(cos)
    )
    return _reduce(loss, reduction)


def triplet_margin_with_distance_loss(
    anchor: Tensor,
    positive: Tensor,
    negative: Tensor,
    *,
    distance_function: Callable[[Tensor, Tensor], Tensor] | None = None,
    margin: float = 1.0,
    swap: bool = False,
    reduction: str = "mean",
) -> Tensor:
    r"""Triplet loss :math:`\ell = \max(d(a, p) - d(a, n) + \mathrm{margin}, 0)` for any distance :math:`d`.

    ``swap`` replaces :math:`d(a, n)` by :math:`\min(d(a, n), d(p, n))`. Default :math:`d`:
    :func:`pairwise_distance` (Euclidean). Embeddings ``(N, D)``.
    """
    _float(anchor, "anchor")
    _same_shape(anchor, positive, "anchor", "positive")
    _same_shape(anchor, negative, "anchor", "negative")
    if margin <= 0:
        raise ValueError(f"margin must be positive, got {margin}")
    d = distance_function if distance_function is not None else pairwise_distance
    d_pos, d_neg = d(anchor, positive), d(anchor, negative)
    if swap:
        d_neg = torch.minimum(d_neg, d(positive, negative))
    return _reduce((d_pos - d_neg + margin).clamp(min=0), reduction)


def triplet_margin_loss(
    anchor: Tensor,
    positive: Tensor,
    negative: Tensor,
    margin: float = 1.0,
    p: float = 2.0,
    eps: float = 1e-6,
    swap: bool = False,
    reduction: str = "mean",
) -> Tensor:
    r"""Triplet loss with the :math:`p`-norm distance :math:`d(x, y) = \lVert x - y + \epsilon\rVert_p`."""
    return triplet_margin_with_distance_loss(
        anchor,
        positive,
        negative,
        distance_function=lambda a, b: pairwise_distance(a, b, p, eps),
        margin=margin,
        swap=swap,
        reduction=reduction,
    )


# --------------------------------------------------------------------------------------------------
# sequence alignment
# --------------------------------------------------------------------------------------------------


def ctc_loss(
    log_probs: Tensor,
    targets: Tensor,
    input_lengths: Tensor | Sequence[int],
    target_lengths: Tensor | Sequence[int],
    blank: int = 0,
    reduction: str = "mean",
    zero_infinity: bool = False,
) -> Tensor:
    r"""Connectionist temporal classification (CTC), :cite:`graves2006ctc`:

    :math:`\ell_n = -\log \sum_{\pi \in \mathcal{B}^{-1}(y_n)} \prod_t p_t(\pi_t)`.

    The sum over all alignments :math:`\pi` (paths through the label sequence with blanks inserted)
    is computed by the forward (alpha) recursion in log space, vectorised over the batch and the
    label positions. ``log_probs`` ``(T, N, C)`` or unbatched ``(T, C)``; ``targets`` ``(N, S)`` padded or
    1-D concatenated; ``'mean'`` divides each :math:`\ell_n` by its target length, then averages.
    Impossible alignments give :math:`+\infty` (0 with ``zero_infinity``).
    """
    _float(log_probs, "log_probs")
    check_reduction(reduction)
    unbatched = log_probs.dim() == 2
    if unbatched:
        log_probs = log_probs.unsqueeze(1)
        targets = targets.reshape(1, -1)
    num_t, batch, _ = log_probs.shape
    in_len = torch.as_tensor(input_lengths, device=log_probs.device).reshape(-1).long()
    tg_len = torch.as_tensor(target_lengths, device=log_probs.device).reshape(-1).long()
    s_max = int(tg_len.max()) if batch else 0
    if targets.dim() == 1:  # concatenated targets -> padded (N, S)
        offsets = torch.cat([tg_len.new_zeros(1), tg_len.cumsum(0)[:-1]])
        pos = torch.arange(s_max, device=targets.device)
        idx = (offsets.unsqueeze(1) + pos).clamp(max=max(targets.numel() - 1, 0))
        padded = targets[idx] if targets.numel() else torch.zeros(batch, s_max, dtype=torch.long)
        targets = torch.where(pos < tg_len.unsqueeze(1), padded, torch.full_like(padded, blank))
    targets = targets[:, :s_max].long()
    # extended label sequence: blank, y1, blank, y2, ..., blank  (length 2S + 1)
    ext = torch.full((batch, 2 * s_max + 1), blank, dtype=torch.long, device=log_probs.device)
    ext[:, 1::2] = targets
    length = ext.shape[1]
    # a skip s-2 -> s is allowed onto a non-blank label that differs from the label two back
    skip = torch.zeros_like(ext, dtype=torch.bool)
    skip[:, 2:] = (ext[:, 2:] != blank) & (ext[:, 2:] != ext[:, :-2])
    neg_inf = torch.tensor(-math.inf, dtype=log_probs.dtype, device=log_probs.device)
    emit = log_probs.gather(2, ext.unsqueeze(0).expand(num_t, -1, -1))  # (T, N, L)
    start = torch.arange(length, device=log_probs.device) < 2
    alpha = torch.where(start, emit[0], neg_inf)
    for t in range(1, num_t):
        prev1 = torch.cat([neg_inf.expand(batch, 1), alpha[:, :-1]], 1)
        prev2 = torch.cat([neg_inf.expand(batch, 2), alpha[:, :-2]], 1)
        prev2 = torch.where(skip, prev2, neg_inf)
        new = _logsumexp(torch.stack([alpha, prev1, prev2]), 0) + emit[t]
        alpha = torch.where((t < in_len).unsqueeze(1), new, alpha)
    last = (2 * tg_len).unsqueeze(1)
    end = torch.cat(
        [alpha.gather(1, last), torch.where(last > 0, alpha.gather(1, (last - 1).clamp(min=0)), neg_inf)], 1
    )
    loss = -_logsumexp(end, 1)
    if zero_infinity:
        loss = torch.where(torch.isinf(loss), torch.zeros_like(loss), loss)
    if reduction == "mean":
        return (loss / tg_len.clamp(min=1).to(loss.dtype)).mean()
    if unbatched and reduction == "none":
        return loss.squeeze(0)
    return _reduce(loss, reduction)


# --------------------------------------------------------------------------------------------------
# the atlas
# --------------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One configuration to check: constructor options ``kwargs`` and forward arguments ``args``.

    ``grad``: also compare the gradients of the floating-point ``args`` that require grad.
    ``reductions``: the reductions to check (all of them by default).
    ``transform``: maps the leaf arguments to the loss arguments, on both sides (e.g. ``log_softmax``
    of raw scores, so that gradients are taken with respect to the scores).
    ``grad_differs``: where torch's backward is *not* the derivative of its documented formula, says how
    (the values must still agree). The gradients are still compared: a difference is recorded in
    :attr:`CheckResult.divergences`, and agreement is a failure (so that a change in torch is noticed).
    """

    label: str
    kwargs: dict
    args: tuple
    grad: bool = True
    reductions: tuple[str, ...] = ("none", "mean", "sum")
    transform: Callable[[tuple], tuple] | None = None
    grad_differs: str = ""


@dataclass
class AtlasEntry:
    """One ``torch.nn`` loss: what it is for, what it expects, its reference and its test cases.

    ``call_reference(module, case, reduction, args)`` evaluates the reference; the default calls
    ``reference(*args, **case.kwargs, reduction=reduction)``.
    """

    name: str
    task: str
    input_kind: str
    target_kind: str
    options: tuple[str, ...]
    reference: Callable[..., Tensor]
    cases: Callable[[torch.Generator], list[Case]]
    note: str = ""
    call_reference: Callable[[nn.Module, Case, str, tuple], Tensor] | None = None
    formula: str = ""
    use_when: str = ""

    @property
    def module_class(self) -> type[nn.Module]:
        """The ``torch.nn`` class this entry describes."""
        return getattr(nn, self.name)


@dataclass
class CheckResult:
    """Outcome of :func:`check_entry`: comparisons run, largest deviations, failures, and documented
    gradient divergences (cases whose ``grad_differs`` was confirmed: torch's gradient is not the formula's)."""

    name: str
    comparisons: int = 0
    max_abs_error: float = 0.0
    max_grad_error: float = 0.0
    failures: list[str] = field(default_factory=list)
    divergences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when at least one comparison ran and none failed."""
        return self.comparisons > 0 and not self.failures


D = torch.float64


def _randn(g: torch.Generator, *shape: int, grad: bool = True, scale: float = 1.0) -> Tensor:
    return (torch.randn(shape, generator=g, dtype=D) * scale).requires_grad_(grad)


def _rand(g: torch.Generator, *shape: int, low: float = 0.0, high: float = 1.0, grad: bool = True) -> Tensor:
    return (low + (high - low) * torch.rand(shape, generator=g, dtype=D)).requires_grad_(grad)


def _classes(g: torch.Generator, c: int, *shape: int) -> Tensor:
    return torch.randint(0, c, shape, generator=g)


def _signs(g: torch.Generator, *shape: int) -> Tensor:
    return torch.randint(0, 2, shape, generator=g).to(D) * 2 - 1


def _weights(g: torch.Generator, c: int) -> Tensor:
    return torch.rand(c, generator=g, dtype=D) + 0.25


def _cases_elementwise(option: str | None, values: Sequence[float]) -> Callable[[torch.Generator], list[Case]]:
    def cases(g: torch.Generator) -> list[Case]:
        out = [Case("(N, D)", {}, (_randn(g, 6, 4, scale=2), _randn(g, 6, 4, grad=False, scale=2)))]
        out.append(Case("(N, D1, D2)", {}, (_randn(g, 3, 2, 5, scale=2), _randn(g, 3, 2, 5, grad=False, scale=2))))
        out.append(Case("0-d", {}, (_randn(g, scale=2), _randn(g, grad=False, scale=2))))
        for v in values if option else ():
            out.append(Case(f"{option}={v}", {option: v}, (_randn(g, 8, 3, scale=2), _randn(g, 8, 3, grad=False))))
        return out

    return cases


def _cases_cross_entropy(g: torch.Generator) -> list[Case]:
    c = 5
    t = _classes(g, c, 7)
    t_ign = t.clone()
    t_ign[[1, 4]] = -100
    t_255 = t.clone()
    t_255[2] = 255
    probs = torch.rand(7, c, generator=g, dtype=D).softmax(1)
    return [
        Case("class indices", {}, (_randn(g, 7, c), t)),
        Case("weight", {"weight": _weights(g, c)}, (_randn(g, 7, c), t)),
        Case("ignore_index=-100 (default)", {}, (_randn(g, 7, c), t_ign)),
        Case("ignore_index=255", {"ignore_index": 255}, (_randn(g, 7, c), t_255)),
        Case("label_smoothing=0.1", {"label_smoothing": 0.1}, (_randn(g, 7, c), t)),
        Case(
            "weight + ignore_index + label_smoothing",
            {"weight": _weights(g, c), "label_smoothing": 0.2},
            (_randn(g, 7, c), t_ign),
        ),
        Case("K-dim (N, C, d1, d2)", {"weight": _weights(g, c)}, (_randn(g, 2, c, 3, 4), _classes(g, c, 2, 3, 4))),
        Case(
            "K-dim (N, C, d1, d2), probability targets",
            {"weight": _weights(g, c)},
            (_randn(g, 2, c, 3, 4), torch.rand(2, c, 3, 4, generator=g, dtype=D).softmax(1)),
        ),
        Case("probability targets", {}, (_randn(g, 7, c), probs)),
        Case(
            "probability targets + weight + label_smoothing",
            {"weight": _weights(g, c), "label_smoothing": 0.15},
            (_randn(g, 7, c), probs),
        ),
        Case("unbatched (C)", {}, (_randn(g, c), torch.tensor(2))),
        Case("unbatched (C), probability target", {}, (_randn(g, c), probs[0])),
        Case("large logits (x100)", {}, (_randn(g, 7, c, scale=100), t)),
    ]


def _cases_nll(g: torch.Generator) -> list[Case]:
    c = 4
    t = _classes(g, c, 9)
    t_ign = t.clone()
    t_ign[[0, 5]] = 3
    return [
        Case("log-probabilities", {}, (log_softmax(_randn(g, 9, c)).detach().requires_grad_(), t)),
        Case("weight", {"weight": _weights(g, c)}, (_randn(g, 9, c), t)),
        Case("ignore_index=3 + weight", {"ignore_index": 3, "weight": _weights(g, c)}, (_randn(g, 9, c), t_ign)),
        Case("K-dim (N, C, d1)", {"weight": _weights(g, c)}, (_randn(g, 3, c, 5), _classes(g, c, 3, 5))),
        Case("unbatched (C)", {"weight": _weights(g, c)}, (_randn(g, c), torch.tensor(1))),
    ]


def _cases_nll2d(g: torch.Generator) -> list[Case]:
    c = 3
    return [
        Case("(N, C, H, W)", {}, (_randn(g, 2, c, 4, 4), _classes(g, c, 2, 4, 4))),
        Case("weight", {"weight": _weights(g, c)}, (_randn(g, 2, c, 3, 3), _classes(g, c, 2, 3, 3))),
    ]


def _cases_bce(g: torch.Generator) -> list[Case]:
    extreme = torch.tensor([[0.0, 1.0, 0.5], [1.0, 0.0, 1e-50], [1e-14, 1e-30, 0.3]], dtype=D)
    return [
        Case("probabilities", {}, (_rand(g, 6, 3, low=0.02, high=0.98), _rand(g, 6, 3, grad=False))),
        Case(
            "weight (broadcast (D,))",
            {"weight": _weights(g, 3)},
            (_rand(g, 6, 3, low=0.02, high=0.98), torch.randint(0, 2, (6, 3), generator=g).to(D)),
        ),
        Case(
            "x in {0, 1e-50, 1e-30, 1e-14, 1}: log clamped at -100, or not but x(1 - x) < 1e-12",
            {},
            (
                extreme.requires_grad_(),
                torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0]], dtype=D),
            ),
            grad_differs="torch's gradient is (x - y) / max(x(1 - x), 1e-12) everywhere, not the "
            "formula's where x(1 - x) < 1e-12 (clamped log: 0, or NaN at x = 0, 1; else -1/x)",
        ),
        Case("0-d", {}, (_rand(g, low=0.02, high=0.98), _rand(g, grad=False))),
    ]


def _cases_bce_logits(g: torch.Generator) -> list[Case]:
    y = torch.randint(0, 2, (6, 4), generator=g).to(D)
    return [
        Case("logits", {}, (_randn(g, 6, 4, scale=3), y)),
        Case("soft targets", {}, (_randn(g, 6, 4), _rand(g, 6, 4, grad=False))),
        Case("weight", {"weight": _weights(g, 4)}, (_randn(g, 6, 4), y)),
        Case("pos_weight (C,)", {"pos_weight": _weights(g, 4) * 3}, (_randn(g, 6, 4), y)),
        Case("weight + pos_weight", {"weight": _weights(g, 4), "pos_weight": _weights(g, 4)}, (_randn(g, 6, 4), y)),
        Case("large logits (x50)", {}, (_randn(g, 6, 4, scale=50), y)),
        Case("0-d", {}, (_randn(g), _rand(g, grad=False))),
    ]


def _cases_kl(g: torch.Generator) -> list[Case]:
    reds = ("none", "mean", "sum", "batchmean")
    p = torch.rand(5, 4, generator=g, dtype=D).softmax(1)
    p0 = p.clone()
    p0[0, 1] = 0.0
    return [
        Case("target probabilities", {}, (log_softmax(_randn(g, 5, 4)).detach().requires_grad_(), p), reductions=reds),
        Case("target with a zero", {}, (log_softmax(_randn(g, 5, 4)).detach().requires_grad_(), p0), reductions=reds),
        Case("log_target=True", {"log_target": True}, (_randn(g, 5, 4), p.log()), reductions=reds),
        Case("0-d", {}, (_randn(g), p[0, 0]), reductions=reds),
    ]


def _cases_poisson(g: torch.Generator) -> list[Case]:
    counts = torch.poisson(torch.full((6, 3), 3.0, dtype=D), generator=g)
    return [
        Case("log_input=True", {}, (_randn(g, 6, 3), counts)),
        Case("log_input=False", {"log_input": False}, (_rand(g, 6, 3, low=0.1, high=5), counts)),
        Case("full=True", {"full": True}, (_randn(g, 6, 3), counts)),
        Case(
            "log_input=False, full=True, eps=1e-3",
            {"log_input": False, "full": True, "eps": 1e-3},
            (_rand(g, 6, 3, low=0.1, high=5), counts),
        ),
        Case("0-d, full=True", {"full": True}, (_randn(g), counts[0, 0])),
    ]


def _cases_gaussian(g: torch.Generator) -> list[Case]:
    return [
        Case("var same shape", {}, (_randn(g, 5, 3), _randn(g, 5, 3, grad=False), _rand(g, 5, 3, low=0.2, high=2))),
        Case(
            "var (N, 1)",
            {"full": True},
            (_randn(g, 5, 3), _randn(g, 5, 3, grad=False), _rand(g, 5, 1, low=0.2, high=2)),
        ),
        Case(
            "var (N,): one dim fewer", {}, (_randn(g, 5, 3), _randn(g, 5, 3, grad=False), _rand(g, 5, low=0.2, high=2))
        ),
        Case(
            "eps=0.5 clamps var",
            {"eps": 0.5},
            (_randn(g, 5, 3), _randn(g, 5, 3, grad=False), _rand(g, 5, 3, low=0.6, high=2)),
        ),
        Case(
            "var below eps: straight-through gradient",
            {"eps": 0.5},
            (_randn(g, 5, 3), _randn(g, 5, 3, grad=False), _rand(g, 5, 3, low=0.05, high=1.0)),
        ),
        Case(
            "target (N, 1) broadcasts",
            {},
            (_randn(g, 5, 3), _randn(g, 5, 1, grad=False), _rand(g, 5, 3, low=0.2, high=2)),
        ),
        *(  # a (1, D) variance is accepted from torch 2.10 on
            [
                Case(
                    "target (1, D), var (1, D)",
                    {},
                    (_randn(g, 5, 3), _randn(g, 1, 3, grad=False), _rand(g, 1, 3, low=0.2, high=2)),
                )
            ]
            if torch_at_least("2.10")
            else []
        ),
        Case("unbatched (D)", {}, (_randn(g, 4), _randn(g, 4, grad=False), _rand(g, 4, low=0.2, high=2))),
    ]


def _cases_pair(margins: Sequence[float]) -> Callable[[torch.Generator], list[Case]]:
    def cases(g: torch.Generator) -> list[Case]:
        return [
            Case(f"margin={m}", {"margin": m} if m is not None else {}, (_randn(g, 8), _randn(g, 8), _signs(g, 8)))
            for m in margins
        ] + [Case("0-d", {}, (_randn(g), _randn(g), _signs(g)))]

    return cases


def _cases_hinge_embedding(g: torch.Generator) -> list[Case]:
    return [
        Case(f"margin={m}", {"margin": m} if m is not None else {}, (_rand(g, 10, low=0.0, high=3.0), _signs(g, 10)))
        for m in (None, 2.0)
    ] + [
        Case("(N, D)", {}, (_rand(g, 4, 3, low=0.0, high=2.0), _signs(g, 4, 3))),
        Case("0-d, y = 1", {}, (_rand(g, low=0.0, high=2.0), torch.tensor(1.0, dtype=D))),
        Case("0-d, y = -1", {}, (_rand(g, low=0.0, high=0.9), torch.tensor(-1.0, dtype=D))),
    ]


def _cases_multi_margin(g: torch.Generator) -> list[Case]:
    c = 5
    return [
        Case("p=1", {}, (_randn(g, 6, c), _classes(g, c, 6))),
        Case("p=2, margin=0.5", {"p": 2, "margin": 0.5}, (_randn(g, 6, c), _classes(g, c, 6))),
        Case("weight, p=1", {"weight": _weights(g, c)}, (_randn(g, 6, c), _classes(g, c, 6))),
        Case("weight, p=2", {"weight": _weights(g, c), "p": 2}, (_randn(g, 6, c), _classes(g, c, 6))),
        Case("unbatched (C), target ()", {"weight": _weights(g, c)}, (_randn(g, c), torch.tensor(3))),
        Case("unbatched (C), target (1)", {}, (_randn(g, c), torch.tensor([1]))),
        Case("0-d input (one class)", {}, (_randn(g), torch.tensor(0))),
    ]


def _cases_multilabel_margin(g: torch.Generator) -> list[Case]:
    t = torch.tensor([[3, 0, -1, 1, 2], [1, 4, 2, -1, -1], [-1, 0, 0, 0, 0], [0, 1, 2, 3, 4]])
    return [
        Case("targets ended by -1", {}, (_randn(g, 4, 5), t)),
        Case("unbatched (C)", {}, (_randn(g, 5), torch.tensor([2, 0, -1, 3, 3]))),
        Case("0-d input (one class)", {}, (_randn(g), torch.tensor(0))),
    ]


def _cases_multilabel_soft(g: torch.Generator) -> list[Case]:
    y = torch.randint(0, 2, (6, 4), generator=g).to(D)
    return [
        Case("multi-hot targets", {}, (_randn(g, 6, 4), y)),
        Case("weight (C,)", {"weight": _weights(g, 4)}, (_randn(g, 6, 4), y)),
    ]


def _cases_soft_margin(g: torch.Generator) -> list[Case]:
    return [
        Case("(N,)", {}, (_randn(g, 9), _signs(g, 9))),
        Case("(N, D)", {}, (_randn(g, 3, 4, scale=5), _signs(g, 3, 4))),
        Case("0-d", {}, (_randn(g), _signs(g))),
    ]


def _cases_cosine(g: torch.Generator) -> list[Case]:
    return [
        Case(f"margin={m}", {"margin": m} if m is not None else {}, (_randn(g, 7, 4), _randn(g, 7, 4), _signs(g, 7)))
        for m in (None, 0.3, -0.2)
    ] + [Case("unbatched (D)", {"margin": 0.1}, (_randn(g, 4), _randn(g, 4), _signs(g)))]


def _cases_triplet(g: torch.Generator) -> list[Case]:
    def trip() -> tuple[Tensor, Tensor, Tensor]:
        return _randn(g, 6, 4), _randn(g, 6, 4), _randn(g, 6, 4)

    return [
        Case("p=2", {}, trip()),
        Case("p=1, margin=2", {"p": 1.0, "margin": 2.0}, trip()),
        Case("p=3, eps=1e-3", {"p": 3.0, "eps": 1e-3}, trip()),
        Case("swap=True", {"swap": True, "margin": 1.5}, trip()),
        Case("unbatched (D)", {}, (_randn(g, 4), _randn(g, 4), _randn(g, 4))),
    ]


def _cosine_distance(x1: Tensor, x2: Tensor) -> Tensor:
    """``1 - cos(x1, x2)`` over the last dimension (a custom distance for the triplet cases)."""
    return 1 - (x1 * x2).sum(-1) / (x1.norm(dim=-1) * x2.norm(dim=-1))


def _cases_triplet_distance(g: torch.Generator) -> list[Case]:
    def trip() -> tuple[Tensor, Tensor, Tensor]:
        return _randn(g, 6, 4), _randn(g, 6, 4), _randn(g, 6, 4)

    return [
        Case("default distance", {}, trip()),
        Case("cosine distance, margin=0.5", {"distance_function": _cosine_distance, "margin": 0.5}, trip()),
        Case("swap=True, L1 distance", {"distance_function": lambda a, b: (a - b).abs().sum(-1), "swap": True}, trip()),
        Case("unbatched (D)", {}, (_randn(g, 4), _randn(g, 4), _randn(g, 4))),
    ]


def _cases_ctc(g: torch.Generator) -> list[Case]:
    t_len, batch, c = 12, 3, 5

    def lp() -> Tensor:  # raw scores; the case's transform turns them into log-probabilities
        return _randn(g, t_len, batch, c)

    padded = torch.tensor([[1, 2, 2, 3], [4, 1, 0, 0], [2, 3, 4, 1]])
    lengths = torch.tensor([4, 2, 3])
    inputs = torch.tensor([12, 9, 7])
    concatenated = torch.cat([padded[i, : lengths[i]] for i in range(batch)])
    impossible = torch.tensor([[1, 1, 1, 1], [2, 2, 2, 2], [1, 2, 1, 2]])
    cases = [
        Case("padded targets (N, S)", {}, (lp(), padded, inputs, lengths)),
        Case("concatenated targets", {}, (lp(), concatenated, inputs, lengths)),
        Case("blank=4", {"blank": 4}, (lp(), torch.where(padded == 4, 0, padded), inputs, lengths)),
        Case(
            "impossible alignment = inf",
            {},
            (lp(), impossible, torch.tensor([12, 6, 12]), torch.tensor([4, 4, 4])),
            grad=False,
        ),
        Case(
            "zero_infinity=True",
            {"zero_infinity": True},
            (lp(), impossible, torch.tensor([12, 6, 12]), torch.tensor([4, 4, 4])),
        ),
        Case("unbatched (T, C)", {}, (_randn(g, t_len, c), padded[0], torch.tensor(12), torch.tensor(4))),
    ]
    for case in cases:
        case.transform = _log_softmax_first
    normalised = log_softmax(_randn(g, t_len, batch, c, grad=False), -1).requires_grad_()
    cases.append(
        Case(
            "gradient w.r.t. log_probs",
            {},
            (normalised, padded, inputs, lengths),
            grad_differs="torch's gradient w.r.t. log_probs is the formula's plus exp(log_probs) times each "
            "sequence's incoming gradient: "
            "its backward assumes log_softmax inputs",
        )
    )
    return cases


def _log_softmax_first(args: tuple) -> tuple:
    """CTC's backward assumes normalised log-probabilities: check gradients w.r.t. the raw scores."""
    return (log_softmax(args[0], -1), *args[1:])


def _cases_linear_ce(g: torch.Generator) -> list[Case]:
    c, d = 5, 6
    t = _classes(g, c, 7)
    t_ign = t.clone()
    t_ign[3] = 1000
    base = {"in_features": d, "num_classes": c, "dtype": D}
    return [
        Case("linear + CE", base, (_randn(g, 7, d), t)),
        Case("bias=True, weight", {**base, "bias": True, "weight": _weights(g, c)}, (_randn(g, 7, d), t)),
        Case(
            "ignore_index + label_smoothing",
            {**base, "ignore_index": 1000, "label_smoothing": 0.1},
            (_randn(g, 7, d), t_ign),
        ),
        Case(
            "out_features=(3,)", {**base, "out_features": (3,), "bias": True}, (_randn(g, 4, d), _classes(g, c, 4, 3))
        ),
        Case("unbatched (in)", {**base, "weight": _weights(g, c)}, (_randn(g, d), torch.tensor(2))),
        Case("probability targets", base, (_randn(g, 7, d), torch.rand(7, c, generator=g, dtype=D).softmax(1))),
        Case(
            "probability targets + weight + label_smoothing",
            {**base, "weight": _weights(g, c), "label_smoothing": 0.15},
            (_randn(g, 7, d), torch.rand(7, c, generator=g, dtype=D).softmax(1)),
        ),
        Case(
            "options: chunked path, batch_chunk_size=2",
            {**base, "bias": True, "options": nn.LinearCrossEntropyOptions(batch_chunk_size=2)},
            (_randn(g, 7, d), t),
            reductions=("none", "mean", "sum"),
        ),
    ]


def _call_linear_ce(module: nn.Module, case: Case, reduction: str, args: tuple) -> Tensor:
    weight = module.linear.weight.detach().reshape(module.num_classes, *module.out_features, -1)
    bias = module.linear.bias
    bias = None if bias is None else bias.detach().reshape(module.num_classes, *module.out_features)
    ignore = case.kwargs.get("ignore_index")
    return linear_cross_entropy(
        args[0],
        weight,
        args[1],
        linear_bias=bias,
        weight=case.kwargs.get("weight"),
        ignore_index=-100 if ignore is None else ignore,
        reduction=reduction,
        label_smoothing=case.kwargs.get("label_smoothing", 0.0),
    )


_REG, _REAL = "regression", "real predictions"
ATLAS: dict[str, AtlasEntry] = {
    e.name: e
    for e in [
        AtlasEntry("L1Loss", _REG, _REAL, "float, same shape", (), l1_loss, _cases_elementwise(None, ())),
        AtlasEntry("MSELoss", _REG, _REAL, "float, same shape", (), mse_loss, _cases_elementwise(None, ())),
        AtlasEntry(
            "HuberLoss",
            "robust regression",
            _REAL,
            "float, same shape",
            ("delta",),
            huber_loss,
            _cases_elementwise("delta", (0.5, 2.0)),
        ),
        AtlasEntry(
            "SmoothL1Loss",
            "robust regression",
            _REAL,
            "float, same shape",
            ("beta",),
            smooth_l1_loss,
            _cases_elementwise("beta", (0.0, 0.5, 2.0)),
        ),
        AtlasEntry(
            "PoissonNLLLoss",
            "count regression",
            "log-rate (or rate)",
            "float counts, same shape",
            ("log_input", "full", "eps"),
            poisson_nll_loss,
            _cases_poisson,
        ),
        AtlasEntry(
            "GaussianNLLLoss",
            "regression with variance",
            "mean + variance (>0)",
            "float, same shape",
            ("var shapes", "full", "eps"),
            gaussian_nll_loss,
            _cases_gaussian,
            note="var clamped at eps straight-through: the gradient is the formula's at the clamped var",
        ),
        AtlasEntry(
            "CrossEntropyLoss",
            "multi-class",
            "logits (N, C, ...)",
            "int64 (N, ...) or float probs (N, C, ...)",
            ("weight", "ignore_index", "label_smoothing", "probability targets", "K-dim"),
            cross_entropy,
            _cases_cross_entropy,
        ),
        AtlasEntry(
            "LinearCrossEntropyLoss",
            "multi-class (linear head + CE)",
            "features (N, in)",
            "int64 (N, *out) or float probs (N, C, *out)",
            ("bias", "weight", "ignore_index", "label_smoothing", "out_features", "options"),
            linear_cross_entropy,
            _cases_linear_ce,
            call_reference=_call_linear_ce,
        ),
        AtlasEntry(
            "NLLLoss",
            "multi-class",
            "log-probabilities (N, C, ...)",
            "int64 (N, ...)",
            ("weight", "ignore_index", "K-dim"),
            nll_loss,
            _cases_nll,
        ),
        AtlasEntry(
            "NLLLoss2d",
            "multi-class (deprecated alias)",
            "log-probabilities (N, C, H, W)",
            "int64 (N, H, W)",
            ("weight",),
            nll_loss,
            _cases_nll2d,
            note="deprecated: FutureWarning, use NLLLoss",
        ),
        AtlasEntry(
            "BCELoss",
            "binary / multi-label",
            "probabilities in [0, 1]",
            "float, same shape",
            ("weight", "log clamp"),
            binary_cross_entropy,
            _cases_bce,
            note="gradient (x - y) / max(x(1 - x), 1e-12) everywhere: not the formula's below 1e-12",
        ),
        AtlasEntry(
            "BCEWithLogitsLoss",
            "binary / multi-label",
            "logits",
            "float, same shape",
            ("weight", "pos_weight"),
            binary_cross_entropy_with_logits,
            _cases_bce_logits,
        ),
        AtlasEntry(
            "MultiLabelSoftMarginLoss",
            "multi-label",
            "logits (N, C)",
            "float 0/1 (N, C)",
            ("weight",),
            multilabel_soft_margin_loss,
            _cases_multilabel_soft,
        ),
        AtlasEntry(
            "MultiLabelMarginLoss",
            "multi-label",
            "scores (N, C)",
            "int64 (N, C), -1 ends the list",
            (),
            multilabel_margin_loss,
            _cases_multilabel_margin,
        ),
        AtlasEntry(
            "MultiMarginLoss",
            "multi-class (SVM hinge)",
            "scores (N, C)",
            "int64 (N)",
            ("p", "margin", "weight"),
            multi_margin_loss,
            _cases_multi_margin,
        ),
        AtlasEntry(
            "SoftMarginLoss",
            "binary (labels +-1)",
            "scores",
            "float +-1, same shape",
            (),
            soft_margin_loss,
            _cases_soft_margin,
        ),
        AtlasEntry(
            "HingeEmbeddingLoss",
            "similarity learning",
            "distances",
            "float +-1, same shape",
            ("margin",),
            hinge_embedding_loss,
            _cases_hinge_embedding,
        ),
        AtlasEntry(
            "KLDivLoss",
            "distribution matching",
            "log-probabilities",
            "probs (or log-probs), same shape",
            ("log_target", "batchmean"),
            kl_div,
            _cases_kl,
        ),
        AtlasEntry(
            "MarginRankingLoss",
            "ranking",
            "two score tensors (N)",
            "float +-1 (N)",
            ("margin",),
            margin_ranking_loss,
            _cases_pair((None, 0.5)),
        ),
        AtlasEntry(
            "CosineEmbeddingLoss",
            "metric learning",
            "two embeddings (N, D)",
            "float +-1 (N)",
            ("margin",),
            cosine_embedding_loss,
            _cases_cosine,
        ),
        AtlasEntry(
            "TripletMarginLoss",
            "metric learning",
            "anchor/pos/neg embeddings (N, D)",
            "none (implicit)",
            ("margin", "p", "eps", "swap"),
            triplet_margin_loss,
            _cases_triplet,
        ),
        AtlasEntry(
            "TripletMarginWithDistanceLoss",
            "metric learning",
            "anchor/pos/neg embeddings (N, D)",
            "none (implicit)",
            ("distance_function", "margin", "swap"),
            triplet_margin_with_distance_loss,
            _cases_triplet_distance,
        ),
        AtlasEntry(
            "CTCLoss",
            "sequence alignment",
            "log-probabilities (T, N, C)",
            "int64 (N, S) or concatenated",
            ("blank", "zero_infinity", "concatenated targets"),
            ctc_loss,
            _cases_ctc,
            note="backward assumes log_softmax input: gradient w.r.t. log_probs is not the formula's",
        ),
    ]
}


#: For the reader: each loss's per-element formula (:math:`x` input, :math:`y` target, :math:`w` weight)
#: and when to reach for it. Kept apart from the entries above so that the table reads as a reference.
_GUIDE: dict[str, tuple[str, str]] = {
    "L1Loss": ("ℓ = |x − y|", "regression robust to outliers (fits the median)"),
    "MSELoss": ("ℓ = (x − y)²", "regression with roughly Gaussian noise (fits the mean)"),
    "HuberLoss": ("ℓ = ½r² if |r| < δ else δ(|r| − ½δ), r = x − y",
                  "regression with some outliers; δ in target units"),
    "SmoothL1Loss": ("ℓ = ½r²/β if |r| < β else |r| − ½β, r = x − y",
                     "Huber divided by β (box regression in detection)"),
    "PoissonNLLLoss": ("ℓ = eˣ − y·x (log_input) or x − y·log(x + ε)", "count targets (events per interval)"),
    "GaussianNLLLoss": ("ℓ = ½(log v + (x − y)²/v), v = max(σ², ε)",
                        "regression that also predicts its own variance"),
    "CrossEntropyLoss": ("ℓₙ = −Σ_c w_c q_nc log softmax(x)_nc; 'mean' ÷ Σₙ w_yₙ (index targets)",
                         "single-label classification from raw logits: the default"),
    "LinearCrossEntropyLoss": ("CrossEntropyLoss of the logits x·Wᵀ + b",
                               "a huge output layer, with options= for the chunked path (default: plain)"),
    "NLLLoss": ("ℓₙ = −w_yₙ x_n,yₙ; 'mean' ÷ Σₙ w_yₙ", "the model already outputs log-probabilities"),
    "NLLLoss2d": ("as NLLLoss", "never: deprecated alias of NLLLoss"),
    "BCELoss": ("ℓ = −w[y log x + (1 − y) log(1 − x)], logs clamped ≥ −100",
                "only if the model outputs probabilities; prefer BCEWithLogitsLoss"),
    "BCEWithLogitsLoss": ("ℓ = −w[p·y log σ(x) + (1 − y) log σ(−x)]", "binary or multi-label classification"),
    "MultiLabelSoftMarginLoss": ("ℓₙ = −(1/C) Σ_c w_c[y_c log σ(x_c) + (1 − y_c) log σ(−x_c)]",
                                 "multi-label; BCEWithLogits averaged over classes per example"),
    "MultiLabelMarginLoss": ("ℓₙ = Σ_j Σ_(i ∉ y) max(0, 1 − (x_yⱼ − x_i)) / C",
                             "multi-label ranking: every positive above every negative"),
    "MultiMarginLoss": ("ℓₙ = (1/C) Σ_(i ≠ y) w_y max(0, margin − x_y + x_i)ᵖ",
                        "multi-class SVM (hinge) instead of cross-entropy"),
    "SoftMarginLoss": ("ℓ = log(1 + e^(−y·x)), y = ±1", "binary classification with ±1 labels"),
    "HingeEmbeddingLoss": ("ℓ = x if y = 1; max(0, margin − x) if y = −1",
                           "learning a distance: small for similar pairs, ≥ margin otherwise"),
    "KLDivLoss": ("ℓ = y(log y − x), x = log-probabilities", "matching a distribution (distillation); 'batchmean'"),
    "MarginRankingLoss": ("ℓ = max(0, −y(x₁ − x₂) + margin)", "learning to rank from pairs"),
    "CosineEmbeddingLoss": ("ℓ = 1 − cos(x₁, x₂) if y = 1; max(0, cos(x₁, x₂) − margin) if y = −1",
                            "embeddings whose cosine says similar / dissimilar"),
    "TripletMarginLoss": ("ℓ = max(0, ‖a − p‖ₚ − ‖a − n‖ₚ + margin)",
                          "metric learning from (anchor, positive, negative) triplets"),
    "TripletMarginWithDistanceLoss": ("ℓ = max(0, d(a, p) − d(a, n) + margin)", "triplets with your own distance d"),
    "CTCLoss": ("ℓₙ = −log Σ_(alignments π of yₙ) Π_t p_t(π_t)",
                "sequence labels without alignment (speech, handwriting)"),
}
#: Losses newer than the book's oldest supported torch, with the release that brought them.
NEWER_LOSSES: dict[str, str] = {"LinearCrossEntropyLoss": "2.13"}

#: Atlas entries the running torch cannot check, with the reason (``{name: "new in torch 2.13"}``).
SKIPPED: dict[str, str] = {
    name: f"new in torch {NEWER_LOSSES.get(name, '?')}; this torch is {torch.__version__}"
    for name in ATLAS
    if not hasattr(nn, name)
}
ATLAS = {
    name: replace(entry, formula=_GUIDE[name][0], use_when=_GUIDE[name][1])
    for name, entry in ATLAS.items()
    if name not in SKIPPED
}


def torch_loss_classes() -> list[str]:
    """Names of the loss classes exported by the installed ``torch.nn`` (subclasses of ``_Loss``)."""
    base = nn.modules.loss._Loss
    return sorted(
        name
        for name, obj in vars(nn).items()
        if inspect.isclass(obj) and issubclass(obj, base) and obj is not base and not name.startswith("_")
    )


def _leaves(args: tuple) -> list[Tensor]:
    return [a for a in args if isinstance(a, Tensor) and a.requires_grad]


def _fresh(args: tuple) -> tuple:
    return tuple(a.detach().clone().requires_grad_(a.requires_grad) if isinstance(a, Tensor) else a for a in args)


def _build(entry: AtlasEntry, case: Case, reduction: str) -> nn.Module:
    torch.manual_seed(0)  # modules with parameters (LinearCrossEntropyLoss) are initialised reproducibly
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # NLLLoss2d is deprecated
        return entry.module_class(**case.kwargs, reduction=reduction)


def check_entry(entry: AtlasEntry, seed: int = 0, rtol: float = RTOL, atol: float = ATOL) -> CheckResult:
    """Compare ``torch.nn.<entry.name>`` with the reference on every case and reduction.

    Values and (where ``case.grad``) the gradients of the inputs that require grad are compared with
    ``torch.allclose(rtol, atol)`` in float64; gradients use a random cotangent so that a wrong
    per-element gradient cannot cancel in a sum. Failures are collected, not raised.
    """
    result = CheckResult(entry.name)
    g = torch.Generator().manual_seed(seed)
    for case in entry.cases(g):
        for reduction in case.reductions:
            module = _build(entry, case, reduction)
            args_t, args_r = _fresh(case.args), _fresh(case.args)
            in_t, in_r = (
                (args_t, args_r) if case.transform is None else (case.transform(args_t), case.transform(args_r))
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # KLDivLoss 'mean' warns, by design
                out_t = module(*in_t)
            if entry.call_reference is not None:
                out_r = entry.call_reference(module, case, reduction, in_r)
            else:
                out_r = entry.reference(*in_r, **case.kwargs, reduction=reduction)
            where = f"{case.label}, reduction={reduction}"
            result.comparisons += 1
            if out_t.shape != out_r.shape:
                result.failures.append(f"{where}: shape {tuple(out_t.shape)} vs {tuple(out_r.shape)}")
                continue
            finite = torch.isfinite(out_t) & torch.isfinite(out_r)
            err = (out_t.detach() - out_r.detach())[finite].abs().max().item() if finite.any() else 0.0
            result.max_abs_error = max(result.max_abs_error, err)
            if not torch.allclose(out_t, out_r, rtol=rtol, atol=atol):
                result.failures.append(f"{where}: value differs by {err:.3g}")
                continue
            leaves_t, leaves_r = _leaves(args_t), _leaves(args_r)
            if not (case.grad and leaves_t):
                continue
            v = torch.randn(out_t.shape, generator=torch.Generator().manual_seed(1), dtype=out_t.dtype)
            grads_t = torch.autograd.grad((out_t * v).sum(), leaves_t, allow_unused=True)
            grads_r = torch.autograd.grad((out_r * v).sum(), leaves_r, allow_unused=True)
            agree = True
            for i, (gt, gr) in enumerate(zip(grads_t, grads_r, strict=True)):
                gt = torch.zeros_like(leaves_t[i]) if gt is None else gt
                gr = torch.zeros_like(leaves_r[i]) if gr is None else gr
                gap = (gt - gr).abs().nan_to_num(nan=math.inf).max().item()
                if torch.allclose(gt, gr, rtol=rtol, atol=atol):
                    if not case.grad_differs:
                        result.max_grad_error = max(result.max_grad_error, gap)
                    continue
                agree = False
                if case.grad_differs:
                    result.divergences.append(f"{where}: {case.grad_differs} (largest gap {gap:.3g})")
                else:
                    result.max_grad_error = max(result.max_grad_error, gap)
                    result.failures.append(f"{where}: gradient of argument {i} differs by {gap:.3g}")
            if case.grad_differs and agree:
                result.failures.append(f"{where}: expected torch's gradient to differ ({case.grad_differs}), it agrees")
    return result


def atlas_frame(results: dict[str, CheckResult] | None = None):
    """The atlas for a reader, as a ``pandas.DataFrame``: task, formula, input, target, when to use it.

    With ``results`` (from :func:`check_entry`) a last column says whether the reference agreed with
    torch; the evidence itself is :func:`atlas_checks_frame`.
    """
    import pandas as pd

    rows = []
    for name, e in ATLAS.items():
        row = {"loss": name, "task": e.task, "formula (per element)": e.formula, "input": e.input_kind,
               "target": e.target_kind, "use when": e.use_when}
        if results is not None:
            row["verified"] = _verdict(results[name])
        rows.append(row)
    return pd.DataFrame(rows).set_index("loss")


def _verdict(r: CheckResult) -> str:
    if not r.ok:
        return f"NO ({len(r.failures)} failures)"
    return "yes (gradient: see note)" if r.divergences else "yes"


def atlas_checks_frame(results: dict[str, CheckResult]):
    """The verification evidence, one row per loss: options checked, comparisons, largest differences."""
    import pandas as pd

    rows = []
    for name, e in ATLAS.items():
        r = results[name]
        rows.append({
            "loss": name,
            "options checked": ", ".join(e.options) or "-",
            "cases x reductions": r.comparisons,
            "max |value diff|": f"{r.max_abs_error:.1e}",
            "max |grad diff|": f"{r.max_grad_error:.1e}",
            "gradient differs from the formula": len({d.split(", reduction=")[0] for d in r.divergences}),
            "verified": _verdict(r),
            "note": e.note,
        })
    return pd.DataFrame(rows).set_index("loss")
