"""Weighted cross-entropy taken apart one element at a time, for tables computed by hand.

For logits :math:`z` of shape ``(N, C)`` or ``(N, C, d1, ...)``, class-index targets :math:`y` of
shape ``(N)`` or ``(N, d1, ...)``, class weights :math:`w` of shape ``(C,)``, ``ignore_index``
:math:`k` and label smoothing :math:`\\varepsilon`, ``F.cross_entropy`` computes, for every element
:math:`i` (a sample, or one position of a sample), with :math:`m_i = [y_i \\ne k]`:

.. math::

    \\operatorname{lse}_i = \\log \\sum_c e^{z_{ic}}, \\qquad
    -\\log p_{i y_i} = \\operatorname{lse}_i - z_{i y_i}, \\qquad
    \\omega_i = m_i\\, w_{y_i},

    \\ell_i = (1 - \\varepsilon)\\, \\omega_i (-\\log p_{i y_i})
             + \\frac{\\varepsilon}{C}\\, m_i \\sum_c w_c (-\\log p_{ic}),

    \\text{'sum'} = \\sum_i \\ell_i, \\qquad
    \\text{'mean'} = \\frac{\\sum_i \\ell_i}{\\sum_i \\omega_i}.

The 'mean' divides by the total weight of the non-ignored targets, not by their number; with no
weight every :math:`w_c = 1` and it is the plain mean over non-ignored elements. The smoothing term
is divided by the same total weight (that is what torch does, see :func:`cross_entropy_terms`).

:func:`cross_entropy_terms` returns every intermediate quantity of this computation as a
:class:`CrossEntropyTerms`, whose :meth:`~CrossEntropyTerms.reduce` reproduces ``F.cross_entropy``
and whose :meth:`~CrossEntropyTerms.to_frame` is the table the chapter displays.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch

from helpers.validation import check_class_targets, check_class_weight, reduce_loss


@dataclass(frozen=True)
class CrossEntropyTerms:
    """The per-element terms of a (weighted, smoothed) cross-entropy, flattened to ``M`` elements.

    ``M = N * d1 * ...``; element ``i`` is ``positions[i]`` = ``(n, d1, ...)`` in the original layout.

    Attributes:
        positions: index tuple of each element in the target tensor.
        logits: ``(M, C)`` the logits of each element (class dimension last).
        target: ``(M,)`` the class index (``ignore_index`` where ignored).
        mask: ``(M,)`` bool, False where the target equals ``ignore_index``.
        logsumexp: ``(M,)`` :math:`\\log \\sum_c e^{z_{ic}}`.
        nll: ``(M,)`` :math:`-\\log p_{i y_i}` (0 where ignored).
        weight: ``(M,)`` :math:`\\omega_i = w_{y_i}` (0 where ignored; 1 when no weight was given).
        weighted_nll: ``(M,)`` :math:`\\omega_i (-\\log p_{i y_i})`.
        smoothing: ``(M,)`` :math:`\\sum_c w_c (-\\log p_{ic})` (0 where ignored).
        loss: ``(M,)`` :math:`\\ell_i`, the element's contribution to the 'sum' reduction.
        label_smoothing: :math:`\\varepsilon`.
    """

    positions: tuple[tuple[int, ...], ...]
    logits: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor
    logsumexp: torch.Tensor
    nll: torch.Tensor
    weight: torch.Tensor
    weighted_nll: torch.Tensor
    smoothing: torch.Tensor
    loss: torch.Tensor
    label_smoothing: float

    @property
    def count(self) -> int:
        """Number of elements whose target is not ``ignore_index``."""
        return int(self.mask.sum())

    @property
    def loss_sum(self) -> torch.Tensor:
        """:math:`\\sum_i \\ell_i` (the 'sum' reduction)."""
        return self.loss.sum()

    @property
    def weight_sum(self) -> torch.Tensor:
        """:math:`\\sum_i \\omega_i`, the denominator of the 'mean' reduction."""
        return self.weight.sum()

    def reduce(self, reduction: str = "mean") -> torch.Tensor:
        """The value ``F.cross_entropy`` returns for ``reduction`` ('none' gives the ``(M,)`` losses, flattened).

        'mean' with every target ignored is 0/0 = NaN, as in torch.
        """
        return reduce_loss(self.loss, reduction, weight_sum=self.weight_sum)

    def to_frame(self, decimals: int = 4) -> pd.DataFrame:
        """One row per element: position, logits, target, log-sum-exp, -log p, weight, weighted loss.

        The smoothing columns are added when ``label_smoothing > 0``. Numbers are rounded to ``decimals``.
        """
        rows = []
        for i, pos in enumerate(self.positions):
            row = {
                "element (n, d...)": str(pos),
                "logits z_i": "[" + ", ".join(f"{v:g}" for v in self.logits[i].tolist()) + "]",
                "target y_i": int(self.target[i]),
                "log-sum-exp": float(self.logsumexp[i]),
                "-log p_(i,y_i)": float(self.nll[i]) if self.mask[i] else float("nan"),
                "weight w_(y_i)": float(self.weight[i]),
                "weighted loss": float(self.weighted_nll[i]),
            }
            if self.label_smoothing > 0:
                row["sum_c w_c (-log p_ic)"] = float(self.smoothing[i])
                row["smoothed loss l_i"] = float(self.loss[i])
            rows.append(row)
        return pd.DataFrame(rows).round(decimals)


def cross_entropy_terms(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | Sequence[float] | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
) -> CrossEntropyTerms:
    """Compute every term of ``F.cross_entropy(input, target, weight, ignore_index=..., label_smoothing=...)``.

    The formula is in the module docstring. Plain tensor operations only (no call to a torch loss).

    Args:
        input: logits, ``(N, C)`` or ``(N, C, d1, ...)``, floating point.
        target: class indices, ``(N)`` or ``(N, d1, ...)``, int64, in ``[0, C)`` or ``ignore_index``.
        weight: per-class weights ``(C,)``, non-negative; cast to the dtype and device of ``input``.
        ignore_index: target value that contributes neither loss nor weight.
        label_smoothing: :math:`\\varepsilon` in ``[0, 1]``.

    Raises:
        TypeError: non-floating ``input`` or non-int64 ``target``.
        ValueError: mismatched shapes, targets out of range, a bad ``weight`` or ``label_smoothing``.
    """
    num_classes = check_class_targets(input, target, ignore_index)
    w = check_class_weight(weight, num_classes)
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)):
        raise TypeError(f"label_smoothing must be a float in [0, 1], got {type(label_smoothing).__name__}")
    if not 0.0 <= float(label_smoothing) <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    eps = float(label_smoothing)

    logits = input.movedim(1, -1).reshape(-1, num_classes)  # (M, C), class dimension last
    flat_target = target.reshape(-1)
    w = torch.ones(num_classes, dtype=input.dtype, device=input.device) if w is None else w.to(input)
    mask = flat_target != ignore_index
    safe_target = torch.where(mask, flat_target, torch.zeros_like(flat_target))

    lse = torch.logsumexp(logits, dim=1)
    neg_log_p = lse.unsqueeze(1) - logits  # (M, C): -log p_ic
    zero = torch.zeros((), dtype=input.dtype, device=input.device)
    nll = torch.where(mask, neg_log_p.gather(1, safe_target.unsqueeze(1)).squeeze(1), zero)
    omega = torch.where(mask, w[safe_target], zero)
    weighted_nll = omega * nll
    smoothing = torch.where(mask, (neg_log_p * w).sum(dim=1), zero)
    loss = (1 - eps) * weighted_nll + (eps / num_classes) * smoothing

    shape = tuple(target.shape)
    positions = tuple(itertools.product(*(range(s) for s in shape)))
    return CrossEntropyTerms(
        positions=positions,
        logits=logits,
        target=flat_target,
        mask=mask,
        logsumexp=lse,
        nll=nll,
        weight=omega,
        weighted_nll=weighted_nll,
        smoothing=smoothing,
        loss=loss,
        label_smoothing=eps,
    )


def effective_class_weights(
    batch_labels: torch.Tensor, weight: torch.Tensor | Sequence[float], normalizer: float | None = None
) -> torch.Tensor:
    """Effective weight of one sample of each class in each batch, relative to an unweighted mean.

    With weighted 'mean', a sample of class :math:`c` in batch :math:`b` (size :math:`B`) enters the
    loss with coefficient :math:`w_c / S_b`, :math:`S_b = \\sum_{j \\in b} w_{y_j}`. Multiplying by
    :math:`B` compares it with the :math:`1/B` of an unweighted mean:

    .. math::  e_{bc} = \\frac{B\\, w_c}{S_b} \\quad\\text{or, with a fixed normalizer } K,\\quad
               e_{bc} = \\frac{B\\, w_c}{K}.

    Args:
        batch_labels: ``(num_batches, B)`` int64 class indices of each batch.
        weight: ``(C,)`` class weights.
        normalizer: a fixed denominator :math:`K` used instead of :math:`S_b` (e.g. ``B`` times the
            mean weight of the training set); None for PyTorch's batch-dependent :math:`S_b`.

    Returns:
        ``(num_batches, C)`` tensor of :math:`e_{bc}` (defined for every class, present in the batch or not).

    Raises:
        TypeError: ``batch_labels`` is not int64.
        ValueError: ``batch_labels`` is not 2-D, has labels outside ``[0, C)``, a bad ``weight`` or a
            non-positive ``normalizer``.
    """
    if batch_labels.dtype != torch.int64:
        raise TypeError(f"batch_labels must be an int64 tensor of class indices, got dtype {batch_labels.dtype}")
    if batch_labels.dim() != 2 or batch_labels.numel() == 0:
        raise ValueError(f"batch_labels must have shape (num_batches, B) with B > 0, got {tuple(batch_labels.shape)}")
    if weight is None:
        raise TypeError("weight must be a (C,) tensor or sequence of class weights, got None")
    w = check_class_weight(weight).to(device=batch_labels.device)
    low, high = int(batch_labels.min()), int(batch_labels.max())
    if low < 0 or high >= w.numel():
        raise ValueError(f"batch_labels must be in [0, {w.numel()}), got values from {low} to {high}")
    batch_size = batch_labels.shape[1]
    if normalizer is None:
        denominators = w[batch_labels].sum(dim=1, keepdim=True)  # (num_batches, 1): S_b
    else:
        if not float(normalizer) > 0:
            raise ValueError(f"normalizer must be positive, got {normalizer}")
        denominators = torch.full((batch_labels.shape[0], 1), float(normalizer), dtype=w.dtype, device=w.device)
    return batch_size * w.unsqueeze(0) / denominators


def sample_effective_weights(
    batch_labels: torch.Tensor, weight: torch.Tensor | Sequence[float], normalizer: float | None = None
) -> torch.Tensor:
    r"""Effective weight of every sample *slot* of every batch: :math:`e_{bj} = B\, w_{y_{bj}} / S_b`.

    The same quantity as :func:`effective_class_weights`, read off at the samples each batch really
    holds, so that averaging it over the slots of class :math:`c` gives what a class-:math:`c` *sample*
    receives (see :func:`per_sample_class_weights`). Arguments as in :func:`effective_class_weights`.

    Returns:
        ``(num_batches, B)`` tensor of :math:`e_{bj}`.
    """
    per_class = effective_class_weights(batch_labels, weight, normalizer)
    return per_class.gather(1, batch_labels.to(per_class.device))


def per_sample_class_weights(
    batch_labels: torch.Tensor, weight: torch.Tensor | Sequence[float], normalizer: float | None = None
) -> torch.Tensor:
    r"""Average effective weight a sample of each class receives, over the batches that contain it.

    .. math::  \bar e_c = \frac{\sum_b n_{bc}\, e_{bc}}{\sum_b n_{bc}}
               = \frac{\sum_b n_{bc}\, B\, w_c / S_b}{\sum_b n_{bc}},

    where :math:`n_{bc}` is the number of class-:math:`c` samples in batch :math:`b`. Batches without
    class :math:`c` do not count (its samples are not there), and a batch counts once per sample of
    class :math:`c` it holds. Because those samples' own weight is part of :math:`S_b`, a rare class with
    a large weight raises the denominator of exactly the batches it appears in: :math:`\bar e_c` can be
    *below* the constant :math:`B w_c / \mathbb{E}[S_b]` even though the plain average of
    :math:`e_{bc}` over all batches is above it (Jensen).

    Returns:
        ``(C,)`` tensor; NaN for a class that appears in no batch.
    """
    eff = sample_effective_weights(batch_labels, weight, normalizer)
    num_classes = effective_class_weights(batch_labels[:1], weight).shape[1]
    labels = batch_labels.reshape(-1).to(eff.device)
    totals = torch.zeros(num_classes, dtype=eff.dtype, device=eff.device).index_add_(0, labels, eff.reshape(-1))
    counts = torch.bincount(labels, minlength=num_classes).to(eff.dtype)
    return totals / counts


def per_sample_class_cv(
    batch_labels: torch.Tensor, weight: torch.Tensor | Sequence[float], normalizer: float | None = None
) -> torch.Tensor:
    r"""Coefficient of variation of the effective weight a sample of each class receives.

    The spread of :math:`e_{bj} = B\, w_{y_{bj}} / S_b` over the sample slots of class :math:`c`
    (every batch counted once per class-:math:`c` sample it holds, as in
    :func:`per_sample_class_weights`), relative to its mean:

    .. math::  \mathrm{CV}_c = \frac{\operatorname{std}_{j: y_j = c}(e_j)}{\operatorname{mean}_{j: y_j = c}(e_j)},

    with the sample standard deviation (divisor :math:`n_c - 1`). Unlike the spread of
    :math:`e_{bc}` over *all* batches, which is the spread of :math:`B / S_b` and hence the same for
    every class by construction, this one differs between classes: a rare class's own large weight
    is part of every :math:`S_b` it appears in. Arguments as in :func:`effective_class_weights`.

    Returns:
        ``(C,)`` float64 tensor; NaN for a class with fewer than two samples in all the batches.
    """
    eff = sample_effective_weights(batch_labels, weight, normalizer).double().reshape(-1)
    num_classes = effective_class_weights(batch_labels[:1], weight).shape[1]
    labels = batch_labels.reshape(-1).to(eff.device)
    counts = torch.bincount(labels, minlength=num_classes).double()
    sums = torch.zeros(num_classes, dtype=torch.float64, device=eff.device).index_add_(0, labels, eff)
    means = sums / counts
    squares = torch.zeros_like(sums).index_add_(0, labels, (eff - means[labels]) ** 2)
    std = (squares / (counts - 1)).sqrt()
    return torch.where(counts > 1, std / means, torch.full_like(std, float("nan")))
