"""Chapter 3: weighted cross-entropy normalization, and helpers/weighted_ce.py."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers.imbalance import long_tailed_counts
from helpers.losses import inverse_frequency_weights
from helpers.reference import cross_entropy as reference_cross_entropy
from helpers.weighted_ce import (
    cross_entropy_terms,
    effective_class_weights,
    per_sample_class_cv,
    per_sample_class_weights,
    sample_effective_weights,
)

E = math.e
X12 = torch.tensor([0, 1, 0, 0, 0, 1], dtype=torch.float32).view(1, 3, 2)
T12 = torch.tensor([[0, 1]])
X3 = torch.tensor([0, 1, 2, 0, 0, 0, 0, 0, 0, 1, 0, 0.5]).view(1, 3, 4)
T3 = torch.tensor([[0, 1, 2, 2]])

# The chapter's three worked cases: (input, target, weights, the value in closed form).
# Case 3, per position: logits (0,0,0)->class 0, (1,0,1)->1, (2,0,0)->2, (0,0,0.5)->2.
WORKED = {
    "case1": (X12, T12, [1.0, 1.0, 1.0], (math.log(3) + math.log(1 + 2 * E)) / 2),
    "case2": (X12, T12, [1.0, 2.0, 3.0], (math.log(3) + 2 * math.log(1 + 2 * E)) / 3),
    "case3": (
        X3,
        T3,
        [1.0, 2.0, 3.0],
        (math.log(3) + 2 * math.log(1 + 2 * E) + 3 * math.log(E**2 + 2) + 3 * (math.log(2 + E**0.5) - 0.5)) / 9,
    ),
}


def _random_case(shape=(4, 5, 3, 2), ignore_index=255, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=dtype)
    t = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
    t.view(-1)[::4] = ignore_index
    w = torch.rand(shape[1], generator=g, dtype=dtype) + 0.1
    return x, t, w


@pytest.mark.parametrize("name", list(WORKED))
def test_worked_case_matches_torch_and_closed_form(name):
    x, t, w, closed_form = WORKED[name]
    torch_value = nn.CrossEntropyLoss(weight=torch.tensor(w), ignore_index=255)(x, t)
    terms = cross_entropy_terms(x, t, w, ignore_index=255)
    by_hand = terms.loss_sum / terms.weight_sum
    assert abs(torch_value.item() - closed_form) < 1e-4
    assert abs(by_hand.item() - closed_form) < 1e-4
    assert f"{torch_value.item():.4f}" == f"{closed_form:.4f}"


@pytest.mark.parametrize("name", ["case2", "case3"])
def test_popular_normalizations_differ_when_weights_are_unequal(name):
    x, t, w, _ = WORKED[name]
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor(w), ignore_index=255, reduction="none")
    per_element = loss_fn(x, t)
    loss_fn.reduction = "mean"
    mean = loss_fn(x, t)
    assert not torch.isclose(per_element.mean(), mean, atol=1e-3)
    # 'mean' is the weighted sum over the sum of the target weights
    assert torch.isclose(per_element.sum() / torch.tensor(w)[t].sum(), mean)


def test_popular_normalization_agrees_with_unit_weights():
    x, t, w, _ = WORKED["case1"]
    per_element = F.cross_entropy(x, t, weight=torch.tensor(w), reduction="none")
    assert torch.isclose(per_element.mean(), F.cross_entropy(x, t, weight=torch.tensor(w)))


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.15])
@pytest.mark.parametrize("shape", [(6, 4), (3, 5, 4), (2, 3, 2, 3)])
def test_terms_reproduce_torch(reduction, label_smoothing, shape):
    x, t, w = _random_case(shape)
    terms = cross_entropy_terms(x, t, w, ignore_index=255, label_smoothing=label_smoothing)
    expected = F.cross_entropy(x, t, weight=w, ignore_index=255, label_smoothing=label_smoothing, reduction=reduction)
    torch.testing.assert_close(terms.reduce(reduction), expected.reshape(-1) if reduction == "none" else expected)


def test_general_rule_formula():
    """'mean' = sum_i m_i w_{y_i} (-log p_{i,y_i}) / sum_i m_i w_{y_i}, written out independently."""
    x, t, w = _random_case((5, 4, 3))
    log_p = F.log_softmax(x, dim=1)
    mask = t != 255
    safe = torch.where(mask, t, 0)
    nll = -log_p.gather(1, safe.unsqueeze(1)).squeeze(1)
    omega = w[safe] * mask
    torch.testing.assert_close((omega * nll).sum() / omega.sum(), F.cross_entropy(x, t, weight=w, ignore_index=255))


def test_terms_without_weight_is_plain_mean_over_kept_elements():
    x, t, _ = _random_case((8, 3))
    terms = cross_entropy_terms(x, t, ignore_index=255)
    assert terms.weight_sum.item() == terms.count == int((t != 255).sum())
    torch.testing.assert_close(terms.reduce("mean"), F.cross_entropy(x, t, ignore_index=255))


def test_all_targets_ignored_gives_nan_mean_and_zero_sum():
    x = torch.randn(4, 3)
    t = torch.full((4,), 255)
    w = torch.tensor([1.0, 2.0, 3.0])
    assert torch.isnan(F.cross_entropy(x, t, weight=w, ignore_index=255))
    assert F.cross_entropy(x, t, weight=w, ignore_index=255, reduction="sum").item() == 0.0
    terms = cross_entropy_terms(x, t, w, ignore_index=255)
    assert torch.isnan(terms.reduce("mean"))
    assert terms.reduce("sum").item() == 0.0


def test_single_class_batch_makes_weights_a_no_op_under_mean_only():
    x = torch.randn(7, 3, dtype=torch.float64)
    t = torch.full((7,), 1)
    w = torch.tensor([1.0, 5.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(F.cross_entropy(x, t, weight=w), F.cross_entropy(x, t))
    torch.testing.assert_close(
        F.cross_entropy(x, t, weight=w, reduction="sum"), 5.0 * F.cross_entropy(x, t, reduction="sum")
    )


def test_scaling_weights_changes_sum_not_mean():
    x, t, w = _random_case((6, 4))
    torch.testing.assert_close(
        F.cross_entropy(x, t, weight=7 * w, ignore_index=255), F.cross_entropy(x, t, weight=w, ignore_index=255)
    )
    torch.testing.assert_close(
        F.cross_entropy(x, t, weight=7 * w, ignore_index=255, reduction="sum"),
        7 * F.cross_entropy(x, t, weight=w, ignore_index=255, reduction="sum"),
    )


def test_label_smoothing_with_weights_formula():
    """(1-eps) * weighted NLL / sum w_{y_i}  +  eps/C * sum_i sum_c w_c (-log p_ic) / sum w_{y_i}."""
    eps = 0.2
    x, t, w = _random_case((6, 4, 3))
    C = x.shape[1]
    neg_log_p = -F.log_softmax(x, dim=1)  # (N, C, d)
    mask = t != 255
    safe = torch.where(mask, t, 0)
    omega = w[safe] * mask
    nll = neg_log_p.gather(1, safe.unsqueeze(1)).squeeze(1)
    smooth = (w.view(1, C, 1) * neg_log_p).sum(1) * mask
    formula = ((1 - eps) * (omega * nll).sum() + eps / C * smooth.sum()) / omega.sum()
    torch.testing.assert_close(formula, F.cross_entropy(x, t, weight=w, ignore_index=255, label_smoothing=eps))
    # The natural guess (smoothed target distribution weighted by w_{y_i}) is a different number.
    q = (1 - eps) * F.one_hot(safe, C).movedim(-1, 1) + eps / C
    guess = (omega * (q * neg_log_p).sum(1)).sum() / omega.sum()
    assert not torch.isclose(guess, formula)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_soft_targets_divide_by_number_of_elements(label_smoothing):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 3, 4, generator=g, dtype=torch.float64)
    q = torch.rand(5, 3, 4, generator=g, dtype=torch.float64).softmax(1)
    w = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    C, n_elements = 3, 5 * 4
    q_s = (1 - label_smoothing) * q + label_smoothing / C
    per_element = -(w.view(1, C, 1) * q_s * F.log_softmax(x, dim=1)).sum(1)
    torch.testing.assert_close(
        per_element.sum() / n_elements, F.cross_entropy(x, q, weight=w, label_smoothing=label_smoothing)
    )
    torch.testing.assert_close(
        per_element, F.cross_entropy(x, q, weight=w, label_smoothing=label_smoothing, reduction="none")
    )


def test_one_hot_soft_targets_differ_from_index_targets_with_weights():
    x, t, w, _ = WORKED["case3"]
    w = torch.tensor(w)
    soft = F.one_hot(t, 3).movedim(-1, 1).float()
    soft_loss, index_loss = F.cross_entropy(x, soft, weight=w), F.cross_entropy(x, t, weight=w)
    torch.testing.assert_close(soft_loss * 4, index_loss * 9)  # same weighted sum, denominators N=4 vs 9


def test_terms_gradient_matches_torch():
    x, t, w = _random_case((4, 3, 2))
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    cross_entropy_terms(x1, t, w, ignore_index=255, label_smoothing=0.1).reduce("mean").backward()
    F.cross_entropy(x2, t, weight=w, ignore_index=255, label_smoothing=0.1).backward()
    torch.testing.assert_close(x1.grad, x2.grad)


def test_terms_dtype_follows_input_and_table():
    x, t, w, _ = WORKED["case3"]
    terms = cross_entropy_terms(x.double(), t, w, ignore_index=255, label_smoothing=0.1)
    assert terms.loss.dtype == torch.float64 and terms.weight.dtype == torch.float64
    frame = terms.to_frame()
    assert len(frame) == 4
    assert list(frame["target y_i"]) == [0, 1, 2, 2]
    assert list(frame["weight w_(y_i)"]) == [1.0, 2.0, 3.0, 3.0]
    assert frame["element (n, d...)"].iloc[3] == "(0, 3)"
    assert "smoothed loss l_i" in frame.columns
    assert abs(frame["weighted loss"].sum() - terms.weighted_nll.sum().item()) < 1e-3
    assert "smoothed loss l_i" not in cross_entropy_terms(x, t, w).to_frame().columns


def test_ignored_rows_in_table():
    x = torch.zeros(3, 2)
    t = torch.tensor([0, 255, 1])
    terms = cross_entropy_terms(x, t, [1.0, 4.0], ignore_index=255)
    assert terms.count == 2
    assert terms.weight.tolist() == [1.0, 0.0, 4.0]
    assert terms.loss[1].item() == 0.0
    assert math.isnan(terms.to_frame()["-log p_(i,y_i)"].iloc[1])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"input": torch.zeros(3, 2, dtype=torch.int64)}, TypeError, "floating-point"),
        ({"target": torch.zeros(3, dtype=torch.int32)}, TypeError, "int64"),
        ({"target": torch.zeros(4, dtype=torch.int64)}, ValueError, "shape"),
        ({"target": torch.tensor([0, 1, 2])}, ValueError, r"\[0, 2\)"),
        ({"weight": [1.0, 2.0, 3.0]}, ValueError, "2 entries"),
        ({"weight": [1.0, -1.0]}, ValueError, "non-negative"),
        ({"label_smoothing": 1.5}, ValueError, "label_smoothing"),
        ({"label_smoothing": "0.1"}, TypeError, "label_smoothing"),
    ],
)
def test_terms_validation(kwargs, error, match):
    args = {"input": torch.zeros(3, 2), "target": torch.tensor([0, 1, 0]), "weight": None, "label_smoothing": 0.0}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        cross_entropy_terms(**args)


def test_terms_reduce_rejects_unknown_reduction():
    with pytest.raises(ValueError, match="reduction"):
        cross_entropy_terms(torch.zeros(2, 2), torch.tensor([0, 1])).reduce("avg")


def test_effective_class_weights_batch_dependent():
    batches = torch.tensor([[0, 0, 0, 0], [0, 0, 1, 1]])
    w = torch.tensor([1.0, 3.0])
    eff = effective_class_weights(batches, w)
    # batch 0: S = 4 -> e = 4 w / 4 = w; batch 1: S = 8 -> e = 4 w / 8 = w / 2
    torch.testing.assert_close(eff, torch.tensor([[1.0, 3.0], [0.5, 1.5]]))
    # the same per-class coefficients as torch's weighted mean (gradient w.r.t. per-sample losses)
    for b in range(2):
        losses = torch.ones(4, requires_grad=True)
        ((w[batches[b]] * losses).sum() / w[batches[b]].sum()).backward()
        torch.testing.assert_close(losses.grad * 4, eff[b, batches[b]])


def test_effective_class_weights_fixed_normalizer_is_constant():
    g = torch.Generator().manual_seed(0)
    batches = torch.randint(0, 5, (50, 16), generator=g)
    w = torch.rand(5, generator=g) + 0.1
    eff = effective_class_weights(batches, w, normalizer=16 * 2.0)
    torch.testing.assert_close(eff, (w / 2.0).expand(50, 5))
    assert effective_class_weights(batches, w).std(0).gt(0).all()


@pytest.mark.parametrize(
    ("batches", "weight", "normalizer", "error", "match"),
    [
        (torch.zeros(2, 3, dtype=torch.int32), [1.0, 1.0], None, TypeError, "int64"),
        (torch.zeros(3, dtype=torch.int64), [1.0, 1.0], None, ValueError, "num_batches"),
        (torch.tensor([[0, 2]]), [1.0, 1.0], None, ValueError, r"\[0, 2\)"),
        (torch.tensor([[0, 1]]), None, None, TypeError, "weight"),
        (torch.tensor([[0, 1]]), [1.0, 1.0], 0.0, ValueError, "normalizer"),
    ],
)
def test_effective_class_weights_validation(batches, weight, normalizer, error, match):
    with pytest.raises(error, match=match):
        effective_class_weights(batches, weight, normalizer=normalizer)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
def test_terms_agree_with_the_reference_implementation(label_smoothing):
    """Two independent from-scratch computations (this module, and chapter 1's helpers.reference)."""
    x, t, w = _random_case((3, 4, 5))
    terms = cross_entropy_terms(x, t, w, ignore_index=255, label_smoothing=label_smoothing)
    for reduction in ("mean", "sum"):
        expected = reference_cross_entropy(x, t, w, 255, reduction, label_smoothing)
        torch.testing.assert_close(terms.reduce(reduction), expected)


def test_sample_effective_weights_by_hand():
    batches = torch.tensor([[0, 0, 1], [0, 1, 1]])
    w = torch.tensor([1.0, 4.0])
    # batch 0: S = 6, e = 3 w / 6; batch 1: S = 9, e = 3 w / 9
    expected = torch.tensor([[0.5, 0.5, 2.0], [1 / 3, 4 / 3, 4 / 3]])
    torch.testing.assert_close(sample_effective_weights(batches, w), expected)
    # class 1: one slot at 2.0 and two at 4/3 -> (2 + 8/3) / 3; class 0: (0.5 + 0.5 + 1/3) / 3
    torch.testing.assert_close(per_sample_class_weights(batches, w), torch.tensor([4 / 9, 14 / 9]))
    assert per_sample_class_weights(batches, torch.tensor([1.0, 4.0, 2.0]))[2].isnan()  # class 2 never drawn


def _long_tailed_batches(epochs, batch_size=128, seed=0):
    """long_tailed_counts(5000, 10, 100) as labels, and ``epochs`` seeded shuffles cut into batches."""
    counts = long_tailed_counts(5000, 10, 100)
    labels = torch.repeat_interleave(torch.arange(10), torch.tensor(counts))
    g = torch.Generator().manual_seed(seed)
    per_epoch = len(labels) // batch_size
    shuffles = [torch.randperm(len(labels), generator=g)[: per_epoch * batch_size] for _ in range(epochs)]
    return counts, labels, torch.cat([labels[idx].view(per_epoch, batch_size) for idx in shuffles])


def test_per_sample_weight_of_a_rare_class_is_below_the_constant():
    """Issue 16's measurement: long_tailed_counts(5000, 10, 100), batch 128, 20 shuffled epochs.

    The average over *all* batches says the tail class gains (+4%); what a tail sample receives,
    averaged over the batches that hold it, is 13.9% less than the fixed constant.
    """
    counts, labels, batches = _long_tailed_batches(epochs=20)
    w = inverse_frequency_weights(counts)
    constant = 128 * w / (128 * w[labels].mean())
    per_batch = effective_class_weights(batches, w).mean(0)
    per_sample = per_sample_class_weights(batches, w)
    assert abs(constant[9].item() - 24.81) < 0.01
    assert abs(per_batch[9].item() - 25.81) < 0.05 and per_batch[9] > constant[9]
    assert abs(per_sample[9].item() - 21.38) < 0.05 and per_sample[9] < constant[9]
    assert per_sample[0] > constant[0]  # the head class gains what the tail loses


def test_per_sample_class_cv_by_hand():
    batches = torch.tensor([[0, 0, 1], [0, 1, 1]])
    w = torch.tensor([1.0, 4.0])
    # class 0 slots: 0.5, 0.5, 1/3; class 1 slots: 2, 4/3, 4/3 (see the test above)
    for c, slots in ((0, [0.5, 0.5, 1 / 3]), (1, [2.0, 4 / 3, 4 / 3])):
        s = torch.tensor(slots, dtype=torch.float64)
        assert math.isclose(per_sample_class_cv(batches, w)[c].item(), (s.std() / s.mean()).item(), rel_tol=1e-6)
    assert per_sample_class_cv(batches, torch.tensor([1.0, 4.0, 2.0]))[2].isnan()  # never drawn
    assert per_sample_class_cv(torch.tensor([[0, 0, 1]]), w)[1].isnan()  # a single sample: no spread


def test_per_sample_cv_differs_between_classes_while_the_all_batches_cv_does_not():
    """Review 3.1: over all batches the CV of e_bc is the CV of B / S_b for every class (identity);
    over the samples of each class it is not, and the rare heavy class varies less."""
    counts, labels, batches = _long_tailed_batches(epochs=5)
    w = inverse_frequency_weights(counts)
    eff = effective_class_weights(batches, w)
    all_batches_cv = eff.std(0) / eff.mean(0)
    torch.testing.assert_close(all_batches_cv, all_batches_cv[0].expand(10))  # the identity
    cv = per_sample_class_cv(batches, w)
    assert cv[9] < 0.9 * cv[0]
    fixed = per_sample_class_cv(batches, w, normalizer=128 * w[labels].mean().item())
    assert fixed.abs().max() < 1e-6  # a fixed normalizer: no spread at all
