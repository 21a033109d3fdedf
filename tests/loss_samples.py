"""Sample inputs for every loss module in ``helpers``: the registry of ``tests/test_loss_contract.py``.

In the manner of PyTorch's ``ModuleInfo`` (``torch/testing/_internal/common_modules.py``), each loss
module registers its samples once and every generic test of the contract runs on all of them. A
loss module found in ``helpers`` without an entry here makes the contract suite fail; a new loss
joins by adding its samples, and a module that fails a generic test is fixed, not exempted. Where a
loss differs from torch by design, its sample declares the difference and the reason in a field the
generic test reads (``ignored_mean_is_nan=False`` for :class:`SoftDiceLoss`: its all-ignored ``'mean'``
is 0, the Dice of an empty set, and the test checks that value), never by skipping the test.

A :class:`LossSample` builds the module for a reduction and the float64 CPU inputs of one call; the
differentiated inputs are listed by position, and the ``bad`` cases say which documented error a
wrong argument gives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from helpers.class_balanced import ClassBalancedSigmoidFocalLoss
from helpers.custom_losses import LabelSmoothingCrossEntropy, SigmoidFocalLoss, SoftDiceLoss, UncertaintyWeightedLoss
from helpers.fast_focal import FastFocalLoss
from helpers.losses import BalancedSoftmaxLoss, FocalLoss, LDAMLoss, LogitAdjustedLoss
from helpers.onehot_losses import OneHotMSELoss

F64 = torch.float64
COUNTS = (40, 15, 6, 2)
N, C = 6, 4


@dataclass(frozen=True)
class BadInput:
    """A wrong argument: ``change(inputs)`` gives the wrong inputs, which must raise ``error`` matching ``match``."""

    label: str
    change: Callable[[tuple[Tensor, ...]], tuple[Tensor, ...]]
    error: type[Exception]
    match: str


@dataclass(frozen=True)
class LossSample:
    """One way to call a loss module.

    ``build(reduction)`` returns the module (float32 buffers, on the CPU); ``make()`` the float64 CPU
    inputs of one call, fresh each time. ``grad`` lists the positions of the inputs that are
    differentiated (the others are targets, treated as data). ``batched``: every input's dim 0 is
    the batch (so an empty batch and ``vmap`` over examples make sense). ``ignore(inputs)`` returns
    inputs whose targets are all ``ignore_index`` (None: the loss has no ``ignore_index``);
    ``ignored_mean_is_nan``: ``'mean'`` over such a batch is 0/0 = NaN, as ``F.cross_entropy``.
    """

    label: str
    build: Callable[[str], nn.Module]
    make: Callable[[], tuple[Tensor, ...]]
    grad: tuple[int, ...] = (0,)
    batched: bool = True
    ignore: Callable[[tuple[Tensor, ...]], tuple[Tensor, ...]] | None = None
    ignored_mean_is_nan: bool = True
    bad: tuple[BadInput, ...] = field(default_factory=tuple)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _logits(*shape: int, seed: int = 0) -> Tensor:
    return 1.5 * torch.randn(*shape, generator=_gen(seed), dtype=F64)


def _classes(*shape: int, seed: int = 1) -> Tensor:
    return torch.randint(0, C, shape, generator=_gen(seed))


def _with_ignored(ignore_index: int, *positions: int) -> Callable[[], tuple[Tensor, ...]]:
    """(N, C) logits and targets with some targets set to ``ignore_index``."""

    def make() -> tuple[Tensor, ...]:
        y = _classes(N)
        y[list(positions)] = ignore_index
        return _logits(N, C), y

    return make


def _saturated(sign: float = 0.0) -> tuple[Tensor, ...]:
    """(N, C) logits whose first row is saturated (40 on its target, ``sign * 40`` elsewhere): in float64
    ``p_t`` rounds to 1, where ``(1 - p_t) ** gamma`` with ``0 < gamma < 1`` has an infinite derivative."""
    x, y = _logits(N, C), _classes(N)
    x[0] = sign * 40.0
    x[0, y[0]] = 40.0
    return x, y


def _dense(ignore_index: int) -> tuple[Tensor, ...]:
    y = _classes(2, 3, 3)
    y[:, 0] = ignore_index
    return _logits(2, C, 3, 3), y


def _all_ignored(ignore_index: int) -> Callable[[tuple[Tensor, ...]], tuple[Tensor, ...]]:
    return lambda inputs: (inputs[0], torch.full_like(inputs[1], ignore_index))


WEIGHT = (0.5, 1.0, 1.5, 2.0)

CLASS_TARGET_ERRORS = (
    BadInput("float target", lambda i: (i[0], i[1].double()), TypeError, "target"),
    BadInput("target of the wrong shape", lambda i: (i[0], i[1][:-1]), ValueError, "target must have shape"),
    BadInput("target out of range", lambda i: (i[0], i[1].clamp(min=0) + C), ValueError, "target"),
    BadInput("integer logits", lambda i: (i[0].long(), i[1]), TypeError, "floating"),
)


def _class_index_samples(
    name: str, build: Callable[[str], nn.Module], ignore_index: int | None = None
) -> list[LossSample]:
    make = _with_ignored(ignore_index, 2) if ignore_index is not None else (lambda: (_logits(N, C), _classes(N)))
    samples = [
        LossSample(
            f"{name}, (N, C)",
            build,
            make,
            ignore=None if ignore_index is None else _all_ignored(ignore_index),
            bad=CLASS_TARGET_ERRORS,
        )
    ]
    if ignore_index is not None:
        samples.append(
            LossSample(
                f"{name}, (N, C, H, W) with an ignored row",
                build,
                lambda: _dense(ignore_index),
                ignore=_all_ignored(ignore_index),
            )
        )
    return samples


def _soft_targets() -> tuple[Tensor, ...]:
    t = torch.rand(N, C, generator=_gen(2), dtype=F64)
    t[0] = torch.tensor([0.0, 1.0, 0.0, 1.0])  # hard 0/1 targets too
    return _logits(N, C), t


def _dice_inputs() -> tuple[Tensor, ...]:
    probabilities = _logits(2, C, 3, 3).softmax(1).detach()
    y = _classes(2, 3, 3)
    y[:, 0] = 255
    return probabilities, y


def _task_losses() -> tuple[Tensor, ...]:
    return torch.tensor(1.3, dtype=F64), torch.tensor(0.7, dtype=F64)


SAMPLES: dict[str, list[LossSample]] = {
    "helpers.losses.FocalLoss": [
        *_class_index_samples("gamma=2, alpha", lambda r: FocalLoss(2.0, WEIGHT, r, ignore_index=-100), -100),
        *_class_index_samples("gamma=0.5", lambda r: FocalLoss(0.5, None, r, ignore_index=255), 255)[1:],
        LossSample("gamma=0.5, a saturated row", lambda r: FocalLoss(0.5, None, r), _saturated),
    ],
    "helpers.fast_focal.FastFocalLoss": [
        *_class_index_samples("gamma=2, alpha", lambda r: FastFocalLoss(2.0, WEIGHT, r, ignore_index=-100), -100),
        *_class_index_samples("gamma=0.5", lambda r: FastFocalLoss(0.5, None, r, ignore_index=255), 255)[1:],
        LossSample("gamma=0.5, a saturated row", lambda r: FastFocalLoss(0.5, None, r), _saturated),
    ],
    "helpers.losses.LDAMLoss": _class_index_samples(
        "scale=5, weights", lambda r: LDAMLoss(COUNTS, 0.5, 5.0, WEIGHT, reduction=r)
    ),
    "helpers.losses.LogitAdjustedLoss": _class_index_samples(
        "tau=1, weights", lambda r: LogitAdjustedLoss(COUNTS, 1.0, WEIGHT, reduction=r)
    ),
    "helpers.losses.BalancedSoftmaxLoss": _class_index_samples(
        "counts", lambda r: BalancedSoftmaxLoss(COUNTS, reduction=r)
    ),
    "helpers.custom_losses.LabelSmoothingCrossEntropy": _class_index_samples(
        "smoothing 0.1, weights",
        lambda r: LabelSmoothingCrossEntropy(0.1, WEIGHT, ignore_index=-100, reduction=r),
        -100,
    ),
    "helpers.onehot_losses.OneHotMSELoss": _class_index_samples(
        "weights", lambda r: OneHotMSELoss(C, WEIGHT, reduction=r)
    ),
    "helpers.class_balanced.ClassBalancedSigmoidFocalLoss": [
        *_class_index_samples(
            "beta=0.9, gamma=2", lambda r: ClassBalancedSigmoidFocalLoss(COUNTS, 0.9, 2.0, reduction=r)
        )[:1],
        LossSample(
            "gamma=0.5, a saturated row",
            lambda r: ClassBalancedSigmoidFocalLoss(COUNTS, 0.9, 0.5, reduction=r),
            lambda: _saturated(-1.0),
        ),
    ],
    "helpers.custom_losses.SigmoidFocalLoss": [
        LossSample(
            "gamma=0.5, alpha=0.25, soft and hard targets",
            lambda r: SigmoidFocalLoss(0.25, 0.5, reduction=r),
            _soft_targets,
            bad=(
                BadInput("integer target", lambda i: (i[0], i[1].round().long()), TypeError, "target"),
                BadInput("target of the wrong shape", lambda i: (i[0], i[1][:-1]), ValueError, "target"),
                BadInput("target outside [0, 1]", lambda i: (i[0], i[1] + 2), ValueError, "target"),
                BadInput("integer logits", lambda i: (i[0].long(), i[1]), TypeError, "input"),
            ),
        )
    ],
    "helpers.custom_losses.SoftDiceLoss": [
        LossSample(
            "probabilities (N, C, H, W), weights, an ignored row",
            lambda r: SoftDiceLoss(1.0, WEIGHT, ignore_index=255, reduction=r),
            _dice_inputs,
            ignore=_all_ignored(255),
            # declared difference: every (image, class) term is 1 - s/s = 0, the Dice of an empty set
            # taken as 1, so the all-ignored 'mean' is 0 (the generic test checks 0 and a zero gradient)
            ignored_mean_is_nan=False,
            bad=(
                BadInput("logits instead of probabilities", lambda i: (i[0] * 5 - 2, i[1]), ValueError, "probab"),
                BadInput("float target of the wrong shape", lambda i: (i[0], i[0][:, :2]), ValueError, "shape"),
                BadInput("integer input", lambda i: (i[0].long(), i[1]), TypeError, "floating"),
            ),
        )
    ],
    "helpers.custom_losses.UncertaintyWeightedLoss": [
        LossSample(
            "two task losses (classification, regression)",
            lambda r: UncertaintyWeightedLoss(2, ["classification", "regression"], 0.3, reduction=r),
            _task_losses,
            grad=(0, 1),
            batched=False,  # the inputs are two scalar losses: no batch dimension
            bad=(
                BadInput("one task loss missing", lambda i: i[:1], ValueError, "expected 2 task losses"),
                BadInput("an unreduced task loss", lambda i: (i[0].expand(3), i[1]), ValueError, "scalar"),
            ),
        )
    ],
}
