"""Unit tests for helpers.autograd_losses: the hand-written softmax cross-entropy Function."""

import pytest
import torch
import torch.nn.functional as F

from helpers.autograd_losses import SoftmaxCrossEntropyFunction, composed_cross_entropy, softmax_cross_entropy

REDUCTIONS = ("none", "mean", "sum")


def _data(n=12, c=5, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = (2 * torch.randn(n, c, generator=g, dtype=dtype)).requires_grad_()
    t = torch.randint(0, c, (n,), generator=g)
    w = torch.rand(c, generator=g, dtype=dtype) + 0.2
    return z, t, w


def _composed(z, t, w, reduction):
    """The same loss from differentiable torch ops, so autograd supplies the reference gradients."""
    return composed_cross_entropy(z, t, w, reduction)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_cross_entropy_values_and_gradients(reduction, weighted, dtype):
    z, t, w = _data(dtype=dtype)
    weight = w if weighted else None
    ours = softmax_cross_entropy(z, t, weight, reduction)
    ref = F.cross_entropy(z, t, weight=weight, reduction=reduction)
    assert ours.dtype == dtype and ours.shape == ref.shape
    tol = {"atol": 1e-6, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 1e-12, "rtol": 1e-10}
    torch.testing.assert_close(ours, ref, **tol)
    cotangent = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    (g_ours,) = torch.autograd.grad((ours * cotangent).sum(), z)
    (g_ref,) = torch.autograd.grad((ref * cotangent).sum(), z)
    torch.testing.assert_close(g_ours, g_ref, **tol)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_weight_gradient_matches_autograd(reduction):
    z, t, w = _data(dtype=torch.float64)
    w1 = w.clone().requires_grad_()
    w2 = w.clone().requires_grad_()
    cotangent = torch.randn(z.shape[0] if reduction == "none" else (), dtype=torch.float64)
    grads = torch.autograd.grad((softmax_cross_entropy(z, t, w1, reduction) * cotangent).sum(), (z, w1))
    expected = torch.autograd.grad((_composed(z, t, w2, reduction) * cotangent).sum(), (z, w2))
    for ours, ref in zip(grads, expected, strict=True):
        torch.testing.assert_close(ours, ref)


def test_gradient_formula_by_hand():
    z, t, w = _data(dtype=torch.float64)
    loss = softmax_cross_entropy(z, t, w)
    (g,) = torch.autograd.grad(loss, z)
    by_hand = w[t].unsqueeze(1) * (z.softmax(1) - F.one_hot(t, z.shape[1])) / w[t].sum()
    torch.testing.assert_close(g, by_hand.detach())


def test_weights_follow_input_dtype_and_accept_sequences():
    z, t, _ = _data(dtype=torch.float64)
    out = softmax_cross_entropy(z, t, [1.0, 2.0, 3.0, 4.0, 5.0])
    ref = F.cross_entropy(z, t, weight=torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype=torch.float64))
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, ref)
    out32w = softmax_cross_entropy(z, t, torch.ones(5))  # float32 weights, float64 input
    torch.testing.assert_close(out32w, F.cross_entropy(z, t))


def test_stable_at_extreme_logits():
    z = torch.tensor([[1000.0, 0.0, -1000.0], [-1000.0, 1000.0, 0.0]], requires_grad=True)
    t = torch.tensor([2, 0])
    loss = softmax_cross_entropy(z, t, reduction="sum")
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
    torch.testing.assert_close(loss, F.cross_entropy(z, t, reduction="sum"))


def test_backward_twice_with_retain_graph_gives_the_same_gradient():
    z, t, w = _data()
    loss = softmax_cross_entropy(z, t, w)
    loss.backward(retain_graph=True)
    first = z.grad.clone()
    loss.backward()  # the saved tensors must not have been modified in place by the first backward
    torch.testing.assert_close(z.grad, 2 * first)


def test_second_derivative_is_refused():
    z, t, _ = _data(dtype=torch.float64)
    scale = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)  # makes the incoming gradient differentiable
    loss = scale * softmax_cross_entropy(z, t)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(loss, z, create_graph=True)


def test_zero_total_weight_gives_nan_like_torch():
    z, t, _ = _data()
    weight = torch.zeros(5)
    assert torch.isnan(softmax_cross_entropy(z, t, weight)) and torch.isnan(F.cross_entropy(z, t, weight=weight))
    assert softmax_cross_entropy(z, t, weight, "sum").item() == 0.0


def test_validation_messages():
    z, t, _ = _data()
    with pytest.raises(ValueError, match="reduction"):
        softmax_cross_entropy(z, t, reduction="average")
    with pytest.raises(ValueError, match=r"shape \(N, C\)"):
        softmax_cross_entropy(z.unsqueeze(2), t.unsqueeze(1))
    with pytest.raises(TypeError, match="int64"):
        softmax_cross_entropy(z, t.int())
    with pytest.raises(TypeError, match="floating-point"):
        softmax_cross_entropy(z.detach().long(), t)
    with pytest.raises(ValueError, match=r"target must have shape \(12,\)"):
        softmax_cross_entropy(z, t[:5])
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        softmax_cross_entropy(z, torch.full_like(t, 5))
    with pytest.raises(ValueError, match="5 entries"):
        softmax_cross_entropy(z, t, torch.ones(4))
    with pytest.raises(ValueError, match="non-negative"):
        softmax_cross_entropy(z, t, -torch.ones(5))


def test_function_apply_directly():
    z, t, w = _data()
    torch.testing.assert_close(SoftmaxCrossEntropyFunction.apply(z, t, w, "mean"), F.cross_entropy(z, t, weight=w))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_composed_reference_is_cross_entropy(reduction):
    z, t, w = _data(dtype=torch.float64)
    for weight in (None, w):
        expected = F.cross_entropy(z, t, weight=weight, reduction=reduction)
        assert torch.allclose(composed_cross_entropy(z, t, weight, reduction), expected)


def test_composed_reference_gives_weight_gradients_and_validates():
    z, t, w = _data(dtype=torch.float64)
    w_leaf = w.clone().requires_grad_()
    (g,) = torch.autograd.grad(composed_cross_entropy(z, t, w_leaf), w_leaf)
    assert g.shape == w.shape and torch.isfinite(g).all()
    with pytest.raises(ValueError, match="reduction"):
        composed_cross_entropy(z, t, w, "avg")
    with pytest.raises(ValueError, match=r"shape \(N, C\)"):
        composed_cross_entropy(z[0], t, w)
    with pytest.raises(ValueError, match="5 entries"):
        composed_cross_entropy(z, t, w[:3])
