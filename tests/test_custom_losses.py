"""Unit tests for helpers.custom_losses, following the chapter-6 pattern: reference equality, limits,
gradcheck in float64, properties, bad inputs and state_dict round-trips."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from helpers.custom_losses import (
    LabelSmoothingCrossEntropy,
    SigmoidFocalLoss,
    SoftDiceLoss,
    UncertaintyWeightedLoss,
)
from helpers.fast_focal import FastFocalLoss

REDUCTIONS = ("none", "mean", "sum")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _value_and_grad(fn, x: torch.Tensor, *args) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss value and d(sum of loss)/dx for a fresh leaf copy of x."""
    leaf = x.detach().clone().requires_grad_()
    out = fn(leaf, *args)
    (grad,) = torch.autograd.grad(out.sum(), leaf)
    return out.detach(), grad


# ----------------------------------------------------------------------------- SigmoidFocalLoss


@pytest.mark.parametrize(
    "dtype, reduction, gamma, alpha",
    list(itertools.product([torch.float32, torch.float64], REDUCTIONS, [0.0, 0.5, 2.0], [0.25, -1])),
)
def test_sigmoid_focal_matches_torchvision(dtype, reduction, gamma, alpha):
    g = _gen(1)
    x = 2.5 * torch.randn(64, 5, generator=g, dtype=dtype)
    t = (torch.rand(64, 5, generator=g) > 0.7).to(dtype)
    ref, ref_grad = _value_and_grad(
        lambda z, y: sigmoid_focal_loss(z, y, alpha=alpha, gamma=gamma, reduction=reduction), x, t
    )
    out, grad = _value_and_grad(SigmoidFocalLoss(alpha, gamma, reduction), x, t)
    assert out.dtype == dtype and out.shape == ref.shape
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(grad, ref_grad)


def test_sigmoid_focal_soft_targets_match_torchvision():
    g = _gen(2)
    x = torch.randn(40, 3, generator=g, dtype=torch.float64)
    t = torch.rand(40, 3, generator=g, dtype=torch.float64)
    t[0, 0], t[1, 1] = 0.0, 1.0
    ref, ref_grad = _value_and_grad(lambda z, y: sigmoid_focal_loss(z, y, reduction="sum"), x, t)
    out, grad = _value_and_grad(SigmoidFocalLoss(reduction="sum"), x, t)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(grad, ref_grad)


def test_sigmoid_focal_limit_is_bce():
    x = torch.randn(30, 4, generator=_gen(3))
    t = (torch.rand(30, 4, generator=_gen(4)) > 0.5).float()
    torch.testing.assert_close(SigmoidFocalLoss(alpha=None, gamma=0.0)(x, t), F.binary_cross_entropy_with_logits(x, t))


def test_sigmoid_focal_at_most_bce_elementwise():
    x = 4 * torch.randn(500, generator=_gen(5))
    t = (torch.rand(500, generator=_gen(6)) > 0.5).float()
    focal = SigmoidFocalLoss(alpha=None, gamma=2.0, reduction="none")(x, t)
    bce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    assert (focal <= bce).all() and (focal >= 0).all()


def test_sigmoid_focal_gamma_below_one_saturated_logits_have_finite_gradients():
    x = torch.tensor([40.0, -40.0, 25.0, 3.0])
    t = torch.tensor([1.0, 0.0, 1.0, 0.0])
    _, grad = _value_and_grad(SigmoidFocalLoss(gamma=0.5, reduction="sum"), x, t)
    assert torch.isfinite(grad).all()
    # torchvision forms 1 - p_t = 0 and differentiates 0 ** 0.5: NaN
    _, tv_grad = _value_and_grad(lambda z, y: sigmoid_focal_loss(z, y, gamma=0.5, reduction="sum"), x, t)
    assert torch.isnan(tv_grad[:3]).all()


def test_sigmoid_focal_gradcheck_float64():
    x = torch.randn(6, 3, generator=_gen(7), dtype=torch.float64, requires_grad=True)
    t = (torch.rand(6, 3, generator=_gen(8)) > 0.5).double()
    for gamma, reduction in itertools.product([0.5, 2.0], REDUCTIONS):
        loss = SigmoidFocalLoss(0.25, gamma, reduction)
        assert torch.autograd.gradcheck(lambda z, loss=loss: loss(z, t), (x,), fast_mode=True)


def test_sigmoid_focal_bad_inputs():
    x, t = torch.randn(4, 2), torch.ones(4, 2)
    with pytest.raises(ValueError, match="alpha"):
        SigmoidFocalLoss(alpha=1.5)
    with pytest.raises(ValueError, match="gamma"):
        SigmoidFocalLoss(gamma=-1)
    with pytest.raises(ValueError, match="reduction"):
        SigmoidFocalLoss(reduction="average")
    with pytest.raises(TypeError, match="target must be a floating"):
        SigmoidFocalLoss()(x, t.long())
    with pytest.raises(ValueError, match="shape"):
        SigmoidFocalLoss()(x, torch.ones(4))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        SigmoidFocalLoss()(x, 2 * t)


# ----------------------------------------------------------------------------- LabelSmoothingCrossEntropy


def _segmentation_batch(seed: int, num_classes: int = 5, ignore_index: int = -100):
    g = _gen(seed)
    x = torch.randn(6, num_classes, 3, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, num_classes, (6, 3, 4), generator=g)
    y[0, 0, :2] = ignore_index
    return x, y


@pytest.mark.parametrize(
    "reduction, weighted, ignore_index, spatial",
    list(itertools.product(REDUCTIONS, [False, True], [-100, 2], [False, True])),
)
def test_label_smoothing_matches_cross_entropy(reduction, weighted, ignore_index, spatial):
    x, y = _segmentation_batch(10, ignore_index=ignore_index)
    if not spatial:
        x, y = x[:, :, 0, 0], y[:, 0, 0]
    w = torch.linspace(0.2, 3.0, 5, dtype=torch.float64) if weighted else None
    kwargs = dict(weight=w, ignore_index=ignore_index, reduction=reduction)
    ref, ref_grad = _value_and_grad(lambda z, t: F.cross_entropy(z, t, label_smoothing=0.2, **kwargs), x, y)
    out, grad = _value_and_grad(LabelSmoothingCrossEntropy(0.2, **kwargs), x, y)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(grad, ref_grad)


def test_label_smoothing_limits():
    x, y = _segmentation_batch(11)
    torch.testing.assert_close(LabelSmoothingCrossEntropy(0.0)(x, y), F.cross_entropy(x, y))
    # eps = 1: the label is ignored, the target is uniform: mean over classes of -log p
    expected = -F.log_softmax(x, 1).mean(1)[y != -100].mean()
    torch.testing.assert_close(LabelSmoothingCrossEntropy(1.0)(x, y), expected)


def test_label_smoothing_mean_invariant_to_weight_scale():
    x, y = _segmentation_batch(12)
    w = torch.rand(5, generator=_gen(13), dtype=torch.float64) + 0.1
    a = LabelSmoothingCrossEntropy(0.1, weight=w)(x, y)
    b = LabelSmoothingCrossEntropy(0.1, weight=7.5 * w)(x, y)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(
        LabelSmoothingCrossEntropy(0.1, weight=w, reduction="sum")(x, y),
        LabelSmoothingCrossEntropy(0.1, weight=7.5 * w, reduction="sum")(x, y),
    )


def test_label_smoothing_gradcheck_float64():
    x, y = _segmentation_batch(14)
    x = x[:2, :, :2, :2].contiguous().requires_grad_()
    y = y[:2, :2, :2]
    w = torch.linspace(0.5, 2.0, 5, dtype=torch.float64)
    for reduction in REDUCTIONS:
        loss = LabelSmoothingCrossEntropy(0.3, weight=w, reduction=reduction)
        assert torch.autograd.gradcheck(lambda z, loss=loss: loss(z, y), (x,), fast_mode=True)


def test_label_smoothing_bad_inputs():
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match="label_smoothing"):
        LabelSmoothingCrossEntropy(1.5)
    with pytest.raises(ValueError, match="weight must have 3 entries"):
        LabelSmoothingCrossEntropy(0.1, weight=[1.0, 2.0])(x, y)
    with pytest.raises(TypeError, match="int64"):
        LabelSmoothingCrossEntropy()(x, y.int())
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        LabelSmoothingCrossEntropy()(x, torch.tensor([0, 1, 3, 0]))
    with pytest.raises(TypeError, match="ignore_index"):
        LabelSmoothingCrossEntropy(ignore_index=1.0)


def test_label_smoothing_state_dict_and_dtype():
    loss = LabelSmoothingCrossEntropy(0.1, weight=[1.0, 2.0, 3.0])
    clone = LabelSmoothingCrossEntropy(0.1, weight=[0.0, 0.0, 0.0])
    clone.load_state_dict(loss.state_dict())
    assert torch.equal(clone.weight, loss.weight)
    assert "weight" in dict(loss.named_buffers())
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 2, 1])
    assert clone(x, y).dtype == torch.float64
    assert loss.to(torch.float64).weight.dtype == torch.float64


# ----------------------------------------------------------------------------- SoftDiceLoss


def _probs_and_labels(seed: int, n: int = 2, c: int = 3, h: int = 4, w: int = 5):
    g = _gen(seed)
    probs = torch.randn(n, c, h, w, generator=g, dtype=torch.float64).softmax(1)
    labels = torch.randint(0, c, (n, h, w), generator=g)
    return probs, labels


def test_dice_hand_computed_value():
    # one image, two classes, two pixels: p(class 1) = (0.8, 0.4), labels (1, 0)
    probs = torch.tensor([[[0.2, 0.6], [0.8, 0.4]]]).unsqueeze(-1)  # (1, 2, 2, 1)
    labels = torch.tensor([[[1], [0]]])  # (1, 2, 1)
    loss = SoftDiceLoss(smooth=0.0, reduction="none")(probs, labels)
    expected = torch.tensor([[1 - 2 * 0.6 / (0.8 + 1), 1 - 2 * 0.8 / (1.2 + 1)]])
    torch.testing.assert_close(loss, expected)


def test_dice_perfect_and_onehot_equivalence():
    _, labels = _probs_and_labels(20)
    perfect = F.one_hot(labels, 3).movedim(-1, 1).double()
    assert SoftDiceLoss()(perfect, labels).item() == pytest.approx(0.0, abs=1e-12)
    probs, _ = _probs_and_labels(21)
    torch.testing.assert_close(SoftDiceLoss()(probs, labels), SoftDiceLoss()(probs, perfect))


def test_dice_shapes_weights_and_batch_dice():
    probs, labels = _probs_and_labels(22)
    assert SoftDiceLoss(reduction="none")(probs, labels).shape == (2, 3)
    assert SoftDiceLoss(reduction="none", batch_dice=True)(probs, labels).shape == (3,)
    w = torch.tensor([0.5, 1.0, 2.0])
    a = SoftDiceLoss(weight=w)(probs, labels)
    torch.testing.assert_close(a, SoftDiceLoss(weight=10 * w)(probs, labels))
    per = SoftDiceLoss(reduction="none")(probs, labels)
    torch.testing.assert_close(a, (per * w.double()).sum() / (2 * w.sum()).double())


def test_dice_ignore_index_drops_pixels():
    probs, labels = _probs_and_labels(23)
    ignored = labels.clone()
    ignored[:, 0, :] = 255
    masked = SoftDiceLoss(ignore_index=255, reduction="none")(probs, ignored)
    cropped = SoftDiceLoss(reduction="none")(probs[:, :, 1:], labels[:, 1:])
    torch.testing.assert_close(masked, cropped)


def test_dice_on_argmax_has_no_gradient():
    logits = torch.randn(2, 3, 4, 5, generator=_gen(24), requires_grad=True)
    labels = torch.randint(0, 3, (2, 4, 5), generator=_gen(25))
    hard = F.one_hot(logits.argmax(1), 3).movedim(-1, 1).float()
    loss = SoftDiceLoss()(hard, labels)
    assert loss.grad_fn is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        loss.backward()
    SoftDiceLoss()(logits.softmax(1), labels).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_dice_gradcheck_float64():
    logits = torch.randn(2, 3, 2, 3, generator=_gen(26), dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 3, (2, 2, 3), generator=_gen(27))
    for reduction, batch_dice in itertools.product(REDUCTIONS, [False, True]):
        loss = SoftDiceLoss(weight=[1.0, 2.0, 0.5], batch_dice=batch_dice, reduction=reduction)
        assert torch.autograd.gradcheck(lambda z, loss=loss: loss(z.softmax(1), labels), (logits,), fast_mode=True)


def test_dice_bad_inputs_and_state_dict():
    probs, labels = _probs_and_labels(28)
    with pytest.raises(ValueError, match="probabilities"):
        SoftDiceLoss()(probs * 5 - 2, labels)
    with pytest.raises(ValueError, match=r"\(N, C, d1"):
        SoftDiceLoss()(probs[:, :, 0, 0], labels[:, 0, 0])
    with pytest.raises(ValueError, match="target must have shape"):
        SoftDiceLoss()(probs, labels[:, :2])
    with pytest.raises(ValueError, match="smooth"):
        SoftDiceLoss(smooth=-1.0)
    with pytest.raises(ValueError, match="weight must have 3 entries"):
        SoftDiceLoss(weight=[1.0, 2.0])(probs, labels)
    loss = SoftDiceLoss(weight=[1.0, 2.0, 3.0])
    clone = SoftDiceLoss(weight=[1.0, 1.0, 1.0])
    clone.load_state_dict(loss.state_dict())
    torch.testing.assert_close(clone(probs, labels), loss(probs, labels))


# ----------------------------------------------------------------------------- UncertaintyWeightedLoss


def test_uncertainty_formula_and_input_forms():
    mtl = UncertaintyWeightedLoss(2, ["classification", "regression"])
    with torch.no_grad():
        mtl.log_vars.copy_(torch.tensor([0.5, -1.0]))
    l1, l2 = torch.tensor(0.3), torch.tensor(4.0)
    expected = torch.exp(torch.tensor(-0.5)) * 0.3 + 0.25 + 0.5 * torch.exp(torch.tensor(1.0)) * 4.0 - 0.5
    torch.testing.assert_close(mtl(l1, l2), expected)
    torch.testing.assert_close(mtl([l1, l2]), expected)
    torch.testing.assert_close(mtl(torch.stack([l1, l2])), expected)
    torch.testing.assert_close(mtl.weights(), torch.tensor([torch.exp(torch.tensor(-0.5)), 0.5 * torch.e]))
    assert UncertaintyWeightedLoss(2, reduction="none")(l1, l2).shape == (2,)


def test_uncertainty_optimum_and_negative_total():
    # For a fixed task loss L the optimum is exp(s) = 2 c L and the term is 1/2 + 1/2 log(2 c L) < 0 for small L.
    losses = torch.tensor([0.05, 0.02])
    mtl = UncertaintyWeightedLoss(2, ["classification", "regression"])
    opt = torch.optim.Adam(mtl.parameters(), lr=0.08)
    for _ in range(400):
        opt.zero_grad()
        total = mtl(losses)
        total.backward()
        opt.step()
    expected_s = torch.log(2 * mtl.scales * losses)
    torch.testing.assert_close(mtl.log_vars.detach(), expected_s, atol=1e-3, rtol=0)
    torch.testing.assert_close(mtl(losses).detach(), (0.5 + 0.5 * expected_s).sum(), atol=1e-5, rtol=0)
    assert mtl(losses).item() < 0


def test_uncertainty_needs_optimizer_and_clamping_kills_gradient():
    model = torch.nn.Linear(2, 2)
    mtl = UncertaintyWeightedLoss(2)
    forgot = torch.optim.SGD(model.parameters(), lr=0.1)  # log-variances not handed over
    for _ in range(5):
        forgot.zero_grad()
        out = model(torch.ones(1, 2))[0]
        mtl(out[0] ** 2, out[1] ** 2).backward()
        forgot.step()
    assert torch.equal(mtl.log_vars.detach(), torch.zeros(2))
    # A total clamped at 0 has no gradient once it is negative.
    negative = UncertaintyWeightedLoss(1, init_log_var=-3.0)
    negative(torch.tensor(0.01)).clamp(min=0).backward()
    assert negative.log_vars.grad.abs().sum() == 0


def test_uncertainty_gradcheck_and_bad_inputs():
    mtl = UncertaintyWeightedLoss(2, ["regression", "classification"]).double()
    losses = torch.tensor([0.7, 1.3], dtype=torch.float64, requires_grad=True)
    log_vars = torch.tensor([0.1, -0.2], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda s, task_losses: torch.func.functional_call(mtl, {"log_vars": s}, (task_losses,)), (log_vars, losses)
    )
    with pytest.raises(ValueError, match="num_tasks"):
        UncertaintyWeightedLoss(0)
    with pytest.raises(ValueError, match="task_types"):
        UncertaintyWeightedLoss(2, ["classification", "segmentation"])
    with pytest.raises(ValueError, match="expected 2 task losses"):
        mtl(torch.tensor(1.0))
    with pytest.raises(ValueError, match="scalar"):
        mtl(torch.ones(3), torch.tensor(1.0))
    clone = UncertaintyWeightedLoss(2, ["regression", "classification"])
    with torch.no_grad():
        mtl.log_vars.fill_(0.7)
    clone.load_state_dict(mtl.state_dict())
    torch.testing.assert_close(clone.log_vars.detach(), torch.full((2,), 0.7))


def test_meta_device_runs_without_reading_values():
    # meta tensors have shapes and dtypes but no values: a forward that read one would raise
    n, c = 4, 3
    logits = torch.empty(n, c, 2, 2, device="meta")
    classes = torch.empty(n, 2, 2, dtype=torch.int64, device="meta")
    cases = [
        (SigmoidFocalLoss(), (logits, torch.empty(n, c, 2, 2, device="meta"))),
        (LabelSmoothingCrossEntropy(0.1, weight=[1.0, 2.0, 3.0]), (logits, classes)),
        (SoftDiceLoss(weight=[1.0, 2.0, 3.0], ignore_index=255), (logits, classes)),
        (FastFocalLoss(2.0, alpha=[1.0, 2.0, 3.0], ignore_index=255), (logits, classes)),
    ]
    for loss_fn, args in cases:
        if any(True for _ in loss_fn.buffers()):  # CPU buffers, meta input: refused, as in torch.nn
            with pytest.raises(RuntimeError, match="move the loss with the model"):
                loss_fn(*args)
        out = loss_fn.to("meta")(*args)
        assert out.device.type == "meta" and out.dtype == logits.dtype and out.dim() == 0, type(loss_fn).__name__
