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


def test_check_values_raises_on_cpu_eager_and_asserts_on_device_elsewhere():
    from helpers.validation import check_values, check_weight_length, values_readable

    ok = torch.tensor([True, False, True])
    assert values_readable(ok)
    check_values(torch.tensor([True, True]), "never raised")
    with pytest.raises(ValueError, match="x must be positive, got 1 bad"):
        check_values(ok, "x must be positive", lambda: ", got 1 bad")
    # meta tensors have no values: nothing to check, nothing raised
    check_values(torch.zeros(3, dtype=torch.bool, device="meta"), "not checked")
    logits = torch.empty(4, 3, device="meta")
    assert check_class_targets(logits, torch.empty(4, dtype=torch.int64, device="meta")) == 3

    # under torch.compile the check becomes a device-side assertion (no host read, no graph break)
    def f(t):
        assert not values_readable(t)
        check_values(t > 0, "t must be positive")
        return t * 2

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    assert compiled(torch.tensor([1.0, 2.0])).tolist() == [2.0, 4.0]
    with pytest.raises(RuntimeError, match="t must be positive"):
        compiled(torch.tensor([1.0, -2.0]))

    check_weight_length(None, 3)
    with pytest.raises(ValueError, match=r"weight must have 3 entries \(one per class of input\), got 2"):
        check_weight_length(torch.ones(2), 3)


def test_class_target_message_names_the_offending_values():
    logits = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"target values must be in \[0, 3\) or equal ignore_index=-1, got 2 value"):
        check_class_targets(logits, torch.tensor([0, 7, -1, -5]), ignore_index=-1)
