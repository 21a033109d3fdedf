"""Unit tests for helpers.metrics on small hand-made cases."""

import math

import pytest
import torch
import torch.nn.functional as F

from helpers.imbalance import long_tailed_counts
from helpers.metrics import (
    accuracy,
    balanced_accuracy,
    class_groups,
    classification_report,
    confusion_matrix,
    describe_groups,
    expected_calibration_error,
    group_recall,
    macro_f1,
    per_class_f1,
    per_class_recall,
    worst_class_recall,
)

# Six examples, three classes. Class 0: 1 of 2 right; class 1: 2 of 3; class 2: 1 of 1.
PRED = torch.tensor([0, 0, 1, 1, 2, 2])
TARGET = torch.tensor([0, 1, 1, 1, 2, 0])


def one_hot_logits(pred, num_classes):
    return F.one_hot(pred, num_classes).double() * 5 - 1


def test_hand_made_case():
    assert accuracy(PRED, TARGET) == pytest.approx(4 / 6)
    assert confusion_matrix(PRED, TARGET).tolist() == [[1, 0, 1], [1, 2, 0], [0, 0, 1]]
    torch.testing.assert_close(per_class_recall(PRED, TARGET), torch.tensor([1 / 2, 2 / 3, 1.0], dtype=torch.float64))
    assert balanced_accuracy(PRED, TARGET) == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert worst_class_recall(PRED, TARGET) == pytest.approx(0.5)
    # F1 = 2TP / (2TP + FP + FN): class 0: 2/4, class 1: 4/5, class 2: 2/3.
    torch.testing.assert_close(per_class_f1(PRED, TARGET), torch.tensor([0.5, 0.8, 2 / 3], dtype=torch.float64))
    assert macro_f1(PRED, TARGET) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


def test_logits_give_the_same_metrics_as_their_argmax():
    logits = one_hot_logits(PRED, 3)
    assert accuracy(logits, TARGET) == accuracy(PRED, TARGET)
    assert balanced_accuracy(logits, TARGET) == balanced_accuracy(PRED, TARGET)
    assert macro_f1(logits.float(), TARGET) == macro_f1(PRED, TARGET)
    assert torch.equal(confusion_matrix(logits, TARGET), confusion_matrix(PRED, TARGET))


def test_absent_classes():
    # Class 3 has no test example: NaN recall, left out of the averages, not counted as 0.
    recall = per_class_recall(PRED, TARGET, num_classes=4)
    assert recall[3].isnan() and confusion_matrix(PRED, TARGET, 4).shape == (4, 4)
    assert balanced_accuracy(PRED, TARGET, 4) == pytest.approx(balanced_accuracy(PRED, TARGET))
    assert macro_f1(PRED, TARGET, 4) == pytest.approx(macro_f1(PRED, TARGET))
    # A class that is predicted but never true gets F1 = 0 and counts (as in sklearn's macro F1).
    pred = torch.tensor([0, 0, 1, 1, 2, 3])
    assert per_class_f1(pred, TARGET).tolist()[3] == 0.0
    assert macro_f1(pred, TARGET) == pytest.approx((0.5 + 0.8 + 1.0 + 0.0) / 4)  # class 2 now exact
    assert worst_class_recall(torch.tensor([1, 1]), torch.tensor([1, 1]), num_classes=3) == 1.0


def test_expected_calibration_error_by_hand():
    # Confidences 0.85 (right), 0.85 (wrong), 0.55, 0.55 (both right); 10 bins:
    # bin (0.8, 0.9]: |0.5 - 0.85| * 2/4; bin (0.5, 0.6]: |1 - 0.55| * 2/4 -> 0.175 + 0.225 = 0.4.
    probs = torch.tensor([[0.85, 0.15], [0.85, 0.15], [0.45, 0.55], [0.55, 0.45]])
    target = torch.tensor([0, 1, 1, 0])
    assert expected_calibration_error(probs, target, n_bins=10) == pytest.approx(0.4)
    # Calibrated: 4 examples at confidence 0.75, 3 right.
    probs = torch.tensor([[0.75, 0.25]] * 4)
    assert expected_calibration_error(probs, torch.tensor([0, 0, 0, 1])) == pytest.approx(0.0, abs=1e-12)
    # Every example in one bin: ECE = |accuracy - mean confidence|.
    assert expected_calibration_error(probs, torch.tensor([1, 1, 1, 1]), n_bins=1) == pytest.approx(0.75)


def test_groups_by_rank_for_small_class_sets():
    # 4 classes: round(0.3 * 4) = 1 class per end group.
    counts = [100, 50, 10, 1]
    assert class_groups(counts) == {"many": [0], "medium": [1, 2], "few": [3]}
    recall = torch.tensor([1.0, 0.5, 0.25, 0.0])
    assert group_recall(recall, counts) == {"many": 1.0, "medium": 0.375, "few": 0.0}
    assert class_groups(counts, thresholds=(20, 60)) == {"many": [0], "medium": [1], "few": [2, 3]}
    # Ties share a group: the step profile gives its two halves and no medium group.
    step = group_recall(torch.tensor([1.0, 0.8, 0.2, 0.4]), [500, 500, 5, 5])
    assert step["many"] == pytest.approx(0.9) and math.isnan(step["medium"]) and step["few"] == pytest.approx(0.3)
    assert class_groups([7, 7, 7]) == {"many": [0, 1, 2], "medium": [], "few": []}
    # A class without test examples (NaN recall) is skipped within its group.
    assert group_recall(torch.tensor([1.0, math.nan, 0.5, 0.0]), counts)["many"] == 1.0


def test_ten_class_grouping_is_3_4_3_and_why_not_the_standard_thresholds():
    cifar10_lt = long_tailed_counts(4900, 10, 100)  # [4900, 2937, ..., 81, 49]
    groups = class_groups(cifar10_lt)
    assert groups == {"many": [0, 1, 2], "medium": [3, 4, 5, 6], "few": [7, 8, 9]}
    # The standard thresholds leave the few-shot group empty on CIFAR-10-LT (no class below 20 images)
    # and put 8 of 10 classes in "many": the reason the 10-class sets group by rank.
    standard = class_groups(cifar10_lt, rule="standard")
    assert standard["few"] == [] and len(standard["many"]) == 8
    text = describe_groups(cifar10_lt)
    assert "by rank" in text and "many = 3 classes (1760-4900 images)" in text and "few = 3 classes (49-136" in text
    mnist_lt = long_tailed_counts(2000, 10, 100)
    assert [len(v) for v in class_groups(mnist_lt).values()] == [3, 4, 3]


def test_hundred_class_sets_use_the_standard_thresholds():
    cifar100_lt = long_tailed_counts(450, 100, 100)
    groups = class_groups(cifar100_lt)
    counts = torch.tensor(cifar100_lt)
    assert all(counts[groups["many"]] > 100) and all(counts[groups["few"]] < 20)
    assert all((counts[groups["medium"]] >= 20) & (counts[groups["medium"]] <= 100))
    assert sum(len(v) for v in groups.values()) == 100 and min(len(v) for v in groups.values()) >= 30
    assert "standard thresholds (many > 100, medium 20-100, few < 20" in describe_groups(cifar100_lt)
    assert class_groups(cifar100_lt, rule="rank") != groups
    with pytest.raises(ValueError, match="rule must be one of"):
        class_groups(cifar100_lt, rule="tercile")
    with pytest.raises(ValueError, match="needs thresholds"):
        class_groups(cifar100_lt, rule="thresholds")


def test_classification_report():
    logits = torch.tensor([[2.0, 0.0, 0.0], [1.0, 0.5, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0]])
    target = torch.tensor([0, 1, 1, 2])
    report = classification_report(logits, target, train_counts=[100, 10, 1])
    assert set(report) == {
        "accuracy",
        "balanced_accuracy",
        "worst_class_recall",
        "macro_f1",
        "many_recall",
        "medium_recall",
        "few_recall",
        "head_recall",
        "tail_recall",
        "ece",
        "nll",
    }
    assert report["accuracy"] == pytest.approx(0.75)
    assert report["balanced_accuracy"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert report["worst_class_recall"] == pytest.approx(0.5)
    assert (report["many_recall"], report["medium_recall"], report["few_recall"]) == (1.0, 0.5, 1.0)
    assert (report["head_recall"], report["tail_recall"]) == (report["many_recall"], report["few_recall"])
    assert report["macro_f1"] == pytest.approx(macro_f1(logits, target))
    assert report["ece"] == pytest.approx(expected_calibration_error(logits.softmax(1), target))
    assert report["nll"] == pytest.approx(F.cross_entropy(logits, target).item())
    assert all(isinstance(v, float) for v in report.values())


def test_bad_input():
    cases = [
        (lambda: accuracy(PRED, TARGET.int()), TypeError, "int64"),
        (lambda: accuracy(PRED.int(), TARGET), TypeError, "int64 class indices or floating logits"),
        (lambda: accuracy(PRED, TARGET[:5]), ValueError, r"target must have shape \(6,\)"),
        (lambda: accuracy(PRED.double(), TARGET), ValueError, r"logits of shape \(N, C\)"),
        (lambda: confusion_matrix(PRED, TARGET, num_classes=2), ValueError, r"must be in \[0, 2\)"),
        (lambda: per_class_recall(one_hot_logits(PRED, 3), TARGET, 4), ValueError, "3 classes but num_classes=4"),
        (lambda: accuracy(PRED, torch.tensor([0, 1, 1, 1, 2, -1])), ValueError, "must be in"),
        (lambda: accuracy(PRED[:0], TARGET[:0]), ValueError, "empty"),
        (lambda: expected_calibration_error(one_hot_logits(PRED, 3), TARGET), ValueError, "softmax"),
        (lambda: expected_calibration_error(PRED, TARGET), TypeError, "probabilities"),
        (lambda: expected_calibration_error(torch.full((6, 3), 1 / 3), TARGET, n_bins=0), ValueError, "n_bins"),
        (lambda: group_recall(torch.ones(3), [10, 5]), ValueError, r"recall must have shape \(2,\)"),
        (lambda: class_groups([10, 0, 5]), ValueError, "train_counts"),
        (lambda: class_groups([10, 5], thresholds=(50, 20)), ValueError, "few <= many"),
        (lambda: classification_report(PRED, TARGET, [3, 2, 1]), TypeError, "logits"),
        (lambda: classification_report(torch.zeros(6, 4), TARGET, [3, 2, 1]), ValueError, "4 classes"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()
