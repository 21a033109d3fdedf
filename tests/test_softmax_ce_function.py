"""helpers.autograd_losses.SoftmaxCrossEntropyFunction and double backward (create_graph=True).

The Function's backward is hand-written and not differentiable. Marking it ``once_differentiable``
(the previous design) raised only when the incoming gradient required grad: in the usual
``torch.autograd.grad(loss, z, create_graph=True)`` the first derivative came back without a graph,
and a gradient penalty built on it trained silently without its second-order term. These tests pin
the fixed behaviour: the plain backward is unchanged, ``create_graph=True`` raises.
"""

import pytest
import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from helpers.autograd_losses import SoftmaxCrossEntropyFunction, composed_cross_entropy, softmax_cross_entropy


def _data(n=8, c=4, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g, dtype=dtype).requires_grad_()
    t = torch.randint(0, c, (n,), generator=g)
    w = torch.rand(c, generator=g, dtype=dtype) + 0.5
    return z, t, w


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
def test_plain_backward_matches_cross_entropy(reduction, weighted):
    z, t, w = _data()
    weight = w if weighted else None
    cotangent = torch.randn(len(t), dtype=z.dtype) if reduction == "none" else torch.tensor(1.3, dtype=z.dtype)
    (ours,) = torch.autograd.grad(softmax_cross_entropy(z, t, weight, reduction), z, cotangent)
    (ref,) = torch.autograd.grad(F.cross_entropy(z, t, weight=weight, reduction=reduction), z, cotangent)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-14)
    assert ours.grad_fn is None and not ours.requires_grad


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_create_graph_raises(reduction):
    z, t, w = _data()
    loss = softmax_cross_entropy(z, t, w, reduction).sum()
    with pytest.raises(RuntimeError, match="does not support double backward"):
        torch.autograd.grad(loss, z, create_graph=True)


def test_gradient_penalty_raises_instead_of_dropping_its_second_order_term():
    z, t, _ = _data()
    with pytest.raises(RuntimeError, match="double backward"):
        (g,) = torch.autograd.grad(softmax_cross_entropy(z, t), z, create_graph=True)
        (softmax_cross_entropy(z, t) + (g**2).sum()).backward()


def test_once_differentiable_alone_would_drop_the_penalty_silently():
    """The failure mode the guard prevents: with once_differentiable, no error and a wrong gradient."""

    class OnceDifferentiable(SoftmaxCrossEntropyFunction):
        @staticmethod
        @once_differentiable
        def backward(ctx, grad_output):  # once_differentiable runs it under no_grad: no raise
            return SoftmaxCrossEntropyFunction.backward(ctx, grad_output)

    z, t, _ = _data()
    (g,) = torch.autograd.grad(OnceDifferentiable.apply(z, t, None, "mean"), z, create_graph=True)
    assert g.grad_fn is None  # no graph, and no error
    zr = z.detach().clone().requires_grad_()
    (gr,) = torch.autograd.grad(composed_cross_entropy(zr, t), zr, create_graph=True)
    (composed_cross_entropy(zr, t) + (gr**2).sum()).backward()
    assert not torch.allclose(zr.grad, g, atol=1e-6)  # the true gradient of the penalised loss differs


def test_double_backward_still_works_on_the_composed_reference():
    z, t, w = _data()
    assert torch.autograd.gradgradcheck(lambda v: composed_cross_entropy(v, t, w), (z,))


def test_weight_gradient_under_no_create_graph_unchanged():
    z, t, w = _data()
    w1 = w.clone().requires_grad_()
    w2 = w.clone().requires_grad_()
    (gw,) = torch.autograd.grad(softmax_cross_entropy(z, t, w1), w1)
    (ref,) = torch.autograd.grad(composed_cross_entropy(z, t, w2), w2)
    torch.testing.assert_close(gw, ref, rtol=1e-12, atol=1e-14)


def test_function_apply_directly_raises_on_create_graph():
    z, t, _ = _data()
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(SoftmaxCrossEntropyFunction.apply(z, t, None, "sum"), z, create_graph=True)
