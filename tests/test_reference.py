"""Unit tests for helpers.reference (the from-scratch atlas) and helpers.onehot_losses."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import reference as ref
from helpers.onehot_losses import OneHotMSELoss
from helpers.reference import ATLAS, RTOL, check_entry, torch_loss_classes


def test_every_torch_loss_has_an_atlas_entry():
    """Fails when the installed torch gains (or loses) a loss class without an atlas entry."""
    discovered = set(torch_loss_classes())
    assert {"MSELoss", "CrossEntropyLoss", "CTCLoss"} <= discovered, "discovery found too few classes"
    missing = sorted(discovered - set(ATLAS))
    assert not missing, f"torch.nn losses without an atlas entry in helpers/reference.py: {missing}"
    stale = sorted(set(ATLAS) - discovered)
    assert not stale, f"atlas entries for classes the installed torch.nn does not export: {stale}"


def test_discovery_sees_a_new_loss(monkeypatch):
    """The discovery is programmatic: a new _Loss subclass exported by torch.nn is found."""

    class BrandNewLoss(nn.modules.loss._Loss):
        def forward(self, input, target):
            return (input - target).sum()

    monkeypatch.setattr(nn, "BrandNewLoss", BrandNewLoss, raising=False)
    assert "BrandNewLoss" in torch_loss_classes()
    assert "BrandNewLoss" not in ATLAS


@pytest.mark.parametrize("name", sorted(ATLAS))
def test_reference_matches_torch(name):
    """Values and input gradients agree with torch.nn for every case and every reduction."""
    entry = ATLAS[name]
    result = check_entry(entry)
    reductions = {r for case in entry.cases(torch.Generator().manual_seed(0)) for r in case.reductions}
    assert {"none", "mean", "sum"} <= reductions
    assert result.comparisons >= 2 * 3, f"{name}: too few comparisons ({result.comparisons})"
    assert result.ok, f"{name}: " + "; ".join(result.failures)


@pytest.mark.parametrize("name", sorted(ATLAS))
def test_options_are_exercised(name):
    """Every option named in the atlas row appears in at least one case (or is a documented shape option)."""
    entry = ATLAS[name]
    cases = entry.cases(torch.Generator().manual_seed(0))
    used = {k for case in cases for k in case.kwargs}
    labels = " ".join(f"{case.label} {' '.join(case.reductions)}" for case in cases)
    for option in entry.options:
        key = option.split()[0]
        assert key in used or key in labels or option in labels, f"{name}: option {option!r} is never exercised"


def test_check_entry_detects_a_wrong_reference():
    """The checker is not vacuous: a reference that is off by a factor fails."""
    good = ATLAS["MSELoss"]
    bad = ref.AtlasEntry(**{**good.__dict__, "reference": lambda *a, **k: 1.01 * ref.mse_loss(*a, **k)})
    result = check_entry(bad)
    assert not result.ok and result.failures


def test_check_entry_detects_a_wrong_gradient():
    """A reference with the right value but a wrong gradient fails too."""

    def wrong_grad(input, target, reduction="mean"):
        value = ref.l1_loss(input, target, reduction)
        return value + 0.5 * (input - input.detach()).sum()  # same value, shifted gradient

    bad = ref.AtlasEntry(**{**ATLAS["L1Loss"].__dict__, "reference": wrong_grad})
    assert any("gradient" in f for f in check_entry(bad).failures)


def test_ctc_backward_assumes_normalised_log_probs():
    """Documented formula vs torch: CTC's gradient w.r.t. log_probs is the true one plus exp(log_probs)."""
    g = torch.Generator().manual_seed(0)
    lp = torch.randn(10, 2, 4, generator=g, dtype=torch.float64).log_softmax(2).requires_grad_()
    targets, in_len, tg_len = torch.tensor([[1, 2, 3], [2, 2, 0]]), torch.tensor([10, 8]), torch.tensor([3, 2])
    (g_torch,) = torch.autograd.grad(F.ctc_loss(lp, targets, in_len, tg_len, reduction="sum"), lp)
    (g_ref,) = torch.autograd.grad(ref.ctc_loss(lp, targets, in_len, tg_len, reduction="sum"), lp)
    inside = (torch.arange(10)[:, None] < in_len).unsqueeze(-1)
    assert not torch.allclose(g_torch, g_ref)
    torch.testing.assert_close(g_torch, g_ref + lp.exp() * inside)


def test_reference_validation_errors():
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match="reduction must be one of"):
        ref.mse_loss(x, x, reduction="average")
    with pytest.raises(ValueError, match="same shape"):
        ref.mse_loss(x, x[:, :1])
    with pytest.raises(TypeError, match="floating-point"):
        ref.l1_loss(x.long(), x.long())
    with pytest.raises(ValueError, match="probabilities"):
        ref.binary_cross_entropy(x, x.sigmoid())
    with pytest.raises(ValueError, match="delta"):
        ref.huber_loss(x, x, delta=0.0)
    with pytest.raises(TypeError, match="int64"):
        ref.nll_loss(x, torch.zeros(3, dtype=torch.int32))
    with pytest.raises(ValueError, match="p must be 1 or 2"):
        ref.multi_margin_loss(x, torch.zeros(3, dtype=torch.long), p=3)


def test_ctc_impossible_alignment_is_inf_with_finite_gradient():
    lp = torch.randn(3, 1, 3, dtype=torch.float64).log_softmax(2).requires_grad_()
    loss = ref.ctc_loss(lp, torch.tensor([[1, 1, 1]]), torch.tensor([3]), torch.tensor([3]), reduction="none")
    assert math.isinf(loss.item())
    zero = ref.ctc_loss(lp, torch.tensor([[1, 1, 1]]), [3], [3], reduction="sum", zero_infinity=True)
    (grad,) = torch.autograd.grad(zero, lp)
    assert zero.item() == 0.0 and torch.isfinite(grad).all()


def test_atlas_frame_has_live_columns():
    results = {name: check_entry(ATLAS[name]) for name in ("L1Loss", "KLDivLoss")}
    frame = ref.atlas_frame({**{n: ref.CheckResult(n) for n in ATLAS}, **results})
    assert list(frame.index) == list(ATLAS)
    assert frame.loc["L1Loss", "verified"] == "yes"
    assert frame.loc["MSELoss", "verified"].startswith("NO")  # nothing was run for it
    assert RTOL < 1e-6


# ---- OneHotMSELoss -------------------------------------------------------------------------------


def _batch(n=8, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g, dtype=torch.float64), torch.arange(n) % c


def test_onehot_mse_unweighted_is_mse_on_one_hot():
    x, y = _batch()
    expected = F.mse_loss(x, F.one_hot(y, 4).double())
    torch.testing.assert_close(OneHotMSELoss(4)(x, y), expected)
    torch.testing.assert_close(OneHotMSELoss(4, weight=torch.full((4,), 3.0))(x, y), expected)
    torch.testing.assert_close(OneHotMSELoss(4, reduction="sum")(x, y), expected * x.numel() / 4)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_onehot_mse_weighted_formula(reduction):
    x, y = _batch()
    w = torch.tensor([0.5, 1.0, 2.0, 4.0], dtype=torch.float64)
    per_example = w[y] * ((x - F.one_hot(y, 4)) ** 2).mean(1)
    expected = {"none": per_example, "sum": per_example.sum(), "mean": per_example.sum() / w[y].sum()}[reduction]
    torch.testing.assert_close(OneHotMSELoss(4, weight=w, reduction=reduction)(x, y), expected)


def test_onehot_mse_weight_is_a_buffer_and_gradcheck():
    loss = OneHotMSELoss(3, weight=[1.0, 2.0, 3.0]).double()
    assert "weight" in dict(loss.named_buffers())
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 1, 0])
    assert torch.autograd.gradcheck(lambda z: loss(z, y), (x,))


def test_onehot_mse_validation():
    with pytest.raises(ValueError, match="num_classes"):
        OneHotMSELoss(1)
    with pytest.raises(ValueError, match="reduction"):
        OneHotMSELoss(3, reduction="avg")
    with pytest.raises(ValueError, match="3 entries"):
        OneHotMSELoss(3, weight=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        OneHotMSELoss(3)(torch.randn(2, 4), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="int64"):
        OneHotMSELoss(3)(torch.randn(2, 3), torch.tensor([0, 1], dtype=torch.int32))
