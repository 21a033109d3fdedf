"""Unit tests for helpers.validation."""

import pytest
import torch

from helpers.validation import (
    check_class_counts,
    check_class_targets,
    check_class_weight,
    check_reduction,
    reduce_loss,
)


def test_reduction():
    loss = torch.tensor([1.0, 2.0, 3.0])
    assert reduce_loss(loss, "none") is loss
    assert reduce_loss(loss, "sum").item() == 6.0
    assert reduce_loss(loss, "mean").item() == 2.0
    assert reduce_loss(loss, "mean", weight_sum=torch.tensor(4.0)).item() == 1.5
    with pytest.raises(ValueError, match="reduction must be one of"):
        check_reduction("average")


def test_class_targets():
    logits = torch.randn(4, 3, 2)
    assert check_class_targets(logits, torch.zeros(4, 2, dtype=torch.long)) == 3
    with pytest.raises(TypeError, match="int64"):
        check_class_targets(logits, torch.zeros(4, 2, dtype=torch.int32))
    with pytest.raises(TypeError, match="floating-point"):
        check_class_targets(logits.long(), torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"shape \(4, 2\)"):
        check_class_targets(logits, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        check_class_targets(logits, torch.full((4, 2), 3))
    target = torch.full((4, 2), 255)
    target[0, 0] = 1
    assert check_class_targets(logits, target, ignore_index=255) == 3


def test_weights_and_counts():
    assert check_class_weight(None) is None
    assert check_class_weight([1, 2, 3], 3).dtype == torch.get_default_dtype()
    with pytest.raises(ValueError, match="3 entries"):
        check_class_weight([1.0, 2.0], 3)
    with pytest.raises(ValueError, match="non-negative"):
        check_class_weight([1.0, -2.0])
    assert check_class_counts([5, 3]).tolist() == [5.0, 3.0]
    for bad in ([5, 0], [5, 2.5], [5], [[1, 2]]):
        with pytest.raises(ValueError, match="class_counts"):
            check_class_counts(bad)
    with pytest.raises(ValueError, match="10 entries"):
        check_class_counts([1, 2], num_classes=10)
