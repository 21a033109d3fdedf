"""Unit tests for helpers.fast_focal: same values and gradients as helpers.losses.FocalLoss, limits,
gradcheck in float64, properties, bad inputs, ignore_index, state_dict and memory kept for backward
(the benchmark that measures speed is tested in tests/test_loss_benchmark.py; no test here is timed)."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from helpers.fast_focal import FastFocalLoss, fast_focal_loss
from helpers.losses import FocalLoss

REDUCTIONS = ("none", "mean", "sum")


def _logits(shape, seed=0, dtype=torch.float64, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    x = scale * torch.randn(*shape, generator=g, dtype=dtype)
    c = shape[1]
    y = torch.randint(0, c, (shape[0], *shape[2:]), generator=g)
    return x, y


def _forward_backward(loss, x, y):
    leaf = x.detach().clone().requires_grad_()
    out = loss(leaf, y)
    (grad,) = torch.autograd.grad(out.sum(), leaf)
    return out.detach(), grad


@pytest.mark.parametrize(
    "dtype, reduction, gamma, weighted, shape",
    list(
        itertools.product(
            [torch.float32, torch.float64], REDUCTIONS, [0.0, 0.5, 2.0, 3.5], [False, True], [(40, 7), (8, 5, 3, 2)]
        )
    ),
)
def test_matches_reference_focal_loss(dtype, reduction, gamma, weighted, shape):
    x, y = _logits(shape, seed=1, dtype=dtype)
    alpha = torch.linspace(0.25, 2.0, shape[1]) if weighted else None
    ref, ref_grad = _forward_backward(FocalLoss(gamma, alpha, reduction), x, y)
    out, grad = _forward_backward(FastFocalLoss(gamma, alpha, reduction), x, y)
    assert out.dtype == dtype and out.shape == ref.shape
    if dtype == torch.float64:
        torch.testing.assert_close(out, ref)
        torch.testing.assert_close(grad, ref_grad)
        return
    # float32: both round differently; the fast version must be at least as close to the float64 truth
    truth, truth_grad = _forward_backward(FocalLoss(gamma, alpha, reduction), x.double(), y)
    for fast_value, ref_value, exact in [(out, ref, truth), (grad, ref_grad, truth_grad)]:
        fast_error = (fast_value.double() - exact).abs().max()
        ref_error = (ref_value.double() - exact).abs().max()
        assert fast_error <= 1.5 * ref_error + 1e-6 * exact.abs().max()
        torch.testing.assert_close(fast_value.double(), exact, rtol=1e-5, atol=1e-5)


def test_limits_are_cross_entropy():
    x, y = _logits((50, 6), seed=2)
    w = torch.rand(6, dtype=torch.float64) + 0.1
    torch.testing.assert_close(fast_focal_loss(x, y, gamma=0.0), F.cross_entropy(x, y))
    torch.testing.assert_close(fast_focal_loss(x, y, w, gamma=0.0), F.cross_entropy(x, y, weight=w))
    torch.testing.assert_close(
        fast_focal_loss(x, y, w, gamma=0.0, reduction="none"), F.cross_entropy(x, y, weight=w, reduction="none")
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_ignore_index_matches_reference_and_cross_entropy(reduction, weighted, gamma):
    x, y = _logits((6, 5, 3, 2), seed=11)  # (N, C, H, W)
    y[:, 0] = 255
    y[2, 1, 1] = 255
    alpha = torch.linspace(0.25, 2.0, 5, dtype=torch.float64) if weighted else None
    out, grad = _forward_backward(FastFocalLoss(gamma, alpha, reduction, ignore_index=255), x, y)
    ref, ref_grad = _forward_backward(FocalLoss(gamma, alpha, reduction, ignore_index=255), x, y)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(grad, ref_grad)
    assert (grad.movedim(1, -1)[y == 255] == 0).all()  # ignored pixels get no gradient
    if gamma == 0.0:
        ce = F.cross_entropy(x, y, weight=alpha, ignore_index=255, reduction=reduction)
        torch.testing.assert_close(out, ce)


def test_ignore_index_default_is_minus_100_and_gradcheck():
    x, y = _logits((6, 4), seed=12, scale=1.5)
    y[1] = -100
    x.requires_grad_()
    torch.testing.assert_close(fast_focal_loss(x, y, gamma=0.0), F.cross_entropy(x, y))
    for reduction in REDUCTIONS:
        assert torch.autograd.gradcheck(lambda z, r=reduction: fast_focal_loss(z, y, None, 0.5, r), (x,))


def test_gradcheck_float64():
    x, y = _logits((5, 4), seed=3, scale=1.5)
    x.requires_grad_()
    alpha = torch.tensor([0.5, 1.0, 1.5, 2.0], dtype=torch.float64)
    for gamma, a, reduction in itertools.product([0.0, 0.5, 2.0], [None, alpha], REDUCTIONS):
        assert torch.autograd.gradcheck(
            lambda z, g=gamma, a=a, r=reduction: fast_focal_loss(z, y, a, g, r), (x,), fast_mode=reduction == "none"
        )


def test_gamma_below_one_finite_gradients_at_saturated_logits():
    x = torch.tensor([[60.0, 0.0, 0.0], [0.0, 30.0, -30.0], [2.0, 1.0, 0.0]], requires_grad=True)
    y = torch.tensor([0, 1, 2])
    loss = fast_focal_loss(x, y, gamma=0.5)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    assert x.grad[2].abs().sum() > 0  # the hard example still learns


def test_focal_at_most_cross_entropy_elementwise():
    x, y = _logits((300, 10), seed=4)
    focal = fast_focal_loss(x, y, gamma=2.0, reduction="none")
    ce = F.cross_entropy(x, y, reduction="none")
    assert (focal <= ce).all() and (focal >= 0).all()


def test_mean_invariant_to_scaling_alpha():
    x, y = _logits((60, 5), seed=5)
    alpha = torch.rand(5, dtype=torch.float64) + 0.1
    torch.testing.assert_close(fast_focal_loss(x, y, alpha), fast_focal_loss(x, y, 3.0 * alpha))
    assert not torch.allclose(
        fast_focal_loss(x, y, alpha, reduction="sum"), fast_focal_loss(x, y, 3.0 * alpha, reduction="sum")
    )


def test_bad_inputs():
    x, y = _logits((4, 3), seed=6)
    with pytest.raises(ValueError, match="gamma"):
        fast_focal_loss(x, y, gamma=-0.5)
    with pytest.raises(ValueError, match="reduction"):
        fast_focal_loss(x, y, reduction="avg")
    with pytest.raises(ValueError, match="alpha must have 3 entries"):
        fast_focal_loss(x, y, alpha=[1.0, 2.0])
    with pytest.raises(TypeError, match="int64"):
        fast_focal_loss(x, y.int())
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        fast_focal_loss(x, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(TypeError, match="floating-point"):
        FastFocalLoss()(y.view(4, 1).expand(4, 3).contiguous(), y)


def test_state_dict_round_trip_with_reference_module():
    reference = FocalLoss(2.0, alpha=[0.5, 1.0, 2.0])
    fast = FastFocalLoss(2.0, alpha=[1.0, 1.0, 1.0])
    fast.load_state_dict(reference.state_dict())
    assert torch.equal(fast.alpha, reference.alpha)
    x, y = _logits((10, 3), seed=7)
    torch.testing.assert_close(fast(x, y), reference(x, y))
    assert fast.to(torch.float64).weight.dtype == torch.float64


def _saved_storages(fn, x):
    """Storages (data pointer -> shape) that autograd saves for backward while ``fn(x)`` runs."""
    saved = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = tuple(t.shape)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x)
    return saved


def test_saves_the_logits_and_only_vectors_for_n_c_input():
    x, y = _logits((64, 50), seed=8, dtype=torch.float32)
    x.requires_grad_()
    saved = _saved_storages(lambda z: fast_focal_loss(z, y), x)
    big = [ptr for ptr, shape in saved.items() if math.prod(shape) >= x.numel()]
    assert big == [x.untyped_storage().data_ptr()]  # the logits themselves, no (N, C) copy


def test_dense_input_saves_a_copy_unless_channels_last():
    x = torch.randn(2, 5, 4, 4, requires_grad=True)
    y = torch.randint(0, 5, (2, 4, 4))
    ptr = x.untyped_storage().data_ptr()
    big = [p for p, s in _saved_storages(lambda z: fast_focal_loss(z, y), x).items() if math.prod(s) >= x.numel()]
    assert big and ptr not in big  # contiguous (N, C, H, W): the flattened copy is saved
    xcl = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    saved = _saved_storages(lambda z: fast_focal_loss(z, y), xcl)
    big = [p for p, s in saved.items() if math.prod(s) >= x.numel()]
    assert big == [xcl.untyped_storage().data_ptr()]  # channels_last: a view of the logits


def test_double_backward_is_exact():
    x, y = _logits((6, 4), seed=8)
    y[1] = -100
    alpha = torch.linspace(0.5, 2.0, 4, dtype=torch.float64)
    for gamma in (0.0, 0.5, 2.0):
        z = x.clone().requires_grad_()
        assert torch.autograd.gradgradcheck(lambda t, g=gamma: fast_focal_loss(t, y, alpha, g), (z,))
    # a gradient penalty gets the same gradient as through the eager reference
    grads = []
    for loss_fn in (FastFocalLoss(2.0, alpha), FocalLoss(2.0, alpha)):
        z = x.clone().requires_grad_()
        (g,) = torch.autograd.grad(loss_fn(z, y), z, create_graph=True)
        (total,) = torch.autograd.grad(loss_fn(z, y) + 10 * g.pow(2).sum(), z)
        grads.append(total)
    torch.testing.assert_close(*grads)


def test_forward_mode_raises_while_focal_loss_supports_it():
    """The documented scope: FocalLossFunction has no jvp, so forward-mode AD raises."""
    x = torch.randn(4, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 1])
    assert torch.func.jacfwd(lambda z: FocalLoss(0.5)(z, y))(x).shape == (4, 3)
    for transform in (torch.func.jacfwd, torch.func.hessian):
        with pytest.raises(NotImplementedError, match="jvp"):
            transform(lambda z: FastFocalLoss(0.5)(z, y))(x)
