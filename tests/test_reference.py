"""Unit tests for helpers.reference (the from-scratch atlas) and helpers.onehot_losses."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import reference as ref
from helpers.onehot_losses import OneHotMSELoss
from helpers.reference import ATLAS, RTOL, check_entry, torch_loss_classes
from helpers.versions import torch_at_least


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


def test_atlas_frame_reads_as_a_reference_with_the_evidence_apart():
    results = {name: check_entry(ATLAS[name]) for name in ("L1Loss", "KLDivLoss", "BCELoss")}
    all_results = {**{n: ref.CheckResult(n) for n in ATLAS}, **results}
    frame = ref.atlas_frame(all_results)
    assert list(frame.index) == list(ATLAS)
    assert {"formula (per element)", "input", "target", "use when"} <= set(frame.columns)
    assert not {"max |value diff|", "cases x reductions"} & set(frame.columns)  # the evidence is secondary
    assert frame.loc["L1Loss", "verified"] == "yes"
    assert frame.loc["BCELoss", "verified"] == "yes (gradient: see note)"
    assert frame.loc["MSELoss", "verified"].startswith("NO")  # nothing was run for it
    checks = ref.atlas_checks_frame(all_results)
    assert checks.loc["BCELoss", "gradient differs from the formula"] == 1
    assert checks.loc["L1Loss", "gradient differs from the formula"] == 0
    assert RTOL < 1e-6


def test_every_entry_has_a_formula_and_a_use():
    for name, entry in ATLAS.items():
        assert entry.formula.strip() and entry.use_when.strip(), name


def test_gradient_divergences_are_exactly_bce_and_ctc():
    """Values agree everywhere; two losses' gradients are not their formula's, and the atlas says which."""
    divergent = {name for name, entry in ATLAS.items() if check_entry(entry).divergences}
    assert divergent == {"BCELoss", "CTCLoss"}


def test_bce_gradient_at_the_clamp():
    """Torch: (x - y) / max(x(1 - x), 1e-12) (the 1e-12 is a float32 constant); the clamped formula: 0 or NaN."""
    y = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)
    x = torch.tensor([1e-50, 0.0, 1.0], dtype=torch.float64, requires_grad=True)
    (g_torch,) = torch.autograd.grad(F.binary_cross_entropy(x, y, reduction="sum"), x)
    (g_formula,) = torch.autograd.grad(ref.binary_cross_entropy(x, y, reduction="sum"), x)
    eps = float(torch.tensor(1e-12, dtype=torch.float32))
    torch.testing.assert_close(g_torch, torch.tensor([-1 / eps, -1 / eps, 1 / eps], dtype=torch.float64))
    assert g_formula[0].item() == 0.0 and g_formula[1:].isnan().all()
    value = ref.binary_cross_entropy(x.detach(), y, reduction="none")
    torch.testing.assert_close(value, F.binary_cross_entropy(x.detach(), y, reduction="none"))


def test_check_entry_fails_when_an_announced_divergence_disappears():
    entry = ATLAS["L1Loss"]
    case = ref.Case("announced", {}, (torch.randn(4, dtype=torch.float64, requires_grad=True),
                                      torch.randn(4, dtype=torch.float64)), grad_differs="claimed")
    bad = ref.AtlasEntry(**{**entry.__dict__, "cases": lambda g: [case]})
    result = check_entry(bad)
    assert result.failures and "agrees" in result.failures[0] and not result.divergences


def test_gaussian_nll_gradient_is_straight_through_at_the_clamped_variance():
    """Below eps, d loss / d var is the formula's derivative at v = eps, not 0 (the clamp) nor at var."""
    x, y, eps = torch.tensor([1.5], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64), 0.5
    var = torch.tensor([0.1], dtype=torch.float64, requires_grad=True)
    (g_torch,) = torch.autograd.grad(F.gaussian_nll_loss(x, y, var, eps=eps), var)
    (g_ref,) = torch.autograd.grad(ref.gaussian_nll_loss(x, y, var, eps=eps), var)
    at_clamped = 0.5 * (1 / eps - 1.0 / eps**2)
    unclamped = 0.5 * (1 / 0.1 - 1.0 / 0.1**2)
    assert math.isclose(g_torch.item(), at_clamped) and math.isclose(g_ref.item(), at_clamped)
    assert not math.isclose(g_torch.item(), unclamped) and g_torch.item() != 0.0


D64 = torch.float64


def _documented_shape_cases():
    g = torch.Generator().manual_seed(3)

    def r(*s):
        return torch.randn(s, generator=g, dtype=D64)

    def pos(*s):
        return torch.rand(s, generator=g, dtype=D64) + 0.2

    def signs(*s):
        return torch.randint(0, 2, s, generator=g).to(D64) * 2 - 1

    return [
        ("gaussian target (N, 1)", F.gaussian_nll_loss, ref.gaussian_nll_loss, (r(5, 3), r(5, 1), pos(5, 3))),
        ("gaussian target (1, D)", F.gaussian_nll_loss, ref.gaussian_nll_loss, (r(5, 3), r(1, 3), pos(5, 3))),
        *(  # torch 2.10 widened var's rule to (1, D); older torch refuses it (test below)
            [("gaussian var (1, D)", F.gaussian_nll_loss, ref.gaussian_nll_loss, (r(5, 3), r(5, 3), pos(1, 3)))]
            if torch_at_least("2.10")
            else []
        ),
        ("gaussian (B, C, H) with size-1 dims", F.gaussian_nll_loss, ref.gaussian_nll_loss,
         (r(2, 3, 4), r(2, 1, 4), pos(2, 3, 1))),
        ("gaussian var one dim fewer", F.gaussian_nll_loss, ref.gaussian_nll_loss, (r(5, 3), r(5, 3), pos(5))),
        ("gaussian unbatched (D)", F.gaussian_nll_loss, ref.gaussian_nll_loss, (r(4), r(4), pos(4))),
        ("gaussian 0-d target", F.gaussian_nll_loss, ref.gaussian_nll_loss, (r(5), r(), pos(5))),
        ("gaussian target one dim fewer", F.gaussian_nll_loss, ref.gaussian_nll_loss, (r(5, 5), r(5), pos(5))),
        ("hinge_embedding 0-d, y=1", F.hinge_embedding_loss, ref.hinge_embedding_loss,
         (r(), torch.tensor(1.0, dtype=D64))),
        ("hinge_embedding 0-d, y=-1", F.hinge_embedding_loss, ref.hinge_embedding_loss,
         (torch.tensor(0.3, dtype=D64), torch.tensor(-1.0, dtype=D64))),
        ("hinge_embedding target 0 (outside +-1)", F.hinge_embedding_loss, ref.hinge_embedding_loss,
         (r(6), torch.zeros(6, dtype=D64))),
        ("multi_margin (C), target ()", F.multi_margin_loss, ref.multi_margin_loss, (r(5), torch.tensor(2))),
        ("multi_margin (C), target (1)", F.multi_margin_loss, ref.multi_margin_loss, (r(5), torch.tensor([2]))),
        ("multi_margin 0-d", F.multi_margin_loss, ref.multi_margin_loss, (r(), torch.tensor(0))),
        ("multilabel_margin (C)", F.multilabel_margin_loss, ref.multilabel_margin_loss,
         (r(5), torch.tensor([2, 0, -1, 3, 3]))),
        ("multilabel_margin 0-d", F.multilabel_margin_loss, ref.multilabel_margin_loss, (r(), torch.tensor(0))),
        ("cross_entropy (C), probability target", F.cross_entropy, ref.cross_entropy, (r(5), r(5).softmax(0))),
        ("nll (C), target ()", F.nll_loss, ref.nll_loss, (r(5), torch.tensor(3))),
        ("cosine_embedding (D), target ()", F.cosine_embedding_loss, ref.cosine_embedding_loss,
         (r(4), r(4), signs())),
        ("triplet (D)", F.triplet_margin_loss, ref.triplet_margin_loss, (r(4), r(4), r(4))),
        ("margin_ranking 0-d", F.margin_ranking_loss, ref.margin_ranking_loss, (r(), r(), signs())),
        ("soft_margin 0-d", F.soft_margin_loss, ref.soft_margin_loss, (r(), signs())),
        ("mse 0-d", F.mse_loss, ref.mse_loss, (r(), r())),
        ("bce 0-d", F.binary_cross_entropy, ref.binary_cross_entropy, (pos().clamp(max=0.9), pos().clamp(max=1.0))),
        ("kl_div 0-d", F.kl_div, ref.kl_div, (r(), pos())),
    ]


@pytest.mark.parametrize("case", _documented_shape_cases(), ids=lambda c: c[0])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_reference_accepts_every_documented_shape(case, reduction):
    """Every shape torch documents (unbatched, 0-d, broadcasting size-1 dims): same value, shape, gradient."""
    _, torch_fn, ref_fn, args = case
    x_t, x_r = args[0].clone().requires_grad_(), args[0].clone().requires_grad_()
    out_t, out_r = torch_fn(x_t, *args[1:], reduction=reduction), ref_fn(x_r, *args[1:], reduction=reduction)
    assert out_t.shape == out_r.shape
    torch.testing.assert_close(out_r, out_t)
    (g_t,) = torch.autograd.grad(out_t.sum(), x_t, allow_unused=True)
    (g_r,) = torch.autograd.grad(out_r.sum(), x_r, allow_unused=True)
    if g_t is not None:
        torch.testing.assert_close(g_r, g_t)


def test_gaussian_var_of_shape_1_d_follows_the_running_torch():
    """A (1, D) variance for a (5, D) input: accepted from torch 2.10 on, refused before, by both."""
    x, var = torch.randn(5, 3), torch.rand(1, 3) + 0.2
    if torch_at_least("2.10"):
        torch.testing.assert_close(ref.gaussian_nll_loss(x, x.flip(0), var), F.gaussian_nll_loss(x, x.flip(0), var))
    else:
        with pytest.raises(ValueError, match="var"):
            F.gaussian_nll_loss(x, x.flip(0), var)
        with pytest.raises(ValueError, match="var must have"):
            ref.gaussian_nll_loss(x, x.flip(0), var)


def test_reference_rejects_undocumented_shapes():
    x = torch.randn(5, 3)
    with pytest.raises(ValueError, match="target must broadcast with input"):
        ref.gaussian_nll_loss(x, torch.randn(5, 2), torch.ones(5, 3))
    with pytest.raises(RuntimeError):  # torch refuses the same target
        F.gaussian_nll_loss(x, torch.randn(5, 2), torch.ones(5, 3))
    with pytest.raises(ValueError, match="var must have"):
        ref.gaussian_nll_loss(x, x, torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"target of shape \(\) or \(1,\)"):
        ref.multi_margin_loss(torch.randn(5), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"\(N, in\) or \(in\)"):
        ref.linear_cross_entropy(torch.randn(2, 3, 6), torch.randn(5, 6), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"target \(N,\)"):
        ref.cosine_embedding_loss(torch.randn(2, 3, 4), torch.randn(2, 3, 4), torch.ones(2, 3))


def test_adaptive_log_softmax_matches_the_module():
    """nn.AdaptiveLogSoftmaxWithLoss is not a _Loss (so not in the atlas); its reference agrees anyway."""
    assert not issubclass(nn.AdaptiveLogSoftmaxWithLoss, nn.modules.loss._Loss)
    assert "AdaptiveLogSoftmaxWithLoss" not in torch_loss_classes()
    torch.manual_seed(0)
    module = nn.AdaptiveLogSoftmaxWithLoss(8, 20, [5, 12], div_value=2.0, head_bias=True).double()
    tails = [(t[0].weight, t[1].weight) for t in module.tail]
    x = torch.randn(9, 8, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 4, 5, 11, 12, 19, 3, 7, 15])
    out, loss = module(x, y)
    out_r, loss_r = ref.adaptive_log_softmax(x, y, module.head.weight, tails, module.cutoffs, module.head.bias)
    torch.testing.assert_close(out_r, out)
    torch.testing.assert_close(loss_r, loss)
    (g_t,) = torch.autograd.grad(loss, x)
    (g_r,) = torch.autograd.grad(loss_r, x)
    torch.testing.assert_close(g_r, g_t)
    unbatched = ref.adaptive_log_softmax(x[0], y[0], module.head.weight, tails, module.cutoffs, module.head.bias)
    assert unbatched[0].shape == module(x[0], y[0]).output.shape == ()
    with pytest.raises(ValueError, match="target must be in"):
        ref.adaptive_log_softmax(x, y + 5, module.head.weight, tails, module.cutoffs)


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


def test_atlas_skips_only_what_this_torch_lacks():
    """An entry is left out only when torch.nn lacks the class; it is named with the release that has it."""
    for name, reason in ref.SKIPPED.items():
        assert not hasattr(nn, name) and name in ref.NEWER_LOSSES
        assert f"new in torch {ref.NEWER_LOSSES[name]}" in reason
    assert set(ATLAS) | set(ref.SKIPPED) >= set(ref.NEWER_LOSSES)
    assert not set(ATLAS) & set(ref.SKIPPED)


@pytest.mark.skipif(not hasattr(nn, "LinearCrossEntropyOptions"), reason="torch without LinearCrossEntropyLoss")
def test_linear_cross_entropy_default_is_plain_linear_then_cross_entropy():
    """options=None runs F.cross_entropy on the full logits (its graph ends in NLL); options= runs another path."""
    torch.manual_seed(0)
    x, y = torch.randn(8, 6, dtype=torch.float64, requires_grad=True), torch.randint(0, 5, (8,))
    plain = nn.LinearCrossEntropyLoss(6, 5, dtype=torch.float64)
    chunked = nn.LinearCrossEntropyLoss(6, 5, dtype=torch.float64,
                                        options=nn.LinearCrossEntropyOptions(batch_chunk_size=2))
    chunked.load_state_dict(plain.state_dict())
    out_plain, out_chunked = plain(x, y), chunked(x, y)
    assert type(out_plain.grad_fn).__name__.startswith("NllLossBackward")
    assert not type(out_chunked.grad_fn).__name__.startswith("NllLossBackward")
    torch.testing.assert_close(out_chunked, out_plain, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out_plain, F.cross_entropy(x @ plain.linear.weight.T, y), rtol=0, atol=0)


def test_bce_gradient_is_capped_where_the_log_is_not_clamped():
    """x = 1e-30 or 1e-14 (y = 1): the loss is the true -log x, but torch's gradient is about -1e12, not -1/x."""
    x = torch.tensor([1e-30, 1e-14], dtype=torch.float64, requires_grad=True)
    y = torch.ones(2, dtype=torch.float64)
    loss = F.binary_cross_entropy(x, y, reduction="none")
    torch.testing.assert_close(loss, -x.detach().log())
    (g_torch,) = torch.autograd.grad(loss.sum(), x)
    (g_formula,) = torch.autograd.grad(ref.binary_cross_entropy(x, y, reduction="sum"), x)
    torch.testing.assert_close(g_formula, -1 / x.detach())
    eps = float(torch.tensor(1e-12, dtype=torch.float32))
    torch.testing.assert_close(g_torch, (x.detach() - 1) / eps, rtol=1e-12, atol=0)
