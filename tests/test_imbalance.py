"""Unit tests for helpers.imbalance: long-tailed profiles, seeded subsampling, balanced hold-out."""

import pytest
import torch

from helpers.datasets import ImageSet
from helpers.imbalance import (
    ImbalancedSplit,
    balanced_holdout_indices,
    long_tailed_counts,
    make_imbalanced,
    make_imbalanced_tensors,
    subsample_indices,
)

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def labels_with_counts(counts, seed=0):
    """Shuffled int64 labels with the given number of examples per class."""
    labels = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]


def tiny_imageset(per_class=60, num_classes=10):
    labels = labels_with_counts([per_class] * num_classes)
    index = torch.arange(len(labels))
    images = torch.stack([index // 256, index % 256], 1).to(torch.uint8).view(-1, 1, 1, 2)  # pixels encode the index
    return ImageSet(
        images=images,
        labels=labels,
        classes=tuple(str(c) for c in range(num_classes)),
        name="tiny",
        mean=(0.5,),
        std=(0.25,),
    )


def test_long_tailed_counts_match_cao_et_al():
    # CIFAR-10-LT at imbalance 100 and 10, as used by Cao et al. (2019) and later work.
    assert long_tailed_counts(5000, 10, 100) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert long_tailed_counts(5000, 10, 10) == [5000, 3871, 2997, 2320, 1796, 1391, 1077, 834, 645, 500]
    assert long_tailed_counts(5421, 10, 100) == [5421, 3249, 1948, 1167, 700, 419, 251, 150, 90, 54]
    assert long_tailed_counts(5000, 10, 100, "step") == [5000] * 5 + [50] * 5
    assert long_tailed_counts(100, 5, 4, profile="step") == [100, 100, 25, 25, 25]
    assert long_tailed_counts(7, 3, 1) == [7, 7, 7]
    counts = long_tailed_counts(1000, 100, 50)
    assert counts[0] == 1000 and counts[-1] == 20 and counts == sorted(counts, reverse=True)


def test_long_tailed_counts_errors():
    cases = [
        ((5000, 10, 0.5), ValueError, "imbalance_ratio"),
        ((5000, 10, float("nan")), ValueError, "imbalance_ratio"),
        ((5000, 10, float("inf")), ValueError, "imbalance_ratio"),
        ((0, 10, 10), ValueError, "n_max"),
        ((5000, 1, 10), ValueError, "num_classes"),
        ((5000.0, 10, 10), TypeError, "n_max must be an int"),
        ((50, 10, 100), ValueError, "smallest class empty"),
    ]
    for args, error, message in cases:
        with pytest.raises(error, match=message):
            long_tailed_counts(*args)
    with pytest.raises(ValueError, match=r"profile must be one of \('exp', 'step'\)"):
        long_tailed_counts(5000, 10, 10, profile="linear")


def test_subsample_indices_counts_determinism_and_nesting():
    labels = labels_with_counts([40, 30, 20])
    idx = subsample_indices(labels, [25, 10, 3], seed=1)
    assert idx.dtype == torch.int64 and torch.equal(idx, idx.sort().values) and idx.unique().numel() == len(idx)
    assert torch.bincount(labels[idx]).tolist() == [25, 10, 3]
    assert torch.equal(idx, subsample_indices(labels, [25, 10, 3], seed=1))
    assert not torch.equal(idx, subsample_indices(labels, [25, 10, 3], seed=2))
    smaller = subsample_indices(labels, [5, 10, 0], seed=1)
    assert torch.isin(smaller, idx).all() and torch.bincount(labels[smaller], minlength=3).tolist() == [5, 10, 0]
    assert torch.equal(subsample_indices(labels, torch.tensor([40, 30, 20]), seed=0), torch.arange(90))


def test_subsample_indices_errors():
    labels = labels_with_counts([4, 3])
    with pytest.raises(ValueError, match=r"class 1: wants 5, has 3"):
        subsample_indices(labels, [2, 5], seed=0)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 1\)"):
        subsample_indices(labels, [2], seed=0)
    with pytest.raises(ValueError, match="non-negative integers"):
        subsample_indices(labels, [2, -1], seed=0)
    with pytest.raises(ValueError, match="non-negative integers"):
        subsample_indices(labels, [2.5, 1], seed=0)
    with pytest.raises(TypeError, match="int64"):
        subsample_indices(labels.int(), [2, 1], seed=0)
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        subsample_indices(labels.view(1, -1), [2, 1], seed=0)


def test_balanced_holdout_is_balanced_and_disjoint():
    labels = labels_with_counts([50, 30, 12])
    train = subsample_indices(labels, [40, 10, 2], seed=0)
    val = balanced_holdout_indices(labels, train, per_class=10, seed=0)
    assert torch.bincount(labels[val]).tolist() == [10, 10, 10]
    assert not torch.isin(val, train).any()
    mask = torch.zeros(len(labels), dtype=torch.bool)
    mask[train] = True
    assert torch.equal(val, balanced_holdout_indices(labels, mask, per_class=10, seed=0))
    assert torch.equal(val, balanced_holdout_indices(labels, train, per_class=10, seed=0))
    with pytest.raises(ValueError, match=r"class 0: wants 11, has 10"):
        balanced_holdout_indices(labels, train, per_class=11, seed=0)
    with pytest.raises(ValueError, match="per_class"):
        balanced_holdout_indices(labels, train, per_class=0, seed=0)
    with pytest.raises(TypeError, match="exclude"):
        balanced_holdout_indices(labels, train.int(), per_class=1, seed=0)
    with pytest.raises(ValueError, match="exclude indices"):
        balanced_holdout_indices(labels, torch.tensor([len(labels)]), per_class=1, seed=0)
    with pytest.raises(ValueError, match="boolean exclude mask"):
        balanced_holdout_indices(labels, mask[:-1], per_class=1, seed=0)


def test_make_imbalanced_tensors_default_n_max():
    # MNIST's class counts: the smallest class (5421) can be the head, since class 0 has 5923.
    y = labels_with_counts(MNIST_TRAIN_COUNTS)
    x = torch.zeros(len(y), 1)
    train, val = make_imbalanced_tensors(x, y, 100)
    assert torch.bincount(y[train]).tolist() == [5421, 3249, 1948, 1167, 700, 419, 251, 150, 90, 54]
    assert torch.bincount(y[val]).tolist() == [100] * 10 and not torch.isin(val, train).any()
    # Equal class sizes (as CIFAR-10's 5000): the head is lowered to leave 100 images for validation.
    y = labels_with_counts([500] * 4)
    train, val = make_imbalanced_tensors(y, y, 10, val_per_class=50)
    assert torch.bincount(y[train]).tolist() == long_tailed_counts(450, 4, 10)
    train, val = make_imbalanced_tensors(y, y, 10, profile="step", n_max=300, val_per_class=20, seed=3)
    assert torch.bincount(y[train]).tolist() == [300, 300, 30, 30] and len(val) == 80
    with pytest.raises(ValueError, match="not enough examples for the balanced hold-out"):
        make_imbalanced_tensors(y, y, 10, n_max=500)
    with pytest.raises(ValueError, match="X must have one row per label"):
        make_imbalanced_tensors(y[:-1], y, 10)
    with pytest.raises(ValueError, match="profile"):
        make_imbalanced_tensors(y, y, 10, profile="linear")


def image_ids(images):
    return images[:, 0, 0, 0].long() * 256 + images[:, 0, 0, 1].long()


def test_make_imbalanced_imageset():
    data = tiny_imageset()
    split = make_imbalanced(data, imbalance_ratio=10, val_per_class=5, seed=0)
    assert isinstance(split, ImbalancedSplit)
    assert split.counts == long_tailed_counts(55, 10, 10) == split.train.class_counts().tolist()
    assert split.val.class_counts().tolist() == [5] * 10
    assert split.train.name == "tiny-LT-exp10" and split.val.name == "tiny-val-exp10"
    # Images travel with their labels, and no image is in both sets.
    train_ids, val_ids = image_ids(split.train.images), image_ids(split.val.images)
    assert torch.equal(data.labels[train_ids], split.train.labels) and torch.equal(
        data.labels[val_ids], split.val.labels
    )
    assert not torch.isin(val_ids, train_ids).any()
    again = make_imbalanced(data, imbalance_ratio=10, val_per_class=5, seed=0)
    assert torch.equal(again.train.images, split.train.images) and torch.equal(again.val.labels, split.val.labels)
    other = make_imbalanced(data, imbalance_ratio=10, val_per_class=5, seed=1)
    assert not torch.equal(other.train.images, split.train.images)
    with pytest.raises(TypeError, match="ImageSet"):
        make_imbalanced((data.images, data.labels), 10)
