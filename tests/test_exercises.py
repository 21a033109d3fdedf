"""helpers.exercises: every checker accepts a reference solution and rejects planted mistakes with their hint.

The planted mistakes are the popular ones the book discusses (divided by N instead of the weight sum,
probabilities where logits belong, forgot ``T**2``, ...). A checker that accepts one fails this file.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers.exercises import EXERCISES, MISTAKES, _MSEReference, check


def _lse(x):
    m = x.amax(-1, keepdim=True)
    return (m + (x - m).exp().sum(-1, keepdim=True).log()).squeeze(-1)


class _LogCosh(nn.Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        if reduction not in ("none", "mean", "sum"):
            raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
        self.reduction = reduction

    def forward(self, input, target):
        r = (input - target).abs()
        v = r + F.softplus(-2 * r) - math.log(2)
        return v.mean() if self.reduction == "mean" else v.sum() if self.reduction == "sum" else v


def _flip(x):
    coin = torch.rand(x.shape[0]) < 0.5
    return torch.where(coin[:, None, None, None], x.flip(-1), x)


def _tune(train, grid, val, test):
    best = max(grid, key=lambda k: val.score(train(k)))
    return best, test.score(train(best))


def _paired(a, b, level=0.95):
    from scipy import stats

    d = a - b
    half = stats.t.ppf(0.5 + level / 2, len(d) - 1) * d.std().item() / len(d) ** 0.5
    return d.mean().item(), d.mean().item() - half, d.mean().item() + half


def _focal(x, y, gamma):
    logp = x.log_softmax(-1).gather(1, y[:, None]).squeeze(1)
    log_one_minus_p = torch.log(-torch.expm1(logp).clamp(max=-1e-30))  # finite at p_t = 1
    return (-torch.exp(gamma * log_one_minus_p) * logp).mean()


def _wce(x, y, w, reduction):
    keep = y != -100
    yk = y.clamp(min=0)
    loss = (_lse(x) - x.gather(1, yk[:, None]).squeeze(1)) * w[yk] * keep
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.sum() / (w[yk] * keep).sum()


SOLUTIONS = {
    "ch1-mse-mean": 14.25 / 6,
    "ch1-ln-c": 2.302585,
    "ch1-cross-entropy": lambda x, y: (_lse(x) - x.gather(1, y[:, None]).squeeze(1)).mean(),
    "ch1-kl-div": lambda lq, p: (torch.xlogy(p, p) - p * lq).sum() / lq.shape[0],
    "ch2-mse-grad": [2 / 3, 2 / 3, -4 / 3],
    "ch2-ce-grad": lambda x, y: (x.softmax(-1) - F.one_hot(y, x.shape[1])) / x.shape[0],
    "ch2-logsumexp": _lse,
    "ch2-function": _MSEReference,
    "ch3-weighted-mean": 8.8 / 9,
    "ch3-ignored": 8.5 / 6,
    "ch3-weighted-ce": _wce,
    "ch3-lr-scale": lambda w, y: len(y) / w[y].sum(),
    "ch4-counts": lambda n, c, r: [int(n * r ** (-i / (c - 1))) for i in range(c)],
    "ch4-logit-adjusted": lambda x, y, n, t: F.cross_entropy(x + t * torch.log(n / n.sum()), y),
    "ch4-balanced-accuracy": lambda p, t, c: sum((p[t == k] == k).float().mean().item() for k in range(c)) / c,
    "ch4-paired-interval": _paired,
    "ch5-total": 12406,
    "ch5-ldam-margins": lambda n, m: m * n.double() ** -0.25 / n.double().min() ** -0.25,
    "ch5-class-balanced": lambda n, b: (lambda w: w * len(n) / w.sum())((1 - b) / (1 - b ** n.double())),
    "ch5-flip": _flip,
    "ch6-focal-value": 0.01 * -math.log(0.9),
    "ch6-label-smoothing": lambda x, y, e: (1 - e) * F.cross_entropy(x, y) - e * x.log_softmax(-1).mean(-1).mean(),
    "ch6-module": _LogCosh,
    "ch6-focal": _focal,
    "ch7-lr": 0.064,
    "ch7-l1": lambda m, lam: lam * sum(p.abs().sum() for n, p in m.named_parameters() if "weight" in n),
    "ch7-tune": _tune,
    "ch7-selection-bias": "higher",
    "ch8-accumulation": 1.5,
    "ch8-pos-weight": lambda p, n: (n / p)[:, None, None],
    "ch8-distillation": lambda s, t, T: T**2 * F.kl_div((s / T).log_softmax(-1), (t / T).softmax(-1),
                                                         reduction="batchmean"),
    "ch8-infonce": lambda a, b, t: F.cross_entropy(F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / t,
                                                   torch.arange(len(a))),
}


class _LogCoshAlwaysMean(_LogCosh):
    def forward(self, input, target):
        return _LogCosh("mean")(input, target)


class _LogCoshNaive(_LogCosh):
    def forward(self, input, target):
        v = torch.log(torch.cosh(input - target))
        return v.mean() if self.reduction == "mean" else v.sum() if self.reduction == "sum" else v


class _LogCoshNoCheck(_LogCosh):
    def __init__(self, reduction="mean"):
        nn.Module.__init__(self)
        self.reduction = reduction


class _LogCoshFloat32(_LogCosh):
    def forward(self, input, target):
        return super().forward(input.float(), target.float())


def _flip_height(x):
    coin = torch.rand(x.shape[0]) < 0.5
    return torch.where(coin[:, None, None, None], x.flip(-2), x)


def _flip_batch(x):
    return x.flip(-1) if torch.rand(()) < 2 else x


def _flip_every_other(x):  # deterministic: no coin at all
    return torch.where((torch.arange(x.shape[0]) % 2 == 0)[:, None, None, None], x.flip(-1), x)


def _flip_first_half(x):  # deterministic: the first half of the batch
    return torch.where((torch.arange(x.shape[0]) < x.shape[0] // 2)[:, None, None, None], x.flip(-1), x)


def _flip_by_position(x):  # random, but the first half of the batch w.p. 0.9 and the rest w.p. 0.1
    p = torch.where(torch.arange(x.shape[0]) < x.shape[0] // 2, 0.9, 0.1)
    return torch.where((torch.rand(x.shape[0]) < p)[:, None, None, None], x.flip(-1), x)


def _tune_on_test(train, grid, val, test):
    best = max(grid, key=lambda k: test.score(train(k)))
    return best, test.score(train(best))


def _tune_reads_test_each(train, grid, val, test):
    scores = {k: (val.score(train(k)), test.score(train(k))) for k in grid}
    best = max(grid, key=lambda k: scores[k][0])
    return best, scores[best][1]


def _tune_reports_val(train, grid, val, test):
    best = max(grid, key=lambda k: val.score(train(k)))
    test.score(train(best))
    return best, val.score(train(best))


def _torch_ce(x, y):
    return F.cross_entropy(x, y)


def _ce_commented(x, y):
    # the formula, not F.cross_entropy or log_softmax: the checker ignores names in comments
    return (_lse(x) - x.gather(1, y[:, None]).squeeze(1)).mean()


class _ApplyIsMSELoss:
    apply = staticmethod(F.mse_loss)


class _FunctionCallingMSELoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y):
        return ((x - y) ** 2).mean()

    @staticmethod
    def backward(ctx, grad):
        raise AssertionError("never called: the checker looks at grad_fn first")

    @staticmethod
    def apply(x, y):
        return F.mse_loss(x, y)


def _lse_shift_mean(x):
    c = x.mean(-1, keepdim=True)
    return (c + (x - c).exp().sum(-1, keepdim=True).log()).squeeze(-1)


def _wce_drops_row_0(x, y, w, reduction):
    keep = torch.ones_like(y, dtype=torch.bool)
    keep[0] = False  # the -100 targets elsewhere are read as class 0
    loss = F.cross_entropy(x, y.clamp(min=0), weight=w, reduction="none") * keep
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.sum() / (w[y.clamp(min=0)] * keep).sum()


def _naive_ce(x, y):
    return -(x.softmax(-1).log().gather(1, y[:, None])).mean()


def _naive_focal(x, y, gamma):
    p = x.softmax(-1).gather(1, y[:, None]).squeeze(1)
    return (-((1 - p) ** gamma) * p.log()).mean()


# Planted mistakes beyond helpers.exercises.MISTAKES (numbers computed by hand, classes, protocols):
# (exercise, wrong answer, a fragment the hint must contain).
PLANTED = [
    ("ch1-mse-mean", 14.25 / 2, "number of rows"),
    ("ch1-mse-mean", 14.25, "reduction='sum'"),
    ("ch1-mse-mean", 8.5 / 6, "forgot to square"),
    ("ch1-ln-c", 1.0, "log base 10"),
    ("ch1-ln-c", math.log2(10), "log base 2"),
    ("ch1-ln-c", 0.1, "probability of each class"),
    ("ch1-cross-entropy", _naive_ce, "log-sum-exp"),
    ("ch1-cross-entropy", _torch_ce, "use the formula, not torch's cross-entropy"),
    ("ch1-kl-div", lambda lq, p: (p * (p.log() - lq)).sum() / lq.shape[0], "0 * log 0"),
    ("ch2-logsumexp", _lse_shift_mean, "another value than the maximum"),
    ("ch2-function", _ApplyIsMSELoss, "autograd.Function subclass"),
    ("ch2-function", _FunctionCallingMSELoss, "not the class's own backward"),
    ("ch3-weighted-ce", _wce_drops_row_0, "dropped row 0"),
    ("ch2-mse-grad", [1 / 3, 1 / 3, -2 / 3], "factor 2"),
    ("ch2-mse-grad", [2.0, 2.0, -4.0], "divide by N"),
    ("ch2-mse-grad", [-2 / 3, -2 / 3, 4 / 3], "sign"),
    ("ch2-function", MISTAKES["ch2-function"][0][0], "grad_output"),
    ("ch2-function", MISTAKES["ch2-function"][1][0], "divide by the number of elements"),
    ("ch3-weighted-mean", 8.8 / 4, "divided by N"),
    ("ch3-weighted-mean", 3.6 / 4, "left out the weights"),
    ("ch3-weighted-mean", 8.8 / 6, "sum of the class weights"),
    ("ch3-ignored", 8.5 / 4, "divided by N"),
    ("ch3-ignored", 8.5 / 3, "3 kept positions"),
    ("ch3-ignored", 8.5 / 9, "ignored position's weight"),
    ("ch5-total", 20431, "imbalance 10"),
    ("ch5-total", 13409, "i / 9"),
    ("ch5-total", 12408, "rounded"),
    ("ch5-flip", _flip_height, "height"),
    ("ch5-flip", _flip_batch, "same decision"),
    ("ch5-flip", _flip_every_other, "same images on every call"),
    ("ch5-flip", _flip_first_half, "same images on every call"),
    ("ch5-flip", _flip_by_position, "far more or far less often"),
    ("ch6-focal-value", -math.log(0.9), "modulating factor"),
    ("ch6-focal-value", -0.01 * math.log10(0.9), "natural logarithm"),
    ("ch6-focal-value", -0.81 * math.log(0.9), "(1 - p_t)**gamma"),
    ("ch6-module", _LogCoshAlwaysMean, "always takes the mean"),
    ("ch6-module", _LogCoshNaive, "overflows"),
    ("ch6-module", _LogCoshNoCheck, "raise ValueError"),
    ("ch6-module", _LogCoshFloat32, "dtype should follow"),
    ("ch6-focal", _naive_focal, "not finite"),
    ("ch7-lr", 0.001 / 64, "64 times larger"),
    ("ch7-lr", 0.001, "divides the gradient by the batch size"),
    ("ch7-lr", 0.008, "not its square root"),
    ("ch7-tune", _tune_on_test, "on the test set"),
    ("ch7-tune", _tune_reads_test_each, "read it once"),
    ("ch7-tune", _tune_reports_val, "validation score"),
    ("ch7-selection-bias", "equal", "biased upwards"),
    ("ch7-selection-bias", "lower", "biased upwards"),
    ("ch8-accumulation", (2 + 4 + 0.5) / 3, "averaged the micro-batch means"),
    ("ch8-accumulation", 12 / 3, "number of micro-batches"),
    ("ch8-accumulation", 6.5, "added the micro-batch means"),
] + [(ex, fn, hint[:40]) for ex, mistakes in MISTAKES.items() if ex != "ch2-function" for fn, hint in mistakes]


def test_forbidden_names_are_read_from_code_not_comments():
    assert check("ch1-cross-entropy", _ce_commented, quiet=True).passed
    wrong = check("ch1-cross-entropy", lambda x, y: F.nll_loss(F.log_softmax(x, 1), y), quiet=True)
    assert wrong.status == "wrong" and "nll_loss, log_softmax" in wrong.message


def test_every_exercise_has_a_solution_and_two_planted_mistakes():
    assert set(SOLUTIONS) == set(EXERCISES)
    for ex in EXERCISES:
        assert sum(p[0] == ex for p in PLANTED) >= 2, ex


@pytest.mark.parametrize("exercise", sorted(EXERCISES))
def test_reference_solution_passes(exercise):
    result = check(exercise, SOLUTIONS[exercise], quiet=True)
    assert result.passed, result.message


@pytest.mark.parametrize("exercise, wrong, hint", PLANTED, ids=[f"{p[0]}-{i}" for i, p in enumerate(PLANTED)])
def test_planted_mistake_is_rejected_with_its_hint(exercise, wrong, hint):
    result = check(exercise, wrong, quiet=True)
    assert result.status == "wrong"
    assert hint.lower() in result.message.lower(), result.message


@pytest.mark.parametrize("exercise", sorted(EXERCISES))
def test_stub_is_not_attempted(exercise):
    def stub(*args, **kwargs):
        raise NotImplementedError

    class StubFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, y):
            raise NotImplementedError

    assert check(exercise, None, quiet=True).status == "not attempted yet"
    if exercise == "ch2-function":
        assert check(exercise, StubFunction, quiet=True).status == "not attempted yet"
    elif not isinstance(SOLUTIONS[exercise], (int, float, list, str)):
        assert check(exercise, stub, quiet=True).status == "not attempted yet"
        assert check(exercise, lambda *a, **k: None, quiet=True).status == "not attempted yet"


def test_unknown_exercise_and_printed_line(capsys):
    with pytest.raises(ValueError, match="exercise must be one of"):
        check("ch9-nothing", 1.0)
    check("ch1-ln-c", math.log(10))
    assert capsys.readouterr().out.startswith("ch1-ln-c: passed.")


def test_notebook_display_of_a_result_fits_the_page():
    # A check cell's value is shown under the printed verdict: one line of at most 88 characters.
    from IPython.lib.pretty import pretty

    for exercise in EXERCISES:
        shown = pretty(check(exercise, None, quiet=True))
        assert "\n" not in shown and len(shown) <= 88, shown
        assert shown.startswith(f"Result(exercise={exercise!r}")


def test_toy_long_tail_and_linear_training():
    from helpers.exercises import toy_long_tail, train_linear

    x, y, xe, ye = toy_long_tail([50, 10, 2], per_class_eval=7, seed=0)
    assert x.shape == (62, 8) and torch.bincount(y).tolist() == [50, 10, 2]
    assert torch.bincount(ye).tolist() == [7, 7, 7] and xe.shape == (21, 8)
    assert torch.equal(toy_long_tail([50, 10, 2], 7, seed=0)[0], x)
    model = train_linear(x, y, F.cross_entropy, seed=0, steps=50)
    assert (model(x).argmax(1) == y).float().mean() > 0.8
    with pytest.raises(ValueError, match="counts"):
        toy_long_tail([5], 3, seed=0)


def test_paired_reference_is_helpers_stats_interval():
    from helpers.exercises import _paired_ref
    from helpers.stats import paired_difference

    a, b = torch.tensor([0.71, 0.69, 0.75, 0.70]), torch.tensor([0.68, 0.69, 0.70, 0.66])
    mean, low, high = _paired_ref(a, b, 0.95)
    ref = paired_difference(a.numpy(), b.numpy(), level=0.95)
    assert math.isclose(mean, ref.mean, rel_tol=1e-6) and math.isclose(low, ref.low, rel_tol=1e-6)
    assert math.isclose(high, ref.high, rel_tol=1e-6)


def test_every_chapter_ends_with_its_exercises_and_hidden_checked_solutions():
    import json
    import re
    from pathlib import Path

    seen = []
    for path in sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("0[1-8]_*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        marked = [c.get("metadata", {}).get("lossbook", {}).get("exercise", False) for c in cells]
        first = marked.index(True)
        assert all(marked[first:]), f"{path.name}: the exercise cells are not the notebook's last cells"
        ids = []
        for cell in cells[first:]:
            src = "".join(cell["source"])
            if src.startswith("# @title Solution"):
                # hide-cell: the code and its output (which names the answer) stay hidden
                assert "hide-cell" in cell["metadata"].get("tags", []), path.name
                assert cell["metadata"].get("cellView") == "form", path.name
                ids += re.findall(r'^assert check\("([\w-]+)"', src, re.M)
        assert len(ids) >= 4 and all(i.startswith(f"ch{int(path.name[:2])}-") for i in ids), (path.name, ids)
        seen += ids
    assert sorted(seen) == sorted(EXERCISES)


def test_pos_weight_accepts_every_shape_that_weights_the_channels():
    """(1, C, 1, 1) gives the same BCEWithLogitsLoss on (N, C, H, W) as (C, 1, 1): both are right."""
    assert check("ch8-pos-weight", lambda p, n: (n / p).view(1, -1, 1, 1)).passed
    assert not check("ch8-pos-weight", lambda p, n: (n / p).view(1, 1, 1, -1)).passed


def _flip_coin(p):
    def flip(x):
        mirrored = torch.rand(x.shape[0]) < p
        return torch.where(mirrored[:, None, None, None], x.flip(-1), x)

    return flip


def test_flip_refuses_a_biased_coin_and_a_call_counter():
    """Planted mistakes: a coin of p = 0.35 (or 0.7), and halves that alternate with a call counter."""
    for p in (0.35, 0.4, 0.7):
        result = check("ch5-flip", _flip_coin(p), quiet=True)
        assert not result.passed and "fair coin" in result.message, (p, result.message)
    calls = iter(range(10**6))

    def alternating(x):
        k = next(calls)
        mirrored = (torch.arange(x.shape[0]) + k) % 2 == 0
        return torch.where(mirrored[:, None, None, None], x.flip(-1), x)

    result = check("ch5-flip", alternating, quiet=True)
    assert not result.passed and "two consecutive calls" in result.message, result.message
    assert check("ch5-flip", _flip_coin(0.5), quiet=True).passed
