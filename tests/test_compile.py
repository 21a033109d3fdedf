"""``torch.compile(fullgraph=True)`` on every loss module the book's helpers define.

A loss that reads a tensor value on the host in ``forward`` (``int(t.min())``, ``if (t < 0).any():``)
waits for the GPU on every call and splits the compiled graph. ``fullgraph=True`` turns any such
graph break into an error, so these tests fail if a loss ever does it again.

Which losses: every ``nn.Module`` loss found by :func:`helpers.autograd_losses.discover_losses` (the
same walk over ``helpers`` that the gradcheck tests use, so a new loss module is compiled here as
soon as it exists), plus the functional and ``autograd.Function`` forms of the fast focal loss. The
example inputs are the float64 cases of its gradcheck factory; compiled values and gradients must
equal eager ones. Most cases use the ``aot_eager`` backend (Dynamo capture plus AOTAutograd's
forward and backward graphs, which is where graph breaks and host reads show up, in about a second
per loss, with the ``'mean'`` reduction); one case, the hand-written ``FastFocalLoss``, goes through
``inductor`` (generated C++ on the CPU), and, on a machine with a GPU, through ``inductor`` on CUDA.
"""

import pytest
import torch
import torch._dynamo
from torch import nn

from helpers.autograd_losses import discover_losses, gradcheck_cases
from helpers.fast_focal import FastFocalLoss
from helpers.losses import FocalLoss

LOSSES = discover_losses()
COMPILED = sorted(
    name
    for name, obj in LOSSES.items()
    if (isinstance(obj, type) and issubclass(obj, nn.Module)) or name.startswith("helpers.fast_focal.")
)


def _values_and_grads(fn, inputs):
    leaves = [t.detach().clone().requires_grad_(t.requires_grad) for t in inputs]
    out = fn(*leaves)
    wrt = [t for t in leaves if t.requires_grad]
    grads = torch.autograd.grad(out.sum(), wrt) if wrt else ()
    return out.detach(), grads


def test_every_loss_module_in_helpers_is_compiled():
    expected = {
        "helpers.losses.FocalLoss",
        "helpers.losses.LDAMLoss",
        "helpers.losses.LogitAdjustedLoss",
        "helpers.losses.BalancedSoftmaxLoss",
        "helpers.custom_losses.SigmoidFocalLoss",
        "helpers.custom_losses.LabelSmoothingCrossEntropy",
        "helpers.custom_losses.SoftDiceLoss",
        "helpers.custom_losses.UncertaintyWeightedLoss",
        "helpers.fast_focal.FastFocalLoss",
        "helpers.fast_focal.FocalLossFunction",
        "helpers.fast_focal.fast_focal_loss",
    }
    assert expected <= set(COMPILED)


@pytest.mark.parametrize("name", COMPILED)
def test_fullgraph_compile_matches_eager(name):
    cases = gradcheck_cases(name, LOSSES[name])  # KeyError (a failure) when the loss has no factory
    # One reduction keeps the test fast: 'mean' takes the longest path (weights summed, then divided).
    cases = [c for c in cases if c.label.endswith("reduction='mean'")] or cases
    for case in cases:
        torch._dynamo.reset()  # each case is a new closure over the same code: start from a clean cache
        compiled = torch.compile(case.loss, fullgraph=True, backend="aot_eager")
        out, grads = _values_and_grads(compiled, case.inputs)
        ref, ref_grads = _values_and_grads(case.loss, case.inputs)
        torch.testing.assert_close(out, ref, msg=lambda m, c=case: f"{name}, {c.label}: {m}")
        for g, r in zip(grads, ref_grads, strict=True):
            torch.testing.assert_close(g, r, msg=lambda m, c=case: f"{name}, {c.label} (gradient): {m}")


def _inductor_check(device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 5, 3, 3, generator=g).to(device)
    y = torch.randint(0, 5, (4, 3, 3), generator=g).to(device)
    y[:, 0] = 255
    alpha = torch.linspace(0.5, 2.0, 5)
    # The hand-written autograd.Function: the case most likely to trip a compiler backend.
    loss_fn = FastFocalLoss(2.0, alpha, ignore_index=255).to(device)
    torch._dynamo.reset()
    compiled = torch.compile(loss_fn, fullgraph=True, backend="inductor")
    out, (grad,) = _values_and_grads(compiled, (x.requires_grad_(), y))
    ref, (ref_grad,) = _values_and_grads(FocalLoss(2.0, alpha, ignore_index=255).to(device), (x, y))
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(grad, ref_grad)
    return compiled, x, y


def test_inductor_cpu_focal_losses_with_ignore_index():
    compiled, x, y = _inductor_check("cpu")
    bad = y.clone()
    bad[0, 1, 1] = 7  # out of range, and not the ignore_index: refused inside the compiled code
    with pytest.raises(RuntimeError):
        compiled(x, bad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_inductor_cuda_focal_losses_with_ignore_index():
    _inductor_check("cuda")
