"""gradcheck in float64 on every loss the book's helpers define, found by walking the package.

A loss added to ``helpers/`` without a factory in ``GRADCHECK_FACTORIES`` makes these tests fail,
so no loss enters the book with unchecked gradients. Every case runs gradcheck's fast mode (a
random projection of the Jacobian); losses with a hand-written backward (autograd Functions) also
get the full Jacobian comparison.
"""

import sys
import textwrap

import pytest
import torch
from torch.autograd.gradcheck import GradcheckError

from helpers.autograd_losses import (
    GRADCHECK_FACTORIES,
    GradcheckCase,
    check_case,
    discover_losses,
    gradcheck_cases,
    gradcheck_loss,
)

LOSSES = discover_losses()
HAND_WRITTEN = sorted(
    n for n, obj in LOSSES.items() if isinstance(obj, type) and issubclass(obj, torch.autograd.Function)
)


def test_discovery_finds_the_chapter_2_function_and_nothing_from_torch():
    assert "helpers.autograd_losses.SoftmaxCrossEntropyFunction" in LOSSES
    assert "helpers.autograd_losses.softmax_cross_entropy" in LOSSES
    assert all(name.startswith("helpers.") for name in LOSSES)
    assert "helpers.validation.reduce_loss" not in LOSSES  # listed in NOT_LOSSES
    assert "helpers.models.SmallCNN" not in LOSSES  # a module, but not a loss


def test_every_discovered_loss_has_a_factory():
    missing = sorted(set(LOSSES) - set(GRADCHECK_FACTORIES))
    assert not missing, f"add gradcheck factories to helpers/autograd_losses.py for: {missing}"


def test_every_factory_names_an_existing_loss():
    stale = sorted(set(GRADCHECK_FACTORIES) - set(LOSSES))
    assert not stale, f"GRADCHECK_FACTORIES names losses that no longer exist: {stale}"


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradcheck_float64(name):
    cases = gradcheck_cases(name, LOSSES[name])  # KeyError (a failure) when the factory is missing
    assert cases, f"{name}: the factory built no case"
    for case in cases:
        assert check_case(case, fast_mode=True) == ("failed as documented" if case.expected_failure else "passed")


@pytest.mark.parametrize("name", HAND_WRITTEN)
def test_full_jacobian_of_hand_written_backward(name):
    for case in gradcheck_cases(name, LOSSES[name]):
        assert check_case(case) == ("failed as documented" if case.expected_failure else "passed")


def test_an_expected_failure_that_passes_is_reported():
    x = torch.randn(3, dtype=torch.float64, requires_grad=True)
    case = GradcheckCase("smooth", lambda v: (v**2).sum(), (x,), expected_failure="claimed non-differentiable")
    with pytest.raises(AssertionError, match="expected gradcheck to fail"):
        check_case(case)


def test_a_missing_factory_is_an_error():
    with pytest.raises(KeyError, match="no gradcheck factory"):
        gradcheck_cases("helpers.nowhere.NewLoss", object)


def test_float32_inputs_are_refused():
    z = torch.randn(3, 4, requires_grad=True)
    case = GradcheckCase("float32", lambda x: x.logsumexp(1).sum(), (z,))
    with pytest.raises(TypeError, match="float64"):
        gradcheck_loss(case)


def test_a_wrong_backward_is_caught():
    class WrongSquare(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return (x**2).sum()

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * x  # should be 2 x

    x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    for fast_mode in (True, False):
        with pytest.raises(GradcheckError):
            gradcheck_loss(GradcheckCase("x^2 with backward x", WrongSquare.apply, (x,)), fast_mode=fast_mode)


def test_discovery_rules_on_a_scratch_package(tmp_path, monkeypatch):
    pkg = tmp_path / "scratchpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn
            from torch.nn import MSELoss  # imported, not defined here: ignored

            class HingeLoss(nn.Module):
                pass

            class SmoothedCE(nn.Module):
                def __init__(self, reduction="mean"):
                    super().__init__()

            class Net(nn.Module):  # not a loss
                pass

            class SquareFunction(torch.autograd.Function):
                pass

            def dice_loss(x, y, reduction="mean"):
                return x

            def helper(x):
                return x

            class _PrivateLoss(nn.Module):
                pass
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        found = discover_losses("scratchpkg")
    finally:
        for key in [k for k in sys.modules if k.startswith("scratchpkg")]:
            del sys.modules[key]
    assert sorted(found) == [
        "scratchpkg.mod.HingeLoss",
        "scratchpkg.mod.SmoothedCE",
        "scratchpkg.mod.SquareFunction",
        "scratchpkg.mod.dice_loss",
    ]
