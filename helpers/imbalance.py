r"""Long-tailed versions of balanced datasets, with a balanced validation set from the left-out images.

The long-tailed profiles are those of Cao et al. (2019) {cite}`cao2019ldam`, for ``C`` classes, a largest
class of ``n_max`` examples and an imbalance ratio ``rho = n_max / n_min``:

* ``"exp"``: :math:`n_i = \lfloor n_{max} \, \rho^{-i/(C-1)} \rfloor`, class 0 the head;
* ``"step"``: the first ``C // 2`` classes keep ``n_max``, the others :math:`\lfloor n_{max} / \rho \rfloor`.

Subsampling is a seeded random choice within each class, vectorized (no per-sample Python). With the
same seed, the draws are nested: a class subsampled to ``k`` examples keeps the first ``k`` of one
fixed random order, so the imbalance-100 training set is a subset of the imbalance-10 one.

The validation set is class-balanced and drawn only from the training images that the subsampling
left out, never from the test set, so hyperparameters can be chosen on it honestly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from helpers.datasets import ImageSet

PROFILES = ("exp", "step")


def long_tailed_counts(n_max: int, num_classes: int, imbalance_ratio: float, profile: str = "exp") -> list[int]:
    """Per-class example counts of a long-tailed profile (see the module docstring).

    Args:
        n_max: examples of the largest class (class 0), a positive integer.
        num_classes: number of classes ``C >= 2``.
        imbalance_ratio: ``rho = n_max / n_min >= 1`` (1 gives a balanced set).
        profile: ``"exp"`` (exponential decay) or ``"step"``.

    Returns:
        ``C`` integers, non-increasing for ``"exp"``.

    Raises:
        ValueError: for a non-positive ``n_max``, fewer than 2 classes, a ratio below 1 or not finite,
            an unknown profile, or a ratio so large that the smallest class would be empty.

    Example: ``long_tailed_counts(5000, 10, 100)`` gives the CIFAR-10-LT counts of Cao et al.,
    ``[5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]``.
    """
    for name, value in (("n_max", n_max), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if n_max < 1:
        raise ValueError(f"n_max must be a positive integer, got {n_max}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    ratio = float(imbalance_ratio)
    if not math.isfinite(ratio) or ratio < 1:
        raise ValueError(f"imbalance_ratio must be a finite number >= 1 (n_max / n_min), got {imbalance_ratio}")
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    if profile == "exp":
        counts = [int(n_max * ratio ** (-i / (num_classes - 1))) for i in range(num_classes)]
    else:
        head = num_classes // 2
        counts = [n_max] * head + [int(n_max / ratio)] * (num_classes - head)
    if min(counts) < 1:
        raise ValueError(
            f"imbalance_ratio={imbalance_ratio} with n_max={n_max} leaves the smallest class empty "
            f"(counts {counts}); use a larger n_max or a smaller ratio"
        )
    return counts


def _check_labels(labels: torch.Tensor, num_classes: int | None, name: str = "labels") -> int:
    """Check a 1-D int64 label tensor; return the number of classes (``num_classes`` or ``max + 1``)."""
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dtype != torch.int64:
        raise TypeError(f"{name} must be an int64 tensor of class indices, got dtype {labels.dtype}")
    if labels.dim() != 1 or labels.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D tensor of shape (N,), got {tuple(labels.shape)}")
    low, high = int(labels.min()), int(labels.max())
    if num_classes is None:
        num_classes = high + 1
    if low < 0 or high >= num_classes:
        raise ValueError(f"{name} must be in [0, {num_classes}), got min {low} and max {high}")
    return num_classes


def _take_per_class(labels: torch.Tensor, counts: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Positions keeping the first ``counts[c]`` examples of class ``c`` in one random order, sorted."""
    order = torch.randperm(labels.numel(), generator=generator)
    shuffled = labels[order]
    by_class = torch.sort(shuffled, stable=True)  # grouped by class, random order within each class
    sizes = torch.bincount(shuffled, minlength=counts.numel())
    starts = torch.cumsum(sizes, 0) - sizes
    rank = torch.arange(labels.numel()) - starts[by_class.values]
    keep = rank < counts[by_class.values]
    return torch.sort(order[by_class.indices[keep]]).values


def _check_counts_available(counts: torch.Tensor, available: torch.Tensor, what: str) -> None:
    short = (counts > available).nonzero().flatten().tolist()
    if short:
        detail = ", ".join(f"class {c}: wants {int(counts[c])}, has {int(available[c])}" for c in short)
        raise ValueError(f"not enough examples for {what} ({detail})")


def subsample_indices(labels: torch.Tensor, counts: Sequence[int], seed: int) -> torch.Tensor:
    """Indices that keep ``counts[c]`` examples of each class ``c``, chosen at random with ``seed``.

    Args:
        labels: ``int64`` tensor of shape ``(N,)`` with values in ``[0, len(counts))``.
        counts: examples to keep per class (non-negative integers; 0 drops a class).
        seed: data seed; the same seed gives the same indices, and nested draws for smaller counts.

    Returns:
        Sorted ``int64`` indices into ``labels``, of length ``sum(counts)``.

    Raises:
        TypeError / ValueError: for bad labels or counts, or a class with fewer than ``counts[c]`` examples.
    """
    want = torch.as_tensor(counts)
    if want.dim() != 1 or want.numel() < 1:
        raise ValueError(f"counts must be a 1-D sequence with one count per class, got shape {tuple(want.shape)}")
    if torch.is_floating_point(want):
        if not torch.isfinite(want).all() or (want != want.round()).any():
            raise ValueError(f"counts must be non-negative integers, got {want.tolist()}")
    want = want.to(torch.int64)
    if (want < 0).any():
        raise ValueError(f"counts must be non-negative integers, got {want.tolist()}")
    num_classes = _check_labels(labels, want.numel())
    labels = labels.cpu()
    _check_counts_available(want, torch.bincount(labels, minlength=num_classes), "subsample_indices")
    return _take_per_class(labels, want, torch.Generator().manual_seed(int(seed)))


def balanced_holdout_indices(
    labels: torch.Tensor, exclude: torch.Tensor, per_class: int, seed: int, num_classes: int | None = None
) -> torch.Tensor:
    """A class-balanced set of ``per_class`` examples per class, drawn only from indices NOT in ``exclude``.

    Args:
        labels: ``int64`` tensor of shape ``(N,)``.
        exclude: indices (``int64``, any order) or a boolean mask of shape ``(N,)`` to leave out, e.g. the
            training subset returned by :func:`subsample_indices`.
        per_class: examples per class, positive.
        seed: data seed.
        num_classes: number of classes (default ``labels.max() + 1``); every class must supply ``per_class``.

    Returns:
        Sorted ``int64`` indices into ``labels``, disjoint from ``exclude``, of length ``per_class * C``.
    """
    num_classes = _check_labels(labels, num_classes)
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class must be a positive int, got {per_class!r}")
    labels = labels.cpu()
    exclude = torch.as_tensor(exclude).cpu()
    if exclude.dtype == torch.bool:
        if exclude.shape != labels.shape:
            raise ValueError(
                f"a boolean exclude mask must have shape {tuple(labels.shape)}, got {tuple(exclude.shape)}"
            )
        free = ~exclude
    else:
        if exclude.dtype != torch.int64 or exclude.dim() != 1:
            raise TypeError(f"exclude must be a 1-D int64 index tensor or a bool mask, got {exclude.dtype}")
        if exclude.numel() and (int(exclude.min()) < 0 or int(exclude.max()) >= labels.numel()):
            raise ValueError(f"exclude indices must be in [0, {labels.numel()})")
        free = torch.ones_like(labels, dtype=torch.bool)
        free[exclude] = False
    candidates = free.nonzero().flatten()
    want = torch.full((num_classes,), per_class, dtype=torch.int64)
    _check_counts_available(
        want, torch.bincount(labels[candidates], minlength=num_classes), "the balanced hold-out (left-out examples)"
    )
    # A separate stream from the training draw, so the two choices are not coupled.
    picked = _take_per_class(labels[candidates], want, torch.Generator().manual_seed(int(seed) + 1_000_003))
    return candidates[picked]


def _default_n_max(available: list[int], imbalance_ratio: float, profile: str, val_per_class: int) -> int:
    """The largest ``n_max <= min(available)`` leaving every class ``val_per_class`` examples for validation."""
    num_classes = len(available)
    n_max = min(available)
    while n_max >= 1:
        counts = long_tailed_counts(n_max, num_classes, imbalance_ratio, profile)
        if all(n + val_per_class <= a for n, a in zip(counts, available, strict=True)):
            return n_max
        n_max -= 1
    raise ValueError(f"the dataset is too small to leave {val_per_class} validation examples per class")


def make_imbalanced_tensors(
    X: torch.Tensor,
    y: torch.Tensor,
    imbalance_ratio: float,
    profile: str = "exp",
    n_max: int | None = None,
    val_per_class: int = 100,
    seed: int = 0,
    num_classes: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Long-tailed training indices and balanced validation indices for user tensors ``X, y``.

    Args:
        X: examples, first dimension ``N`` (only its length is used).
        y: ``int64`` labels of shape ``(N,)``.
        imbalance_ratio, profile: as in :func:`long_tailed_counts`.
        n_max: size of the head class. Default: the smallest class count of ``y`` (so every class can
            supply it), lowered just enough that every class still leaves ``val_per_class`` examples
            for validation (MNIST: 5421; a set of 5000 per class such as CIFAR-10: 4900).
        val_per_class: validation examples per class, drawn from the left-out examples.
        seed: data seed.
        num_classes: number of classes (default ``y.max() + 1``).

    Returns:
        ``(train_idx, val_idx)``: sorted, disjoint ``int64`` index tensors. The training counts are
        ``torch.bincount(y[train_idx])`` = ``long_tailed_counts(n_max, C, imbalance_ratio, profile)``.
    """
    num_classes = _check_labels(y, num_classes, "y")
    if not hasattr(X, "shape") or len(X.shape) == 0 or X.shape[0] != y.shape[0]:
        raise ValueError(f"X must have one row per label ({y.shape[0]}), got shape {tuple(getattr(X, 'shape', ()))}")
    if isinstance(val_per_class, bool) or not isinstance(val_per_class, int) or val_per_class < 1:
        raise ValueError(f"val_per_class must be a positive int, got {val_per_class!r}")
    available = torch.bincount(y.cpu(), minlength=num_classes).tolist()
    if n_max is None:
        long_tailed_counts(1, num_classes, 1.0, profile)  # validate the profile before searching
        n_max = _default_n_max(available, imbalance_ratio, profile, val_per_class)
    counts = long_tailed_counts(n_max, num_classes, imbalance_ratio, profile)
    train_idx = subsample_indices(y, counts, seed)
    val_idx = balanced_holdout_indices(y, train_idx, val_per_class, seed, num_classes=num_classes)
    return train_idx, val_idx


@dataclass
class ImbalancedSplit:
    """A long-tailed training set, its balanced validation set, and the training counts per class."""

    train: ImageSet
    val: ImageSet
    counts: list[int]


def make_imbalanced(
    dataset: ImageSet,
    imbalance_ratio: float,
    profile: str = "exp",
    n_max: int | None = None,
    val_per_class: int = 100,
    seed: int = 0,
) -> ImbalancedSplit:
    """Long-tailed training set and balanced validation set from a balanced training :class:`ImageSet`.

    See :func:`make_imbalanced_tensors` for the arguments. The validation images are training images
    that the subsampling left out; the test set is untouched.

    Example: ``make_imbalanced(load_mnist(), 100).counts`` is
    ``[5421, 3249, 1948, 1167, 700, 419, 251, 150, 90, 54]``.
    """
    if not isinstance(dataset, ImageSet):
        raise TypeError(f"dataset must be an ImageSet, got {type(dataset).__name__}")
    train_idx, val_idx = make_imbalanced_tensors(
        dataset.images,
        dataset.labels,
        imbalance_ratio,
        profile=profile,
        n_max=n_max,
        val_per_class=val_per_class,
        seed=seed,
        num_classes=dataset.num_classes,
    )
    tag = f"{profile}{imbalance_ratio:g}"
    train = dataset.subset(train_idx, name=f"{dataset.name}-LT-{tag}")
    val = dataset.subset(val_idx, name=f"{dataset.name}-val-{tag}")
    return ImbalancedSplit(train=train, val=val, counts=train.class_counts().tolist())
