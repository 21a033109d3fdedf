"""Unit tests for helpers.losses: limits, hand-computed values, gradients, conventions and bad input."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers.losses import (
    BalancedSoftmaxLoss,
    DeferredReweighting,
    FocalLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    class_balanced_weights,
    inverse_frequency_weights,
    ldam_margins,
    log_class_prior,
    posthoc_logit_adjustment,
)

COUNTS = [50, 20, 5, 2]
REDUCTIONS = ("none", "mean", "sum")
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def batch(n=6, c=4, extra=(), dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, *extra, generator=g, dtype=dtype) * 3
    t = torch.randint(0, c, (n, *extra), generator=g)
    return x, t


def all_losses(weight=None):
    """One instance of each loss module (non-trivial settings), for the convention tests."""
    return [
        FocalLoss(gamma=2.0, alpha=weight),
        LDAMLoss(COUNTS, max_margin=0.5, scale=5.0, weight=weight),
        LogitAdjustedLoss(COUNTS, tau=1.0, weight=weight),
        BalancedSoftmaxLoss(COUNTS, weight=weight),
    ]


# --- weights and margins against values computed by hand -------------------------------------


def test_inverse_frequency_weights_by_hand():
    # counts 1, 2, 4 -> 1, 1/2, 1/4 (sum 7/4), scaled to sum 3.
    torch.testing.assert_close(inverse_frequency_weights([1, 2, 4]), torch.tensor([12 / 7, 6 / 7, 3 / 7]))
    # power 1/2: 1, 1/2 for counts 1, 4 -> 4/3, 2/3.
    torch.testing.assert_close(inverse_frequency_weights([1, 4], power=0.5), torch.tensor([4 / 3, 2 / 3]))
    torch.testing.assert_close(inverse_frequency_weights([3, 7, 9], power=0.0), torch.ones(3))
    w = inverse_frequency_weights(torch.tensor(COUNTS))
    assert w.dtype == torch.get_default_dtype() and w.sum().item() == pytest.approx(len(COUNTS))


def test_class_balanced_weights_by_hand():
    # beta = 1/2: E_1 = 1, E_2 = (1 - 1/4) / (1/2) = 3/2 -> 1/E = 1, 2/3 (sum 5/3), scaled to sum 2.
    torch.testing.assert_close(class_balanced_weights([1, 2], beta=0.5), torch.tensor([1.2, 0.8]))
    torch.testing.assert_close(class_balanced_weights(COUNTS, beta=0.0), torch.ones(4))
    # beta -> 1: the effective number tends to n, the weights to inverse frequency.
    torch.testing.assert_close(
        class_balanced_weights([10, 1000], beta=1 - 1e-12), inverse_frequency_weights([10, 1000]), rtol=1e-5, atol=0
    )
    w = class_balanced_weights([5421, 54], beta=0.9999)
    assert w.sum().item() == pytest.approx(2) and w[1] > w[0]


def test_ldam_margins_by_hand():
    # n^(-1/4) = 1, 1/2, 1/3 for 1, 16, 81; the largest scaled to 0.5.
    torch.testing.assert_close(ldam_margins([1, 16, 81]), torch.tensor([0.5, 0.25, 1 / 6]))
    torch.testing.assert_close(ldam_margins([16, 1], max_margin=1.0), torch.tensor([0.5, 1.0]))
    assert ldam_margins(COUNTS, max_margin=0.0).abs().max().item() == 0.0


# --- each loss reduces to cross-entropy in its limit --------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_limits_equal_cross_entropy(reduction, weighted):
    x, t = batch()
    w = torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=torch.float64) if weighted else None
    expected = F.cross_entropy(x, t, weight=w, reduction=reduction)
    limits = [
        FocalLoss(gamma=0.0, alpha=w, reduction=reduction),
        LogitAdjustedLoss(COUNTS, tau=0.0, weight=w, reduction=reduction),
        BalancedSoftmaxLoss([7, 7, 7, 7], weight=w, reduction=reduction),
        LDAMLoss(COUNTS, max_margin=0.0, scale=1.0, weight=w, reduction=reduction),
    ]
    for loss_fn in limits:
        torch.testing.assert_close(loss_fn(x, t), expected, msg=type(loss_fn).__name__)


def test_limits_hold_for_spatial_inputs():
    x, t = batch(n=3, extra=(2, 5))
    expected = F.cross_entropy(x, t)
    torch.testing.assert_close(FocalLoss(gamma=0.0)(x, t), expected)
    torch.testing.assert_close(LogitAdjustedLoss(COUNTS, tau=0.0)(x, t), expected)
    torch.testing.assert_close(LDAMLoss(COUNTS, max_margin=0.0, scale=1.0)(x, t), expected)


# --- each loss against its formula written out ---------------------------------------------------


def test_focal_matches_formula():
    x, t = batch()
    alpha = torch.tensor([0.25, 1.0, 2.0, 0.75], dtype=torch.float64)
    p_t = x.softmax(1).gather(1, t[:, None]).squeeze(1)
    for gamma in (0.5, 1.0, 2.0, 5.0):
        naive = -((1 - p_t) ** gamma) * p_t.log()
        torch.testing.assert_close(FocalLoss(gamma, reduction="none")(x, t), naive)
        a_t = alpha[t]
        torch.testing.assert_close(FocalLoss(gamma, alpha=alpha)(x, t), (a_t * naive).sum() / a_t.sum())
    x2, t2 = batch(n=2, extra=(3,))
    p2 = x2.softmax(1).gather(1, t2[:, None]).squeeze(1)
    torch.testing.assert_close(FocalLoss(2.0, reduction="none")(x2, t2), -((1 - p2) ** 2) * p2.log())


def test_focal_gradient_finite_at_saturated_logits():
    # p_t rounds to exactly 1 in float32: the naive (1 - p_t) ** gamma has an infinite derivative.
    x = torch.tensor([[40.0, 0.0, 0.0], [-3.0, 1.0, 2.0]], requires_grad=True)
    t = torch.tensor([0, 2])
    p_t = x.softmax(1)[torch.arange(2), t]
    assert p_t[0].item() == 1.0
    naive = (-((1 - p_t) ** 0.5) * p_t.log()).mean()
    (naive_grad,) = torch.autograd.grad(naive, x)
    assert naive_grad.isnan().any()  # the failure the log-space factor avoids
    for gamma in (0.25, 0.5, 2.0):
        loss = FocalLoss(gamma)(x, t)
        (grad,) = torch.autograd.grad(loss, x)
        assert torch.isfinite(grad).all() and torch.isfinite(loss)
        assert grad[0].abs().max().item() < 1e-10  # a confident, correct example contributes ~nothing
        assert grad[1].abs().max().item() > 1e-3


def test_ldam_matches_formula():
    x, t = batch()
    w = torch.tensor([0.2, 0.5, 1.0, 2.3], dtype=torch.float64)
    margins = ldam_margins(COUNTS, 0.4).double()
    s = 7.0
    shifted = x.clone()
    shifted[torch.arange(len(t)), t] -= margins[t]
    expected = F.cross_entropy(s * shifted, t, weight=w)
    torch.testing.assert_close(LDAMLoss(COUNTS, max_margin=0.4, scale=s, weight=w)(x, t), expected)
    # A margin makes the loss larger than plain CE on the same scaled logits.
    assert LDAMLoss(COUNTS, scale=s)(x, t) > F.cross_entropy(s * x, t)


def test_logit_adjusted_and_balanced_softmax_match_formulas():
    x, t = batch()
    n = torch.tensor(COUNTS, dtype=torch.float64)
    prior = n / n.sum()
    for tau in (0.5, 1.0, 2.0):
        torch.testing.assert_close(LogitAdjustedLoss(COUNTS, tau=tau)(x, t), F.cross_entropy(x + tau * prior.log(), t))
    # Ren et al.: -log(n_y e^{x_y} / sum_j n_j e^{x_j}).
    by_hand = -((n * x.exp()) / (n * x.exp()).sum(1, keepdim=True)).gather(1, t[:, None]).log().mean()
    torch.testing.assert_close(BalancedSoftmaxLoss(COUNTS)(x, t), by_hand)
    torch.testing.assert_close(BalancedSoftmaxLoss(COUNTS)(x, t), LogitAdjustedLoss(COUNTS, tau=1.0)(x, t))


def test_posthoc_logit_adjustment():
    x, _ = batch()
    prior = torch.tensor(COUNTS, dtype=torch.float64) / sum(COUNTS)
    torch.testing.assert_close(posthoc_logit_adjustment(x, COUNTS, tau=1.5), x - 1.5 * prior.log())
    torch.testing.assert_close(posthoc_logit_adjustment(x, COUNTS, tau=0.0), x)
    # Equal logits: CE predicts the head; adjusted logits favour the rarest class.
    assert posthoc_logit_adjustment(torch.zeros(1, 4), COUNTS).argmax().item() == 3
    torch.testing.assert_close(log_class_prior([1, 3]), torch.tensor([math.log(0.25), math.log(0.75)]))
    assert posthoc_logit_adjustment(x.float(), COUNTS).dtype == torch.float32
    x3 = torch.zeros(2, 4, 5)
    assert posthoc_logit_adjustment(x3, COUNTS)[:, 3].min() > posthoc_logit_adjustment(x3, COUNTS)[:, 0].max()


# --- gradients ------------------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(4))
def test_gradcheck(index):
    w = torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=torch.float64)
    x, t = batch(n=3)
    x.requires_grad_(True)
    for weight, reduction in ((w, "none"), (w, "mean"), (None, "sum")):
        loss_fn = all_losses(weight)[index]
        loss_fn.reduction = reduction
        assert torch.autograd.gradcheck(lambda z, f=loss_fn: f(z, t), (x,), fast_mode=reduction != "none")
    xs, ts = batch(n=2, extra=(3,))
    xs.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: all_losses(w)[index](z, ts), (xs,), fast_mode=True)


def test_gradcheck_focal_small_gamma():
    x, t = batch(n=4)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: FocalLoss(gamma=0.3)(z, t), (x,))


# --- PyTorch conventions ----------------------------------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True])
def test_reductions(weighted):
    x, t = batch(n=8)
    w = torch.tensor([0.5, 1.0, 2.0, 3.0]) if weighted else None
    for loss_fn in all_losses(w):
        loss_fn.reduction = "none"
        per_example = loss_fn(x, t)
        assert per_example.shape == t.shape
        loss_fn.reduction = "sum"
        torch.testing.assert_close(loss_fn(x, t), per_example.sum())
        loss_fn.reduction = "mean"
        denominator = w.double()[t].sum() if weighted else len(t)
        torch.testing.assert_close(loss_fn(x, t), per_example.sum() / denominator)


def test_weights_are_buffers_and_state_dict_round_trips():
    w = inverse_frequency_weights(COUNTS)
    x, t = batch(dtype=torch.float32)
    for make in (
        lambda: FocalLoss(2.0, alpha=w),
        lambda: LDAMLoss(COUNTS, weight=w),
        lambda: LogitAdjustedLoss(COUNTS, weight=w),
        lambda: BalancedSoftmaxLoss(COUNTS, weight=w),
    ):
        original = make()
        buffers = dict(original.named_buffers())
        assert "weight" in buffers and not list(original.parameters())
        state = original.state_dict()
        assert set(state) == set(buffers)
        fresh = make()
        for b in fresh.buffers():
            b.zero_()  # buffers are copies: this must not touch w or the original's buffers
        assert w.min() > 0 and all(b.min() != 0 for b in original.buffers())
        fresh.load_state_dict(state)
        torch.testing.assert_close(fresh(x, t), original(x, t))
    assert FocalLoss().weight is None and FocalLoss(alpha=w).alpha is not None
    assert "margins" in LDAMLoss(COUNTS).state_dict() and "log_prior" in LogitAdjustedLoss(COUNTS).state_dict()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtype_and_device_follow_input(device, dtype):
    x, t = batch(dtype=dtype)
    x, t = x.to(device), t.to(device)
    for loss_fn in all_losses(inverse_frequency_weights(COUNTS)):  # float32 CPU buffers
        out = loss_fn(x, t)
        assert out.dtype == dtype and out.device == x.device and torch.isfinite(out)
        moved = loss_fn.to(device=device, dtype=torch.float64)
        assert moved(x, t).dtype == dtype


# --- deferred re-weighting --------------------------------------------------------------------------


def test_deferred_reweighting_switches_weights():
    x, t = batch(dtype=torch.float32)
    w = class_balanced_weights(COUNTS, 0.999)
    drw = DeferredReweighting(w, start_epoch=2)
    for loss_fn in (nn.CrossEntropyLoss(), FocalLoss(0.0), LDAMLoss(COUNTS, max_margin=0.0, scale=1.0)):
        for epoch in (0, 1):
            drw(loss_fn, epoch)
            assert loss_fn.weight is None
            torch.testing.assert_close(loss_fn(x, t), F.cross_entropy(x, t))
        for epoch in (2, 5):
            drw(loss_fn, epoch)
            torch.testing.assert_close(loss_fn.weight, w)
            torch.testing.assert_close(loss_fn(x, t), F.cross_entropy(x, t, weight=w))
    assert drw.weight_at(1) is None and drw.weight_at(2) is w and "start_epoch=2" in repr(drw)


# --- bad input gives clear errors ---------------------------------------------------------------------


def test_bad_targets_and_shapes():
    x, t = batch()
    for loss_fn in all_losses():
        with pytest.raises(ValueError, match=r"target values must be in \[0, 4\)"):
            loss_fn(x, torch.tensor([0, 1, 2, 3, 4, 0]))
        with pytest.raises(ValueError, match=r"target values must be in"):
            loss_fn(x, torch.tensor([0, 1, 2, 3, -1, 0]))
        with pytest.raises(TypeError, match="int64"):
            loss_fn(x, t.int())
        with pytest.raises(TypeError, match="int64"):
            loss_fn(x, t.double())
        with pytest.raises(TypeError, match="floating-point"):
            loss_fn(x.long(), t)
        with pytest.raises(ValueError, match=r"target must have shape \(6,\)"):
            loss_fn(x, t[:5])
        with pytest.raises(ValueError, match=r"shape \(N, C\)"):
            loss_fn(x[:, 0], t)
    for loss_fn in all_losses()[1:]:
        with pytest.raises(ValueError, match="built for 4 classes"):
            loss_fn(torch.randn(6, 5), t)
    with pytest.raises(ValueError, match=r"weight must have 4 entries \(one per class of input\), got 3"):
        FocalLoss(alpha=[1.0, 2.0, 3.0])(x, t)


def test_bad_counts_and_hyperparameters():
    for make in (
        inverse_frequency_weights,
        lambda c: class_balanced_weights(c, 0.9),
        ldam_margins,
        LDAMLoss,
        LogitAdjustedLoss,
        BalancedSoftmaxLoss,
        lambda c: posthoc_logit_adjustment(torch.zeros(2, len(c) if c else 1), c),
    ):
        for bad in ([5, 0, 3], [5, -1], [5, 2.5], [7], []):
            with pytest.raises(ValueError, match="class_counts"):
                make(bad)
    with pytest.raises(ValueError, match="weight must have 4 entries"):
        LDAMLoss(COUNTS, weight=[1.0, 2.0])
    with pytest.raises(ValueError, match="non-negative"):
        LogitAdjustedLoss(COUNTS, weight=[1.0, -1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="class_counts has 4 entries but logits have 3"):
        posthoc_logit_adjustment(torch.zeros(2, 3), COUNTS)
    with pytest.raises(TypeError, match="floating-point"):
        posthoc_logit_adjustment(torch.zeros(2, 4, dtype=torch.long), COUNTS)
    cases = [
        (lambda: FocalLoss(gamma=-0.5), ValueError, "gamma"),
        (lambda: FocalLoss(gamma=math.nan), ValueError, "gamma"),
        (lambda: FocalLoss(gamma="2"), TypeError, "gamma must be a real number"),
        (lambda: FocalLoss(alpha=0.25), ValueError, "1-D"),
        (lambda: LogitAdjustedLoss(COUNTS, tau=-1.0), ValueError, "tau"),
        (lambda: LogitAdjustedLoss(COUNTS, tau=math.inf), ValueError, "tau"),
        (lambda: posthoc_logit_adjustment(torch.zeros(1, 4), COUNTS, tau=-0.1), ValueError, "tau"),
        (lambda: class_balanced_weights(COUNTS, beta=1.0), ValueError, r"beta must be a finite number in \[0, 1\)"),
        (lambda: class_balanced_weights(COUNTS, beta=-0.1), ValueError, "beta"),
        (lambda: inverse_frequency_weights(COUNTS, power=-1.0), ValueError, "power"),
        (lambda: ldam_margins(COUNTS, max_margin=-0.5), ValueError, "max_margin"),
        (lambda: LDAMLoss(COUNTS, scale=0.0), ValueError, "scale"),
        (lambda: FocalLoss(reduction="average"), ValueError, "reduction must be one of"),
        (lambda: BalancedSoftmaxLoss(COUNTS, reduction="elementwise"), ValueError, "reduction"),
        (lambda: DeferredReweighting(None, 3), TypeError, "weights"),
        (lambda: DeferredReweighting([1.0, 2.0], -1), ValueError, "start_epoch"),
        (lambda: DeferredReweighting([1.0, 2.0], 1.5), ValueError, "start_epoch"),
        (lambda: DeferredReweighting([1.0, 2.0], 1)(object(), 0), TypeError, "attribute 'weight'"),
        (lambda: DeferredReweighting([1.0, 2.0], 1).weight_at(-1), ValueError, "epoch"),
    ]
    for make, error, message in cases:
        with pytest.raises(error, match=message):
            make()


# --- ignore_index (segmentation-style targets) ------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore_index", [-100, 255])
def test_focal_ignore_index_matches_cross_entropy_at_gamma_zero(reduction, weighted, ignore_index):
    x, t = batch(n=3, extra=(4, 5))
    t[:, 0] = ignore_index  # an unlabelled border row in every image
    t[1, 2, 3] = ignore_index
    w = torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=torch.float64) if weighted else None
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = FocalLoss(0.0, w, reduction, ignore_index=ignore_index)(a, t)
    ref = F.cross_entropy(b, t, weight=w, ignore_index=ignore_index, reduction=reduction)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(torch.autograd.grad(ours.sum(), a)[0], torch.autograd.grad(ref.sum(), b)[0])


def test_focal_ignore_index_drops_positions_from_loss_and_denominator():
    x, t = batch(n=8)
    alpha = torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=torch.float64)
    keep = torch.tensor([1, 0, 1, 1, 0, 1, 1, 1], dtype=torch.bool)
    masked = t.masked_fill(~keep, -100)
    for a in (None, alpha):
        full = FocalLoss(2.0, a, reduction="none")(x, t)
        per = FocalLoss(2.0, a, reduction="none")(x, masked)
        assert (per[~keep] == 0).all()
        torch.testing.assert_close(per[keep], full[keep])
        # 'mean' over the kept positions only: the same as the loss of the kept rows alone
        torch.testing.assert_close(FocalLoss(2.0, a)(x, masked), FocalLoss(2.0, a)(x[keep], t[keep]))
    # every target ignored: 0 / 0, as F.cross_entropy gives
    all_ignored = torch.full_like(t, -100)
    assert FocalLoss(2.0)(x, all_ignored).isnan() and F.cross_entropy(x, all_ignored).isnan()
    assert FocalLoss(2.0, reduction="sum")(x, all_ignored) == 0
    with pytest.raises(TypeError, match="ignore_index"):
        FocalLoss(ignore_index=1.5)
    with pytest.raises(ValueError, match=r"or equal ignore_index=255"):
        FocalLoss(ignore_index=255)(x, t.masked_fill(~keep, -100))


def test_meta_device_result_follows_input_and_checks_no_values():
    # A device without data: the loss must run on it (no host reads) and return a tensor there.
    w = inverse_frequency_weights(COUNTS)
    x = torch.empty(6, 4, 3, device="meta")
    t = torch.empty(6, 3, dtype=torch.int64, device="meta")
    for loss_fn in all_losses(w):
        if loss_fn.weight is not None:  # a CPU buffer with a meta input: refused, as nn.CrossEntropyLoss does
            with pytest.raises(RuntimeError, match="move the loss with the model"):
                loss_fn(x, t)
        loss_fn.to("meta")
        for reduction in REDUCTIONS:
            loss_fn.reduction = reduction
            out = loss_fn(x, t)
            assert out.device.type == "meta" and out.dtype == x.dtype
            assert out.shape == ((6, 3) if reduction == "none" else ())
