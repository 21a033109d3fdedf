"""Every function of helpers.reference agrees with torch on every sample input of PyTorch's OpInfo database.

PyTorch tests each operator on the sample inputs of its ``OpInfo``
(``torch.testing._internal.common_methods_invocations.op_db``): the shapes, broadcasts, options and
edge cases its authors chose. Running the book's references on the same samples checks that they
accept what torch accepts (and refuse what torch refuses), with the same values and gradients, on
inputs the book's own atlas did not choose. CPU, float64 where the OpInfo allows it.

Exceptions are named here, never skipped silently:

* ``ctc_loss``: torch's backward assumes ``log_softmax`` inputs and returns the formula's gradient
  plus ``exp(log_probs)`` times the gradient flowing into each sequence's loss (1 with ``'sum'``,
  1 / (N * target length) with ``'mean'``; chapter 1). The test asserts that the direct gradients differ, and that they
  agree through ``log_softmax``.
* references with no OpInfo are listed in ``NO_OPINFO`` with the reason and where they are tested.
"""

from __future__ import annotations

import inspect
import warnings

import pytest
import torch

# op_db imports the test-only package ``expecttest`` (in the dev requirements): a missing one is
# an error of the environment, never a reason to skip the agreement test.
from torch.testing._internal.common_methods_invocations import op_db

from helpers import reference as ref

#: reference function -> the OpInfo name of the torch function it re-implements
REFERENCE_OPS = {
    name: ("log_softmax" if name == "log_softmax" else f"nn.functional.{name}")
    for name in ref.__all__
    if inspect.isfunction(getattr(ref, name)) and name[0].islower()
}

#: public functions of helpers.reference without an OpInfo, and why
NO_OPINFO = {
    "adaptive_log_softmax": "nn.AdaptiveLogSoftmaxWithLoss is a module with no functional form or OpInfo; "
    "test_reference.py::test_adaptive_log_softmax_matches_the_module checks it",
    "atlas_checks_frame": "a table of the atlas, not a torch function",
    "atlas_frame": "a table of the atlas, not a torch function",
    "check_entry": "the atlas checker, not a torch function",
    "torch_loss_classes": "lists torch.nn's loss classes, not a torch function",
}

#: references whose gradient w.r.t. a leaf differs from torch's by design (values still agree)
GRADIENT_THROUGH_LOG_SOFTMAX = {"ctc_loss"}

OPS = {(op.name, op.variant_test_name): op for op in op_db}
RTOL, ATOL = 1e-7, 1e-9


def _dtype(op) -> torch.dtype:
    supported = op.supported_dtypes("cpu")
    return torch.float64 if torch.float64 in supported else torch.float32


def _leaves(sample) -> list[torch.Tensor]:
    args = (sample.input, *sample.args, *sample.kwargs.values())
    return [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad and a.is_leaf]


def _call(fn, sample):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kl_div 'mean', linear_cross_entropy options fallbacks
        return fn(sample.input, *sample.args, **sample.kwargs)


def _cases() -> list[tuple[str, str]]:
    cases = []
    for name, op_name in sorted(REFERENCE_OPS.items()):
        if name in NO_OPINFO:
            continue
        variants = sorted(v for (n, v) in OPS if n == op_name)
        cases += [(name, v) for v in variants] or [(name, "<none>")]
    return cases


def test_every_reference_is_covered_or_excused():
    """Every public function of helpers.reference has an OpInfo in this torch or a stated reason."""
    functions = {n for n in ref.__all__ if inspect.isfunction(getattr(ref, n))}
    excused = set(NO_OPINFO)
    assert excused <= functions, excused - functions
    for name in sorted(excused):
        assert (REFERENCE_OPS.get(name), "") not in OPS, f"{name} has an OpInfo now: test it"
    assert len(functions - excused) >= 20


@pytest.mark.parametrize(("name", "variant"), _cases(), ids=lambda x: x or "default")
def test_reference_agrees_with_torch_on_opinfo_samples(name, variant):
    fn = getattr(ref, name)
    op = OPS.get((REFERENCE_OPS[name], variant))
    if op is None:
        version = torch.__version__
        assert not hasattr(torch.nn.functional, name), f"torch {version} has F.{name} but no OpInfo for it"
        pytest.skip(f"torch {version} has no F.{name} (newer than this torch)")
    samples = list(op.sample_inputs("cpu", _dtype(op), requires_grad=True))
    assert samples, f"{op.name}: no sample inputs"
    rejected = 0
    for i, sample in enumerate(samples):
        where = f"{op.name}[{variant}] sample {i}: {sample.summary() if hasattr(sample, 'summary') else ''}"
        try:
            want = _call(op.op, sample)
        except (RuntimeError, ValueError, TypeError, IndexError):
            rejected += 1  # torch refuses this sample: so must the reference
            with pytest.raises((RuntimeError, ValueError, TypeError, IndexError)):
                _call(fn, sample)
            continue
        got = _call(fn, sample)
        assert got.shape == want.shape, f"{where}: shape {tuple(got.shape)} vs torch {tuple(want.shape)}"
        assert torch.allclose(got, want, rtol=RTOL, atol=ATOL, equal_nan=True), (
            f"{where}: value differs by {(got - want).abs().max().item():.3g}"
        )
        leaves = _leaves(sample)
        if not (leaves and want.requires_grad):
            continue
        v = torch.randn(want.shape, dtype=want.dtype, generator=torch.Generator().manual_seed(i))
        grads_t = torch.autograd.grad((want * v).sum(), leaves, allow_unused=True)
        grads_r = torch.autograd.grad((got * v).sum(), leaves, allow_unused=True)
        agree = [
            torch.allclose(
                torch.zeros_like(x) if gt is None else gt,
                torch.zeros_like(x) if gr is None else gr,
                rtol=RTOL,
                atol=ATOL,
                equal_nan=True,
            )
            for x, gt, gr in zip(leaves, grads_t, grads_r, strict=True)
        ]
        if name in GRADIENT_THROUGH_LOG_SOFTMAX:
            assert not agree[0], f"{where}: CTC's direct gradient now matches the formula (update chapter 1)"
            _assert_ctc_agrees_through_log_softmax(fn, op, sample, v, where)
            continue
        assert all(agree), f"{where}: gradient of leaf {agree.index(False)} differs"
    assert rejected < len(samples), f"{op.name}: torch rejected every sample"


def _assert_ctc_agrees_through_log_softmax(fn, op, sample, v, where):
    """Through ``log_softmax`` of raw scores, torch's CTC gradient is the formula's."""
    scores_t = sample.input.detach().clone().requires_grad_()
    scores_r = sample.input.detach().clone().requires_grad_()
    out_t = op.op(scores_t.log_softmax(-1), *sample.args, **sample.kwargs)
    out_r = fn(scores_r.log_softmax(-1), *sample.args, **sample.kwargs)
    (g_t,) = torch.autograd.grad((out_t * v).sum(), scores_t)
    (g_r,) = torch.autograd.grad((out_r * v).sum(), scores_r)
    assert torch.allclose(g_t, g_r, rtol=RTOL, atol=ATOL), f"{where}: gradient through log_softmax differs"
