r"""Checkers for the exercises at the end of each chapter.

A reader answers an exercise with a number, a function or a class, and calls::

    from helpers.exercises import check
    check("ch3-weighted-mean", my_answer)

:func:`check` runs the exercise's checker on the answer and returns a :class:`Result`; it also prints
one line: ``passed``, ``not attempted yet`` (the answer is ``None``, a function returns ``None`` or
raises ``NotImplementedError``), or ``wrong`` with one sentence naming the likely mistake.

A checker compares the answer with a reference on fresh random inputs (new ones at every call), on
several shapes and on edge cases (large logits, ignored targets, an invalid ``reduction``). When the
answer is wrong it is compared with the popular mistakes the book discusses (dividing by ``N`` instead
of the weight sum, passing probabilities where logits belong, forgetting ``T**2``, ...), each a small
function here, and the hint names the mistake the answer agrees with. ``MISTAKES`` lists them per
exercise; tests/test_exercises.py plants each one and checks that it is rejected with its hint.

:func:`toy_long_tail` and :func:`train_linear` give the experiments of chapters 4 and 7 a long-tailed
problem that trains in well under a second, so that the exercises add little to the build.

Inputs are float64 unless an exercise tests the dtype, so that a correct answer never fails on
rounding; answers computed by hand are accepted within 0.1 % (or 5e-4 absolute).
"""

from __future__ import annotations

import decimal
import inspect
import io
import math
import os
import textwrap
import tokenize
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from scipy import stats as _scipy_stats

__all__ = ["Result", "check", "EXERCISES", "MISTAKES", "toy_long_tail", "train_linear"]

PASSED, FAILED, NOT_ATTEMPTED = "passed", "wrong", "not attempted yet"


@dataclass(frozen=True)
class Result:
    """What a checker found: ``status`` is ``'passed'``, ``'wrong'`` or ``'not attempted yet'``."""

    exercise: str
    status: str
    message: str

    @property
    def passed(self) -> bool:
        """True when the answer passed every test of the checker."""
        return self.status == PASSED

    def __str__(self) -> str:
        return textwrap.fill(f"{self.exercise}: {self.status}. {self.message}", width=88, break_on_hyphens=False)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython's display: one short line (``check`` printed the message above it, wrapped to 88)."""
        printer.text(f"Result(exercise={self.exercise!r}, status={self.status!r})")


class _Wrong(Exception):
    """Raised inside a checker with the one-sentence hint."""


class _NotAttempted(Exception):
    """Raised inside a checker when the answer is still the stub."""


def _gen() -> torch.Generator:
    """A generator with a fresh seed, so every check sees new inputs."""
    return torch.Generator().manual_seed(int.from_bytes(os.urandom(4), "little"))


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call the reader's function; ``None`` means the stub was not filled in."""
    if fn is None:
        raise _NotAttempted
    if not callable(fn):
        raise _Wrong(f"this exercise expects a function or class, got a {type(fn).__name__}.")
    out = fn(*args, **kwargs)
    if out is None:
        raise _NotAttempted
    return out


def _close(a: Any, b: Any, rtol: float = 1e-5, atol: float = 1e-7) -> bool:
    """Same shape and values (NaN never equal); ``False`` instead of an error on odd inputs."""
    try:
        ta = torch.as_tensor(a, dtype=torch.float64)
        tb = torch.as_tensor(b, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return False
    return ta.shape == tb.shape and bool(torch.allclose(ta, tb, rtol=rtol, atol=atol))


def _diagnose(got: Any, args: tuple, mistakes: Sequence[tuple[Callable, str]], generic: str) -> None:
    """Raise with the hint of the first mistake that gives ``got`` on ``args``, else ``generic``."""
    for mistake, hint in mistakes:
        try:
            if _close(mistake(*args), got, rtol=1e-4, atol=1e-6):
                raise _Wrong(hint)
        except _Wrong:
            raise
        except Exception:  # noqa: BLE001 - a mistake that cannot run on these inputs does not apply
            continue
    t = torch.as_tensor(got, dtype=torch.float64) if isinstance(got, (torch.Tensor, float, int)) else None
    if t is not None and not torch.isfinite(t).all():
        raise _Wrong("the answer is not finite on these inputs: compute in log space (log-sum-exp) "
                     "instead of taking the log of a probability.")
    raise _Wrong(generic)


def _compare(answer: Callable, reference: Callable, cases: Sequence[tuple], mistakes, generic: str,
             rtol: float = 1e-5, atol: float = 1e-7) -> None:
    """Call ``answer`` and ``reference`` on each case; diagnose the first disagreement."""
    for args in cases:
        got = _call(answer, *args)
        if isinstance(got, torch.Tensor):
            got = got.detach()
        if not _close(got, reference(*args), rtol, atol):
            _diagnose(got, args, mistakes, generic)


def _number(answer: Any, expected: float, mistakes: Sequence[tuple[float, str]], generic: str,
            exact: bool = False) -> str:
    """Check a number computed by hand (``exact``: an integer); mistakes are the values the errors give."""
    if answer is None:
        raise _NotAttempted
    try:
        value = float(answer)
    except (TypeError, ValueError):
        raise _Wrong(f"the answer should be a single number, got {type(answer).__name__}.") from None

    def near(x: float) -> bool:
        if exact:
            return abs(value - x) < 0.5
        return math.isclose(value, x, rel_tol=1e-3, abs_tol=5e-4)

    if near(expected):
        return f"{expected:.6g} is right."
    for wrong, hint in mistakes:
        if near(wrong):
            raise _Wrong(hint)
    raise _Wrong(generic)


def _choice(answer: Any, expected: str, hints: dict[str, str], options: Sequence[str]) -> str:
    """Check a predicted option (a string among ``options``)."""
    if answer is None:
        raise _NotAttempted
    key = str(answer).strip().lower()
    if key not in options:
        raise _Wrong(f"answer with one of {', '.join(repr(o) for o in options)}.")
    if key != expected:
        raise _Wrong(hints[key])
    return f"{expected!r} is right."


# ----------------------------------------------------------------------------------------------
# Chapter 1: loss fundamentals
# ----------------------------------------------------------------------------------------------

CH1_PRED = torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]])
CH1_TARGET = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])


def _ch1_mse_mean(answer: Any) -> str:
    sq = (CH1_PRED - CH1_TARGET) ** 2
    return _number(answer, sq.mean().item(), [
        (sq.sum().item() / 2, "you divided by the number of rows (2); 'mean' divides by every element (6)."),
        (sq.sum().item(), "that is reduction='sum'; 'mean' divides the sum by the 6 elements."),
        ((CH1_PRED - CH1_TARGET).abs().mean().item(), "you forgot to square the residuals (that is L1)."),
    ], "square each residual, add the six squares and divide by 6.")


def _ch1_ln_c(answer: Any) -> str:
    return _number(answer, math.log(10), [
        (1.0, "that is log base 10; cross-entropy uses the natural logarithm, ln 10."),
        (math.log2(10), "that is log base 2 (bits); torch uses the natural logarithm (nats)."),
        (0.1, "0.1 is the probability of each class; the loss is minus its log."),
    ], "with equal logits every class has probability 1/10, and the loss is -ln(1/10).")


def _ce_ref(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, target)


MISTAKES_CH1_CE = [
    (lambda x, y: F.cross_entropy(x.softmax(-1), y),
     "you applied softmax before cross-entropy: it takes logits, and applies log_softmax itself."),
    (lambda x, y: F.cross_entropy(x, y, reduction="sum"),
     "you summed over the batch; the default reduction='mean' divides by N."),
    (lambda x, y: -x.gather(1, y[:, None]).mean(),
     "you forgot the log-sum-exp term: the loss is logsumexp(x) - x[y], not -x[y]."),
]


CH1_CE_FORBIDDEN = ("cross_entropy", "CrossEntropyLoss", "nll_loss", "NLLLoss", "log_softmax", "LogSoftmax")


def _forbidden_names(answer: Any, names: Sequence[str]) -> list[str]:
    """The ``names`` that occur in the source of ``answer`` (none when its source cannot be read)."""
    try:
        source = textwrap.dedent(inspect.getsource(answer))
    except (OSError, TypeError):
        return []
    tokens = set()
    try:  # the source of a lambda is its whole line, which may not be complete Python
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.NAME:
                tokens.add(token.string)
    except (SyntaxError, tokenize.TokenError):
        pass
    return [name for name in names if name in tokens]  # names in code, not in comments or strings


def _ch1_cross_entropy(answer: Callable) -> str:
    g = _gen()
    cases = []
    for n, c, scale in ((8, 5, 1.0), (1, 3, 1.0), (16, 10, 3.0)):
        cases.append((torch.randn(n, c, generator=g, dtype=torch.float64) * scale,
                      torch.randint(0, c, (n,), generator=g)))
    big = torch.randn(4, 4, generator=g, dtype=torch.float64) * 1000
    cases.append((big, big.argmin(1)))  # the target's probability underflows to 0 in exp
    _compare(answer, _ce_ref, cases, MISTAKES_CH1_CE,
             "the value differs from F.cross_entropy: mean over the batch of logsumexp(x) - x[target].")
    used = _forbidden_names(answer, CH1_CE_FORBIDDEN)
    if used:
        raise _Wrong(f"use the formula, not torch's cross-entropy: the answer calls {', '.join(used)}.")
    return "equal to F.cross_entropy on four random batches, logits of size 1000 included."


def _kl_ref(log_q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return F.kl_div(log_q, p, reduction="batchmean")


_KL_ZERO_HINT = ("the target has zeros and p * log(p) is nan there (0 * log 0 = 0 * -inf): use "
                 "torch.xlogy(p, p), which is 0 where p = 0, as F.kl_div does.")

MISTAKES_CH1_KL = [
    (lambda lq, p: (lq.exp() * (lq - p.log())).sum() / lq.shape[0],
     "the arguments are swapped: F.kl_div(input, target) is KL(target || input), the target first."),
    (lambda lq, p: (p * (p.log() - lq)).mean(),
     "you divided by every element (reduction='mean'); KL per sample divides by the batch size only."),
    (lambda lq, p: (p * (p.log() - lq)).sum(),
     "you summed over the batch; divide by the batch size (reduction='batchmean')."),
    (lambda lq, p: (p * p.log() - p * lq).sum() / lq.shape[0], _KL_ZERO_HINT),
]


def _ch1_kl(answer: Callable) -> str:
    g = _gen()
    cases = [(torch.randn(n, c, generator=g, dtype=torch.float64).log_softmax(-1),
              torch.randn(n, c, generator=g, dtype=torch.float64).softmax(-1)) for n, c in ((5, 4), (2, 7))]
    generic = "compute sum p * (log p - log q) over classes, then divide by the batch size."
    _compare(answer, _kl_ref, cases, MISTAKES_CH1_KL, generic)
    # targets with zeros: a one-hot batch, and a batch with one class of probability 0 in each row
    one_hot = F.one_hot(torch.randint(0, 5, (4,), generator=g), 5).to(torch.float64)
    sparse = torch.randn(3, 6, generator=g, dtype=torch.float64).softmax(-1)
    sparse = sparse.scatter(1, torch.randint(0, 6, (3, 1), generator=g), 0.0)
    for p in (one_hot, sparse / sparse.sum(-1, keepdim=True)):
        log_q = torch.randn(p.shape, generator=g, dtype=torch.float64).log_softmax(-1)
        got = _call(answer, log_q, p)
        if isinstance(got, torch.Tensor) and not torch.isfinite(got.detach()).all():
            raise _Wrong(_KL_ZERO_HINT)
        _compare(answer, _kl_ref, [(log_q, p)], MISTAKES_CH1_KL, generic)
    return "equal to F.kl_div(log_q, p, reduction='batchmean') on random distributions, one-hot ones included."


# ----------------------------------------------------------------------------------------------
# Chapter 2: the backward pass
# ----------------------------------------------------------------------------------------------

CH2_X = torch.tensor([1.0, 2.0, 3.0])
CH2_Y = torch.tensor([0.0, 1.0, 5.0])


def _ch2_mse_grad(answer: Any) -> str:
    if answer is None:
        raise _NotAttempted
    got = torch.as_tensor(answer, dtype=torch.float64)
    ref = 2 * (CH2_X - CH2_Y) / 3
    if _close(got, ref, rtol=1e-3, atol=5e-4):
        return f"{[round(v, 4) for v in ref.tolist()]} is right."
    for wrong, hint in (((CH2_X - CH2_Y) / 3, "you forgot the factor 2 from the derivative of the square."),
                        (2 * (CH2_X - CH2_Y), "you forgot to divide by N = 3, which reduction='mean' does."),
                        (2 * (CH2_Y - CH2_X) / 3, "the sign is reversed: the gradient with respect to x is "
                                                  "2 (x - y) / N.")):
        if _close(got, wrong, rtol=1e-3, atol=5e-4):
            raise _Wrong(hint)
    raise _Wrong("the gradient of mean((x - y)**2) with respect to x is 2 (x - y) / N, three numbers.")


def _ce_grad_ref(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x.softmax(-1) - F.one_hot(y, x.shape[-1]).to(x.dtype)) / x.shape[0]


MISTAKES_CH2_CE = [
    (lambda x, y: x.softmax(-1) - F.one_hot(y, x.shape[-1]).to(x.dtype),
     "you forgot to divide by the batch size N (reduction='mean')."),
    (lambda x, y: (F.one_hot(y, x.shape[-1]).to(x.dtype) - x.softmax(-1)) / x.shape[0],
     "the sign is reversed: the gradient is softmax(x) - onehot(y), the direction that increases the loss."),
    (lambda x, y: (x.softmax(-1) - 1) * F.one_hot(y, x.shape[-1]).to(x.dtype) / x.shape[0],
     "you kept only the target's column; every logit gets softmax(x)_j, and the target column minus 1."),
]


def _ch2_ce_grad(answer: Callable) -> str:
    g = _gen()
    cases = [(torch.randn(n, c, generator=g, dtype=torch.float64) * 2, torch.randint(0, c, (n,), generator=g))
             for n, c in ((6, 4), (1, 3), (10, 10))]
    _compare(answer, _ce_grad_ref, cases, MISTAKES_CH2_CE,
             "the gradient of mean cross-entropy with respect to the logits is (softmax(x) - onehot(y)) / N.")
    return "equal to autograd's gradient of F.cross_entropy on three random batches."


def _lse_shift_first(x: torch.Tensor) -> torch.Tensor:
    c = x[..., :1]
    return (c + (x - c).exp().sum(-1, keepdim=True).log()).squeeze(-1)


MISTAKES_CH2_LSE = [
    (_lse_shift_first,
     "you shifted by another value than the maximum (the first element, the mean, ...): exp(x - c) "
     "overflows when x - c is large; only c = max(x) keeps every exponent <= 0."),
    (lambda x: x.exp().sum(-1).log(),
     "exp overflows for large inputs: subtract the maximum before exp and add it back after the log."),
    (lambda x: (x - x.amax(-1, keepdim=True)).exp().sum(-1).log(),
     "you subtracted the maximum but did not add it back after the log."),
    (lambda x: x.exp().sum().log() + 0 * x[..., 0],
     "you reduced over every element; log-sum-exp runs along the last dimension only."),
]


def _ch2_logsumexp(answer: Callable) -> str:
    g = _gen()
    cases = [(torch.randn(4, 5, generator=g, dtype=torch.float64),),
             (torch.randn(3, 6, generator=g, dtype=torch.float64) * 50 + 1000,),
             (torch.randn(2, 3, generator=g, dtype=torch.float64) - 1000,),
             # float32, a wide spread in each row: a shift by the first element or the mean overflows
             (torch.tensor([[-1000.0, 1000.0], [0.0, 200.0]])[torch.randperm(2, generator=g)],)]
    _compare(answer, lambda x: torch.logsumexp(x, -1), cases, MISTAKES_CH2_LSE,
             "log-sum-exp along the last dimension is m + log(sum(exp(x - m))) with m the maximum.")
    return "equal to torch.logsumexp, at inputs near +1000 and -1000 and on float32 rows spread over 2000."


class _MSEReference(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y):  # noqa: D102
        ctx.save_for_backward(x, y)
        return ((x - y) ** 2).mean()

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        x, y = ctx.saved_tensors
        return grad * 2 * (x - y) / x.numel(), None


def _mse_variant(backward_fn: Callable) -> type:
    class _Variant(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, y):
            ctx.save_for_backward(x, y)
            return ((x - y) ** 2).mean()

        @staticmethod
        def backward(ctx, grad):
            x, y = ctx.saved_tensors
            return backward_fn(grad, x, y), None

    return _Variant


MISTAKES_CH2_FUNCTION = [
    (_mse_variant(lambda grad, x, y: 2 * (x - y) / x.numel()),
     "backward must multiply by grad_output: the incoming gradient of what the loss feeds into."),
    (_mse_variant(lambda grad, x, y: grad * 2 * (x - y)),
     "backward forgot to divide by the number of elements that the forward's mean divides by."),
]


def _ch2_function(answer: Any) -> str:
    if answer is None:
        raise _NotAttempted
    if not (isinstance(answer, type) and issubclass(answer, torch.autograd.Function)):
        raise _Wrong("answer with a torch.autograd.Function subclass itself (the class, with its own "
                     "forward and backward), not another object with an .apply.")
    g = _gen()
    for shape, scale in (((5,), 1.0), ((3, 4), 3.0)):
        x = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
        y = torch.randn(shape, generator=g, dtype=torch.float64)
        out = _call(answer.apply, x, y)
        if answer.__name__ not in type(getattr(out, "grad_fn", None)).__name__:
            raise _Wrong("the output's grad_fn is not the class's own backward: forward must compute the "
                         "loss itself and backward must return its gradient.")
        if not _close(out.detach(), ((x - y) ** 2).mean().detach()):
            raise _Wrong("the forward differs from ((x - y)**2).mean().")
        (got,) = torch.autograd.grad(out * scale, x)
        (ref,) = torch.autograd.grad(_MSEReference.apply(x, y) * scale, x)
        if not _close(got, ref):
            for variant, hint in MISTAKES_CH2_FUNCTION:
                (wrong,) = torch.autograd.grad(variant.apply(x, y) * scale, x)
                if _close(got, wrong, rtol=1e-4, atol=1e-6):
                    raise _Wrong(hint)
            raise _Wrong("the backward differs from grad_output * 2 (x - y) / N.")
    return "forward and backward equal to autograd's, with an incoming gradient other than 1."


# ----------------------------------------------------------------------------------------------
# Chapter 3: weighted cross-entropy
# ----------------------------------------------------------------------------------------------

CH3_LOSSES = torch.tensor([0.5, 1.0, 2.0, 0.1])
CH3_TARGET = torch.tensor([0, 1, 2, 2])
CH3_WEIGHT = torch.tensor([1.0, 2.0, 3.0])


def _ch3_weighted_mean(answer: Any) -> str:
    w = CH3_WEIGHT[CH3_TARGET]
    num = (w * CH3_LOSSES).sum().item()
    return _number(answer, num / w.sum().item(), [
        (num / 4, "you divided by N = 4; 'mean' with weights divides by the sum of the targets' weights."),
        (CH3_LOSSES.mean().item(), "you left out the weights: each loss is multiplied by its target's weight."),
        (num / CH3_WEIGHT.sum().item(), "you divided by the sum of the class weights (6); divide by the sum "
                                        "of the weights of the four targets."),
    ], "multiply each loss by the weight of its target class, add, and divide by the sum of those weights.")


def _ch3_ignored(answer: Any) -> str:
    w = CH3_WEIGHT[CH3_TARGET[:3]]
    num = (w * CH3_LOSSES[:3]).sum().item()
    return _number(answer, num / w.sum().item(), [
        (num / 4, "you divided by N = 4; the ignored position adds nothing to the sum nor to the denominator."),
        (num / 3, "you divided by the 3 kept positions; with weights the denominator is their weight sum."),
        (num / (w.sum().item() + 3.0), "the ignored position's weight is still in your denominator; "
                                       "it leaves both sums."),
    ], "drop the ignored position from both sums, then divide the weighted sum by the kept weights' sum.")


def _wce_ref(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, reduction: str) -> torch.Tensor:
    return F.cross_entropy(x, y, weight=w, reduction=reduction, ignore_index=-100)


def _wce_mean_by_n(x, y, w, reduction):
    out = F.cross_entropy(x, y, weight=w, reduction="sum", ignore_index=-100)
    return out / y.numel() if reduction == "mean" else _wce_ref(x, y, w, reduction)


def _wce_unweighted_none(x, y, w, reduction):
    if reduction == "none":
        return F.cross_entropy(x, y, reduction="none", ignore_index=-100)
    return _wce_ref(x, y, w, reduction)


def _wce_mean_by_kept(x, y, w, reduction):
    if reduction == "mean":
        return F.cross_entropy(x, y, weight=w, reduction="sum", ignore_index=-100) / (y != -100).sum()
    return _wce_ref(x, y, w, reduction)


def _wce_drops_first(x, y, w, reduction):
    """The ignored position taken to be row 0, wherever the -100 targets are."""
    yk = y.clamp(min=0).index_fill(0, torch.tensor([0]), -100)
    return F.cross_entropy(x, yk, weight=w, reduction=reduction, ignore_index=-100)


MISTAKES_CH3_WCE = [
    (_wce_drops_first, "you dropped row 0 instead of the rows whose target is ignore_index (-100), "
                       "which may be anywhere, or nowhere."),
    (_wce_mean_by_n, "'mean' divided by N instead of the sum of the kept targets' weights."),
    (_wce_mean_by_kept, "'mean' divided by the number of kept positions instead of their weight sum."),
    (_wce_unweighted_none, "reduction='none' returns each loss multiplied by its target's weight."),
]


def _ch3_weighted_ce(answer: Callable) -> str:
    g = _gen()
    cases = []
    for n, c, ignored in ((8, 4, 2), (5, 3, 0), (12, 6, 1)):
        x = torch.randn(n, c, generator=g, dtype=torch.float64)
        y = torch.randint(0, c, (n,), generator=g)
        y[torch.randperm(n, generator=g)[:ignored]] = -100  # anywhere, two, none or one
        w = torch.rand(c, generator=g, dtype=torch.float64) * 3 + 0.1
        cases += [(x, y, w, r) for r in ("mean", "sum", "none")]
    _compare(answer, _wce_ref, cases, MISTAKES_CH3_WCE,
             "the value differs from F.cross_entropy(weight=..., reduction=...) with an ignored target.")
    return "equal to F.cross_entropy for 'mean', 'sum' and 'none', with ignored targets."


def _scale_ref(weight: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return target.numel() / weight[target].sum()


MISTAKES_CH3_SCALE = [
    (lambda w, y: w[y].sum() / y.numel(), "that is the inverse: 'mean' divides by the weight sum, "
                                          "so the factor is B / sum(w[y]), the inverse of the mean weight."),
    (lambda w, y: w.numel() / w.sum(), "you used the mean of the class weights; the factor depends on "
                                       "the batch's targets: B / sum(w[y])."),
]


def _ch3_scale(answer: Callable) -> str:
    g = _gen()
    cases = []
    for b, c in ((16, 3), (7, 5), (32, 10)):
        w = torch.rand(c, generator=g, dtype=torch.float64) * 4 + 0.2
        cases.append((w, torch.randint(0, c, (b,), generator=g)))
    _compare(answer, _scale_ref, cases, MISTAKES_CH3_SCALE,
             "compare the gradients of the two reductions: 'mean' = sum / sum(w[y]), the other sum / B.")
    return "the factor B / sum(w[y]) is right for three random batches."


# ----------------------------------------------------------------------------------------------
# Chapter 4: imbalanced MNIST
# ----------------------------------------------------------------------------------------------


def _counts_ref(n_max: int, num_classes: int, rho: float) -> list[int]:
    return [int(n_max * rho ** (-i / (num_classes - 1))) for i in range(num_classes)]


MISTAKES_CH4_COUNTS = [
    (lambda n, c, r: [int(n * r ** (-i / c)) for i in range(c)],
     "the exponent is i / (C - 1), not i / C: the last class must have n_max / rho examples."),
    (lambda n, c, r: [int(n - (n - n / r) * i / (c - 1)) for i in range(c)],
     "you made the counts fall linearly; the profile is exponential, n_max * rho**(-i / (C - 1))."),
    (lambda n, c, r: [round(n * r ** (-i / (c - 1))) for i in range(c)],
     "you rounded; the book (and Cao et al.) truncate with int()."),
]


def _counts_allowed(n_max: int, num_classes: int, rho: float) -> list[set[int]]:
    """Each class's accepted count: the floor of the exact value (50 digits), or either integer next to
    a value within 1e-9 (relative) of an integer, where float rounding decides the floor (an equal
    formula through exp/log gives 49 where ``rho ** (-i / (C - 1))`` gives 50). Class 0 has exactly
    ``n_max``."""
    with decimal.localcontext() as ctx:
        ctx.prec = 50
        allowed = []
        for i in range(num_classes):
            exponent = decimal.Decimal(-i) / decimal.Decimal(num_classes - 1)
            value = decimal.Decimal(n_max) * decimal.Decimal(repr(float(rho))) ** exponent
            nearest = value.to_integral_value()
            near = abs(value - nearest) <= decimal.Decimal("1e-9") * max(1, nearest)
            if i == 0:  # rho ** 0 == 1 in every formula: the head class has exactly n_max
                allowed.append({n_max})
            else:
                allowed.append({int(nearest) - 1, int(nearest)} if near else {int(value)})
    return allowed


def _ch4_counts(answer: Callable) -> str:
    cases = [(5000, 10, 100.0), (4000, 10, 10.0), (500, 7, 50.0), (100, 2, 4.0), (2000, 10, 100.0)]
    generic = "class i should have int(n_max * rho ** (-i / (C - 1))) examples."
    for args in cases:
        got, allowed = _call(answer, *args), _counts_allowed(*args)
        try:
            ok = len(got) == len(allowed) and all(
                int(v) == v and int(v) in a for v, a in zip(got, allowed, strict=True))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            _compare(answer, _counts_ref, [args], MISTAKES_CH4_COUNTS, generic, rtol=0, atol=0)
            raise _Wrong(generic)
    return "the counts agree with the book's exponential profile (CIFAR-10-LT's included)."


def _la_ref(logits: torch.Tensor, target: torch.Tensor, counts: torch.Tensor, tau: float) -> torch.Tensor:
    prior = counts / counts.sum()
    return F.cross_entropy(logits + tau * prior.log(), target)


MISTAKES_CH4_LA = [
    (lambda x, y, n, t: F.cross_entropy(x - t * (n / n.sum()).log(), y),
     "the sign is reversed: the training loss adds tau * log(prior) to the logits."),
    (lambda x, y, n, t: F.cross_entropy(x + t * n / n.sum(), y),
     "you added the prior itself; add its logarithm, tau * log(prior)."),
    (lambda x, y, n, t: F.cross_entropy(x + (n / n.sum()).log(), y),
     "you left out tau: the adjustment is tau * log(prior)."),
]


def _ch4_logit_adjusted(answer: Callable) -> str:
    g = _gen()
    cases = []
    for n, c, tau in ((8, 4, 1.0), (6, 10, 0.5), (3, 3, 2.0)):
        counts = torch.randint(5, 500, (c,), generator=g).to(torch.float64)
        cases.append((torch.randn(n, c, generator=g, dtype=torch.float64), torch.randint(0, c, (n,), generator=g),
                      counts, tau))
    _compare(answer, _la_ref, cases, MISTAKES_CH4_LA,
             "the loss is F.cross_entropy(logits + tau * log(counts / counts.sum()), target).")
    return "equal to the logit-adjusted loss of Menon et al. for three values of tau."


def _bacc_ref(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> float:
    recalls = [(pred[target == c] == c).double().mean() for c in range(num_classes)]
    return torch.stack(recalls).mean().item()


def _precision_mean(pred, target, num_classes):
    return torch.stack([(target[pred == c] == c).double().mean() if (pred == c).any()
                        else torch.tensor(0.0, dtype=torch.float64) for c in range(num_classes)]).mean().item()


MISTAKES_CH4_BACC = [
    (lambda p, t, c: (p == t).double().mean().item(),
     "that is plain accuracy; balanced accuracy is the mean over classes of each class's recall."),
    (_precision_mean, "you averaged per-class precision (grouped by predicted class); "
                      "recall groups by the true class."),
]


def _ch4_balanced_accuracy(answer: Callable) -> str:
    g = _gen()
    cases = []
    for n, c in ((200, 5), (60, 3), (500, 10)):
        target = torch.cat([torch.arange(c), torch.randint(0, c, (n - c,), generator=g) ** 2 % c])
        pred = torch.where(torch.rand(n, generator=g) < 0.6, target, torch.randint(0, c, (n,), generator=g))
        cases.append((pred, target, c))
    _compare(answer, _bacc_ref, cases, MISTAKES_CH4_BACC,
             "average, over the classes, the fraction of each class's examples predicted correctly.")
    return "equal to the mean per-class recall on three imbalanced random label sets."


def _paired_ref(a: torch.Tensor, b: torch.Tensor, level: float) -> tuple[float, float, float]:
    d = (a - b).double()
    n = d.numel()
    half = _scipy_stats.t.ppf(0.5 + level / 2, n - 1) * d.std().item() / math.sqrt(n)
    return d.mean().item(), d.mean().item() - half, d.mean().item() + half


def _paired_z(a, b, level):
    d = (a - b).double()
    half = _scipy_stats.norm.ppf(0.5 + level / 2) * d.std().item() / math.sqrt(d.numel())
    return d.mean().item(), d.mean().item() - half, d.mean().item() + half


def _unpaired(a, b, level):
    n = a.numel()
    se = math.sqrt((a.double().var().item() + b.double().var().item()) / n)
    half = _scipy_stats.t.ppf(0.5 + level / 2, n - 1) * se
    m = (a - b).double().mean().item()
    return m, m - half, m + half


def _paired_sd(a, b, level):
    d = (a - b).double()
    half = _scipy_stats.t.ppf(0.5 + level / 2, d.numel() - 1) * d.std().item()
    return d.mean().item(), d.mean().item() - half, d.mean().item() + half


MISTAKES_CH4_PAIRED = [
    (_paired_z, "you used the normal quantile (1.96); with n pairs use Student's t with n - 1 "
                "degrees of freedom."),
    (_unpaired, "you treated the runs as unpaired; the interval comes from the differences a[i] - b[i]."),
    (_paired_sd, "the half-width uses the standard deviation; divide it by sqrt(n) (the standard error)."),
]


def _ch4_paired(answer: Callable) -> str:
    g = _gen()
    cases = []
    for n, level in ((5, 0.95), (3, 0.9), (10, 0.95)):
        shared = torch.rand(n, generator=g, dtype=torch.float64)
        a = shared + 0.02 * torch.randn(n, generator=g, dtype=torch.float64)
        b = shared + 0.05 * torch.randn(n, generator=g, dtype=torch.float64)
        cases.append((a, b, level))
    _compare(answer, _paired_ref, cases, MISTAKES_CH4_PAIRED,
             "return (mean, low, high) of a - b with a Student-t interval on n - 1 degrees of freedom.")
    return "equal to helpers.stats.paired_difference's interval on three random sets of pairs."


# ----------------------------------------------------------------------------------------------
# Chapter 5: imbalanced CIFAR-10
# ----------------------------------------------------------------------------------------------


def _ch5_total(answer: Any) -> str:
    return _number(answer, sum(_counts_ref(5000, 10, 100.0)), [
        (sum(_counts_ref(5000, 10, 10.0)), "that is imbalance 10; the exercise asks for imbalance 100."),
        (sum(MISTAKES_CH4_COUNTS[0][0](5000, 10, 100.0)), "the exponent is i / 9 (C - 1), not i / 10."),
        (sum(MISTAKES_CH4_COUNTS[2][0](5000, 10, 100.0)), "you rounded; the profile truncates with int()."),
    ], "add int(5000 * 100 ** (-i / 9)) over the ten classes i = 0..9.", exact=True)


def _ldam_ref(counts: torch.Tensor, max_margin: float) -> torch.Tensor:
    m = counts.double() ** -0.25
    return m * max_margin / m.max()


MISTAKES_CH5_LDAM = [
    (lambda n, mm: n.double() ** -0.5 * mm / (n.double() ** -0.5).max(),
     "the margin goes as n**(-1/4), not n**(-1/2)."),
    (lambda n, mm: n.double() ** -0.25, "you did not rescale: the rarest class's margin must be max_margin."),
    (lambda n, mm: n.double() ** -0.25 * mm / (n.double() ** -0.25).min(),
     "you scaled the most frequent class to max_margin; the rarest class gets the largest margin."),
]


def _ch5_ldam(answer: Callable) -> str:
    g = _gen()
    cases = [(torch.randint(1, 5000, (c,), generator=g), mm) for c, mm in ((10, 0.5), (4, 1.0), (100, 0.3))]
    _compare(answer, _ldam_ref, cases, MISTAKES_CH5_LDAM,
             "margins are max_margin * n**(-1/4) / max_k n_k**(-1/4).")
    return "equal to Cao et al.'s margins on three random count vectors."


def _cb_ref(counts: torch.Tensor, beta: float) -> torch.Tensor:
    w = (1 - beta) / (1 - beta ** counts.double())
    return w * counts.numel() / w.sum()


MISTAKES_CH5_CB = [
    (lambda n, b: (1 - b) / (1 - b ** n.double()), "you did not normalise: scale the weights to sum to C."),
    (lambda n, b: (1 / n.double()) * n.numel() / (1 / n.double()).sum(),
     "that is inverse frequency (beta -> 1); use the effective number (1 - beta**n) / (1 - beta)."),
    (lambda n, b: (1 - b ** n.double()) / (1 - b) * n.numel() / ((1 - b ** n.double()) / (1 - b)).sum(),
     "you used the effective number itself; the weight is its inverse."),
]


def _ch5_class_balanced(answer: Callable) -> str:
    g = _gen()
    cases = [(torch.randint(1, 5000, (c,), generator=g), b) for c, b in ((10, 0.999), (5, 0.99), (3, 0.9999))]
    _compare(answer, _cb_ref, cases, MISTAKES_CH5_CB,
             "w_c is proportional to (1 - beta) / (1 - beta**n_c), scaled so the weights sum to C.")
    return "equal to Cui et al.'s class-balanced weights for three values of beta."


def _ch5_flip(answer: Callable) -> str:
    g = _gen()
    x = torch.randn(128, 3, 8, 8, generator=g)
    seeds = torch.randint(0, 2**31 - 1, (66,), generator=g).tolist()

    def pattern(seed: int) -> torch.Tensor:
        """Which images the answer mirrored, called under the global RNG state ``seed``."""
        torch.manual_seed(seed)
        out = _call(answer, x.clone())
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            raise _Wrong("return a tensor of the input's shape (N, C, H, W).")
        same = (out == x).flatten(1).all(1)
        mirrored = (out.flip(-1) == x).flatten(1).all(1)
        if not (same | mirrored).all():
            if ((out.flip(-2) == x).flatten(1).all(1) | same).all():
                raise _Wrong("you flipped the height (dim -2); a horizontal flip reverses the width, dim -1.")
            raise _Wrong("each image must be either unchanged or mirrored along its width (dim -1).")
        if same.all() or mirrored.all():
            raise _Wrong("every image got the same decision; draw one coin per image, not one per batch.")
        return mirrored

    with torch.random.fork_rng(devices=[]):  # the reader's own random state is left as it was
        first = pattern(seeds[0])
        if not 0.2 < first.double().mean().item() < 0.8:  # a fair coin fails it w.p. 2e-12
            raise _Wrong("about half of the images should be flipped (probability 0.5 per image).")
        if torch.equal(first, pattern(seeds[1])):  # a fair coin repeats 128 flips w.p. 2**-128
            raise _Wrong("your answer mirrors the same images on every call: the coins must be random "
                         "(e.g. torch.rand), drawn afresh on each call.")  # fmt: skip
        calls = torch.stack([pattern(s) for s in seeds[2:]]).double()  # (64 calls, 128 images)
        # all 8192 coins pooled: a fair coin's share leaves 0.5 +- 0.025 w.p. 6e-6
        if abs(calls.mean().item() - 0.5) >= 0.025:
            raise _Wrong(f"over many calls {calls.mean().item():.0%} of the images were mirrored: each image "
                         "needs a fair coin, mirrored with probability 0.5 (e.g. torch.rand(N) < 0.5).")  # fmt: skip
        # each image's own frequency over 64 calls: Binomial(64, 0.5) leaves [10, 54] w.p. 3.5e-9 per image
        share = calls.mean(0)
        if not ((share >= 10 / 64) & (share <= 54 / 64)).all():
            raise _Wrong("some images are mirrored far more or far less often than half the time over many "
                         "calls: give every image the same fair coin, whatever its position in the batch.")  # fmt: skip
        # independent calls: an image is mirrored on two consecutive calls a quarter of the time (63 x 128
        # pairs of calls; a fair, independent coin leaves [0.2, 0.3] w.p. about 1e-15, normal approximation)
        both = (calls[1:] * calls[:-1]).mean().item()
        if not 0.2 <= both <= 0.3:
            raise _Wrong(f"an image was mirrored on two consecutive calls {both:.0%} of the time, not about 25%: "
                         "the coins of one call must not depend on the previous call's (no counter or "
                         "alternation); draw them afresh from the random generator.")  # fmt: skip
    return "each image unchanged or mirrored along its width, a fresh fair coin per image on each call."


# ----------------------------------------------------------------------------------------------
# Chapter 6: custom loss modules
# ----------------------------------------------------------------------------------------------


def _ch6_focal_value(answer: Any) -> str:
    p = 0.9
    return _number(answer, -((1 - p) ** 2) * math.log(p), [
        (-math.log(p), "you left out the modulating factor (1 - p_t)**gamma = 0.01."),
        (-((1 - p) ** 2) * math.log10(p), "use the natural logarithm, not log base 10."),
        (-(p**2) * math.log(p), "the factor is (1 - p_t)**gamma, not p_t**gamma."),
    ], "the focal loss is -(1 - p_t)**gamma * ln(p_t) with p_t = 0.9 and gamma = 2.")


def _ls_ref(x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    return F.cross_entropy(x, y, label_smoothing=eps)


def _ls_c_minus_1(x, y, eps):
    c = x.shape[-1]
    q = torch.full_like(x, eps / (c - 1)).scatter(1, y[:, None], 1 - eps)
    return -(q * x.log_softmax(-1)).sum(-1).mean()


MISTAKES_CH6_LS = [
    (_ls_c_minus_1, "torch spreads eps over all C classes (eps / C each, the target included), not C - 1."),
    (lambda x, y, e: (1 - e) * F.cross_entropy(x, y), "you left out the uniform part eps * mean(-log p)."),
    (lambda x, y, e: F.cross_entropy(x, y, label_smoothing=e, reduction="sum"),
     "you summed over the batch; the default reduction divides by N."),
]


def _ch6_label_smoothing(answer: Callable) -> str:
    g = _gen()
    cases = [(torch.randn(n, c, generator=g, dtype=torch.float64) * 2, torch.randint(0, c, (n,), generator=g), e)
             for n, c, e in ((8, 5, 0.1), (4, 3, 0.3), (6, 10, 0.05))]
    _compare(answer, _ls_ref, cases, MISTAKES_CH6_LS,
             "the loss is (1 - eps) * CE + eps * mean over classes of -log p (F.cross_entropy's formula).")
    return "equal to F.cross_entropy(..., label_smoothing=eps) for three values of eps."


def _log_cosh(r: torch.Tensor) -> torch.Tensor:
    return r.abs() + F.softplus(-2 * r.abs()) - math.log(2)


def _reduce(v: torch.Tensor, reduction: str) -> torch.Tensor:
    return v.mean() if reduction == "mean" else v.sum() if reduction == "sum" else v


def _ch6_module(answer: Any) -> str:
    if answer is None:
        raise _NotAttempted
    g = _gen()
    for shape in ((7,), (3, 4)):
        x = torch.randn(shape, generator=g, dtype=torch.float64) * 3
        y = torch.randn(shape, generator=g, dtype=torch.float64)
        for reduction in ("none", "mean", "sum"):
            got = _call(answer(reduction=reduction), x, y)
            if not _close(got, _reduce(_log_cosh(x - y), reduction)):
                if _close(got, _log_cosh(x - y).mean()):
                    raise _Wrong(f"reduction={reduction!r} was ignored: the module always takes the mean.")
                raise _Wrong(f"the value for reduction={reduction!r} differs from log(cosh(input - target)).")
    big = _call(answer(reduction="none"), torch.tensor([1000.0, -1000.0]), torch.zeros(2))
    if not torch.isfinite(big).all():
        raise _Wrong("cosh overflows at a residual of 1000: use |r| + softplus(-2|r|) - log 2.")
    half = _call(answer(), torch.randn(4, dtype=torch.float16), torch.randn(4, dtype=torch.float16))
    if half.dtype != torch.float16:
        raise _Wrong(f"the output's dtype should follow the input's (float16), got {half.dtype}.")
    try:
        answer(reduction="average")(torch.zeros(2), torch.zeros(2))
    except ValueError:
        pass
    except Exception as e:  # noqa: BLE001
        raise _Wrong(f"an invalid reduction should raise ValueError, not {type(e).__name__}.") from None
    else:
        raise _Wrong("reduction='average' was accepted; raise ValueError naming the valid reductions.")
    return "values, reductions, a residual of 1000, float16 and the invalid-reduction error are right."


def _focal_ref(x: torch.Tensor, y: torch.Tensor, gamma: float) -> torch.Tensor:
    logp = x.log_softmax(-1).gather(1, y[:, None]).squeeze(1)
    return (-((1 - logp.exp()) ** gamma) * logp).mean()


MISTAKES_CH6_FOCAL = [
    (lambda x, y, g: F.cross_entropy(x, y), "you left out the modulating factor (1 - p_t)**gamma."),
    (lambda x, y, g: (-(x.softmax(-1).gather(1, y[:, None]).squeeze(1) ** g)
                      * x.log_softmax(-1).gather(1, y[:, None]).squeeze(1)).mean(),
     "the factor is (1 - p_t)**gamma, which shrinks the easy examples, not p_t**gamma."),
    (lambda x, y, g: (-((1 - x.log_softmax(-1).gather(1, y[:, None]).squeeze(1).exp()) ** g)
                      * x.log_softmax(-1).gather(1, y[:, None]).squeeze(1)).sum(),
     "you summed over the batch; take the mean."),
]


def _ch6_focal(answer: Callable) -> str:
    g = _gen()
    cases = [(torch.randn(n, c, generator=g, dtype=torch.float64) * 3, torch.randint(0, c, (n,), generator=g), gm)
             for n, c, gm in ((8, 5, 2.0), (4, 3, 0.5), (6, 10, 1.0))]
    _compare(answer, _focal_ref, cases, MISTAKES_CH6_FOCAL,
             "the loss is the mean of -(1 - p_t)**gamma * log p_t, with log p_t from log_softmax.")
    x = torch.tensor([[30.0, 0.0, 0.0], [0.0, 200.0, 0.0]], requires_grad=True)
    out = _call(answer, x, torch.tensor([0, 1]), 0.5)
    (grad,) = torch.autograd.grad(out, x)
    if not (torch.isfinite(out) and torch.isfinite(grad).all()):
        raise _Wrong("at a confident correct logit the value or gradient is not finite: take log p_t from "
                     "log_softmax and 1 - p_t as -expm1(log p_t), clamped away from 0 before its log.")
    return "equal to the softmax focal loss, with finite gradients at saturated logits and gamma = 0.5."


# ----------------------------------------------------------------------------------------------
# Chapter 7: tuning loss hyperparameters
# ----------------------------------------------------------------------------------------------


def _ch7_lr(answer: Any) -> str:
    return _number(answer, 0.001 * 64, [
        (0.001 / 64, "'mean' makes the gradient 64 times smaller, so the learning rate must be 64 times larger."),
        (0.001, "the step changes: 'mean' divides the gradient by the batch size 64."),
        (0.001 * 8, "the factor is the batch size 64 for SGD, not its square root."),
    ], "'sum' gradients are 64 times the 'mean' ones: multiply the learning rate by 64.")


def _l1_ref(model: torch.nn.Module, lam: float) -> torch.Tensor:
    return lam * sum(p.abs().sum() for n, p in model.named_parameters() if n.endswith("weight"))


MISTAKES_CH7_L1 = [
    (lambda m, lam: lam * sum((p**2).sum() for n, p in m.named_parameters() if n.endswith("weight")),
     "you squared the weights: that is an L2 penalty (weight decay); L1 takes their absolute values."),
    (lambda m, lam: lam * sum(p.abs().sum() for p in m.parameters()),
     "you penalised the biases too; the exercise penalises the weights only."),
    (lambda m, lam: lam * sum(p.abs().mean() for n, p in m.named_parameters() if n.endswith("weight")),
     "you averaged within each tensor; the L1 penalty sums the absolute values."),
]


def _ch7_l1(answer: Callable) -> str:
    torch.manual_seed(int.from_bytes(os.urandom(4), "little"))
    cases = [(torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3)).double(), 1e-3),
             (torch.nn.Linear(7, 2).double(), 0.5)]
    _compare(answer, _l1_ref, cases, MISTAKES_CH7_L1,
             "the penalty is lam times the sum of |w| over every weight tensor (biases excluded).")
    model, lam = cases[0]
    out = _call(answer, model, lam)
    if not (isinstance(out, torch.Tensor) and out.requires_grad):
        raise _Wrong("return a tensor that autograd can differentiate (do not call .item()).")
    return "the penalty is right on two models and differentiable."


class _Split:
    """A validation or test split whose score for each knob value is known; counts its reads."""

    def __init__(self, scores: dict[float, float]):
        self.scores = scores
        self.reads = 0

    def score(self, model: float) -> float:
        """The accuracy of a "model" (here the knob value it was trained with)."""
        self.reads += 1
        return self.scores[model]


def _tune_ref(train: Callable, grid: Sequence[float], val: _Split, test: _Split) -> tuple[float, float]:
    best = max(grid, key=lambda k: val.score(train(k)))
    return best, test.score(train(best))


def _ch7_tune(answer: Callable) -> str:
    g = _gen()
    for _ in range(3):
        grid = [0.0, 0.5, 1.0, 2.0, 5.0]
        val_scores = torch.rand(len(grid), generator=g).tolist()
        test_scores = torch.rand(len(grid), generator=g).tolist()
        best = max(range(len(grid)), key=val_scores.__getitem__)
        if best == max(range(len(grid)), key=test_scores.__getitem__):
            test_scores[best] -= 1.0  # make the test set disagree, so choosing on it shows
        val, test = _Split(dict(zip(grid, val_scores, strict=True))), _Split(dict(zip(grid, test_scores, strict=True)))
        out = _call(answer, lambda k: k, grid, val, test)
        try:
            knob, score = out
        except (TypeError, ValueError):
            raise _Wrong("return a pair (chosen knob value, its test score).") from None
        if knob != grid[best]:
            if knob == grid[max(range(len(grid)), key=test_scores.__getitem__)]:
                raise _Wrong("you chose the knob on the test set; choose on validation, read the test set once.")
            raise _Wrong("the chosen knob is not the one with the best validation score.")
        if test.reads != 1:
            raise _Wrong(f"the test set was read {test.reads} times; read it once, for the chosen knob only.")
        if not math.isclose(float(score), test_scores[best]):
            if math.isclose(float(score), val_scores[best]):
                raise _Wrong("you reported the validation score; report the chosen knob's test score.")
            raise _Wrong("the reported score is not the chosen knob's test score.")
    return ("chosen on validation, test read once; whether the chosen value is good for your data "
            "is what the experiment shows, not the checker.")


def _ch7_selection_bias(answer: Any) -> str:
    wrong = "each score is unbiased, but the largest of 20 noisy scores is biased upwards"
    return _choice(answer, "higher", {"equal": wrong + ": it sits above 0.8 on average.",
                                      "lower": wrong + ", not downwards."}, ("higher", "equal", "lower"))


# ----------------------------------------------------------------------------------------------
# Toy long-tailed data for the experiments of chapters 4 and 7
# ----------------------------------------------------------------------------------------------


def toy_long_tail(counts: Sequence[int], per_class_eval: int, seed: int, dim: int = 8,
                  spread: float = 1.5) -> tuple[torch.Tensor, ...]:
    """A long-tailed training set and a balanced evaluation set of Gaussian blobs, in a second or less.

    Args:
        counts: training examples per class (``C`` positive integers).
        per_class_eval: examples per class in the balanced evaluation set.
        seed: the data seed (class means and samples).
        dim: the feature dimension.
        spread: the distance scale between class means (smaller is harder).

    Returns:
        ``(x_train (n, dim), y_train (n,), x_eval (C * per_class_eval, dim), y_eval)``.
    """
    if len(counts) < 2 or min(counts) < 1:
        raise ValueError(f"counts must hold at least 2 positive integers, got {list(counts)}")
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(len(counts), dim, generator=g) * spread

    def sample(n_per: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.cat([torch.full((n,), c) for c, n in enumerate(n_per)])
        return means[y] + torch.randn(len(y), dim, generator=g), y

    return (*sample(counts), *sample([per_class_eval] * len(counts)))


def train_linear(x: torch.Tensor, y: torch.Tensor, loss_fn: Callable, seed: int, steps: int = 200,
                 lr: float = 0.1) -> torch.nn.Linear:
    """A linear classifier trained full-batch with Adam on ``loss_fn(logits, y)``; ``seed`` fixes the init."""
    torch.manual_seed(seed)
    model = torch.nn.Linear(x.shape[1], int(y.max()) + 1)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    return model


# ----------------------------------------------------------------------------------------------
# Chapter 8: losses in practice
# ----------------------------------------------------------------------------------------------


def _ch8_accumulation(answer: Any) -> str:
    return _number(answer, (6.0 + 4.0 + 2.0) / (3 + 1 + 4), [
        ((6 / 3 + 4 / 1 + 2 / 4) / 3, "you averaged the micro-batch means; divide the step's summed loss by "
                                      "the step's 8 tokens."),
        ((6.0 + 4.0 + 2.0) / 3, "you divided by the number of micro-batches; divide by the tokens (8)."),
        (6 / 3 + 4 / 1 + 2 / 4, "you added the micro-batch means; divide the summed loss by the 8 tokens."),
    ], "add the three summed losses and divide by the step's total number of tokens.")


def _pos_weight_ref(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    return (neg / pos).reshape(-1, 1, 1)


MISTAKES_CH8_POS = [
    (lambda p, n: n / p, "shape (C,) broadcasts against the width of (N, C, H, W); reshape it to (C, 1, 1)."),
    (lambda p, n: (p / n).reshape(-1, 1, 1), "inverted: pos_weight is negatives / positives, "
                                              "so a rare positive weighs more."),
]


def _dense_bce(pos_weight: Any, num_classes: int) -> torch.Tensor | None:
    """Per-pixel ``BCEWithLogitsLoss`` with ``pos_weight`` on fixed ``(2, C, C, C)`` logits (None if it fails).

    ``H = W = C``, so a ``(C,)`` ``pos_weight`` broadcasts along the width and gives a different loss
    instead of an error. Any shape that gives the reference's loss, ``(C, 1, 1)`` or ``(1, C, 1, 1)``, passes.
    """
    g = torch.Generator().manual_seed(num_classes)
    shape = (2, num_classes, num_classes, num_classes)
    z = torch.randn(*shape, generator=g, dtype=torch.float64)
    y = (torch.rand(*shape, generator=g) < 0.3).double()
    try:
        weight = torch.as_tensor(pos_weight, dtype=torch.float64)
        return F.binary_cross_entropy_with_logits(z, y, pos_weight=weight, reduction="none")
    except (TypeError, ValueError, RuntimeError):
        return None


def _ch8_pos_weight(answer: Callable) -> str:
    g = _gen()
    cases = [(torch.randint(1, 100, (c,), generator=g).double(), torch.randint(100, 1000, (c,), generator=g).double())
             for c in (3, 5)]
    # Compare the losses the answer's pos_weight gives, not its shape: every shape that broadcasts along
    # the channels is right.
    mistakes = [(lambda p, n, wrong=wrong: _dense_bce(wrong(p, n), len(p)), hint) for wrong, hint in MISTAKES_CH8_POS]
    for pos, neg in cases:
        got = _dense_bce(_call(answer, pos, neg), len(pos))
        if not _close(got, _dense_bce(_pos_weight_ref(pos, neg), len(pos))):
            _diagnose(got, (pos, neg), mistakes, "pos_weight is negatives / positives per class, in a shape that "
                      "broadcasts along the channels of (N, C, H, W) inputs, such as (C, 1, 1).")
    return "neg / pos per class, in a shape that broadcasts along the channels, such as (C, 1, 1)."


def _kd_ref(s: torch.Tensor, t: torch.Tensor, temperature: float) -> torch.Tensor:
    return F.kl_div((s / temperature).log_softmax(-1), (t / temperature).softmax(-1),
                    reduction="batchmean") * temperature**2


MISTAKES_CH8_KD = [
    (lambda s, t, T: _kd_ref(s, t, T) / T**2, "you forgot T**2, which keeps the gradient's scale "
                                              "roughly constant as the temperature changes."),
    (lambda s, t, T: _kd_ref(s, t, T) / s.shape[-1],
     "reduction='mean' divides by every element; KL per sample needs reduction='batchmean'."),
    (lambda s, t, T: F.kl_div((s / T).softmax(-1), (t / T).softmax(-1), reduction="batchmean") * T**2,
     "you passed probabilities where kl_div expects log-probabilities (the student's log_softmax)."),
    (lambda s, t, T: F.kl_div((t / T).log_softmax(-1), (s / T).softmax(-1), reduction="batchmean") * T**2,
     "student and teacher are swapped: the teacher's probabilities are the target."),
]


def _ch8_distillation(answer: Callable) -> str:
    g = _gen()
    cases = [(torch.randn(n, c, generator=g, dtype=torch.float64) * 2,
              torch.randn(n, c, generator=g, dtype=torch.float64) * 2, T)
             for n, c, T in ((8, 5, 4.0), (3, 10, 2.0), (5, 3, 0.5))]
    _compare(answer, _kd_ref, cases, MISTAKES_CH8_KD,
             "the loss is T**2 * KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch.")
    return "equal to Hinton et al.'s distillation loss for three temperatures."


def _infonce_ref(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    z1, z2 = F.normalize(z1, dim=-1), F.normalize(z2, dim=-1)
    return F.cross_entropy(z1 @ z2.T / tau, torch.arange(z1.shape[0]))


MISTAKES_CH8_NCE = [
    (lambda a, b, t: F.cross_entropy(a @ b.T / t, torch.arange(a.shape[0])),
     "you forgot to L2-normalise the embeddings: the logits are cosine similarities / tau."),
    (lambda a, b, t: _infonce_ref(a, b, 1.0), "you forgot to divide the similarities by the temperature tau."),
    (lambda a, b, t: F.cross_entropy(F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / t,
                                     torch.zeros(a.shape[0], dtype=torch.long)),
     "the positive of row i is column i (targets arange(N)), not column 0."),
]


def _ch8_infonce(answer: Callable) -> str:
    g = _gen()
    cases = [(torch.randn(n, d, generator=g, dtype=torch.float64) * 3,
              torch.randn(n, d, generator=g, dtype=torch.float64) * 3, tau)
             for n, d, tau in ((8, 4, 0.1), (5, 16, 0.5), (3, 2, 0.07))]
    _compare(answer, _infonce_ref, cases, MISTAKES_CH8_NCE,
             "the loss is cross-entropy of cos(z1_i, z2_j) / tau over j, with target j = i.")
    return "equal to the one-direction InfoNCE loss for three temperatures."


# ----------------------------------------------------------------------------------------------
# The index and the entry point
# ----------------------------------------------------------------------------------------------

EXERCISES: dict[str, Callable[[Any], str]] = {
    "ch1-mse-mean": _ch1_mse_mean,
    "ch1-ln-c": _ch1_ln_c,
    "ch1-cross-entropy": _ch1_cross_entropy,
    "ch1-kl-div": _ch1_kl,
    "ch2-mse-grad": _ch2_mse_grad,
    "ch2-ce-grad": _ch2_ce_grad,
    "ch2-logsumexp": _ch2_logsumexp,
    "ch2-function": _ch2_function,
    "ch3-weighted-mean": _ch3_weighted_mean,
    "ch3-ignored": _ch3_ignored,
    "ch3-weighted-ce": _ch3_weighted_ce,
    "ch3-lr-scale": _ch3_scale,
    "ch4-counts": _ch4_counts,
    "ch4-logit-adjusted": _ch4_logit_adjusted,
    "ch4-balanced-accuracy": _ch4_balanced_accuracy,
    "ch4-paired-interval": _ch4_paired,
    "ch5-total": _ch5_total,
    "ch5-ldam-margins": _ch5_ldam,
    "ch5-class-balanced": _ch5_class_balanced,
    "ch5-flip": _ch5_flip,
    "ch6-focal-value": _ch6_focal_value,
    "ch6-label-smoothing": _ch6_label_smoothing,
    "ch6-module": _ch6_module,
    "ch6-focal": _ch6_focal,
    "ch7-lr": _ch7_lr,
    "ch7-l1": _ch7_l1,
    "ch7-tune": _ch7_tune,
    "ch7-selection-bias": _ch7_selection_bias,
    "ch8-accumulation": _ch8_accumulation,
    "ch8-pos-weight": _ch8_pos_weight,
    "ch8-distillation": _ch8_distillation,
    "ch8-infonce": _ch8_infonce,
}
"""Every exercise's id and its checker (the checker returns the pass message or raises)."""

MISTAKES: dict[str, list[tuple[Callable, str]]] = {
    "ch1-cross-entropy": MISTAKES_CH1_CE,
    "ch1-kl-div": MISTAKES_CH1_KL,
    "ch2-ce-grad": MISTAKES_CH2_CE,
    "ch2-logsumexp": MISTAKES_CH2_LSE,
    "ch2-function": MISTAKES_CH2_FUNCTION,
    "ch3-weighted-ce": MISTAKES_CH3_WCE,
    "ch3-lr-scale": MISTAKES_CH3_SCALE,
    "ch4-counts": MISTAKES_CH4_COUNTS,
    "ch4-logit-adjusted": MISTAKES_CH4_LA,
    "ch4-balanced-accuracy": MISTAKES_CH4_BACC,
    "ch4-paired-interval": MISTAKES_CH4_PAIRED,
    "ch5-ldam-margins": MISTAKES_CH5_LDAM,
    "ch5-class-balanced": MISTAKES_CH5_CB,
    "ch6-label-smoothing": MISTAKES_CH6_LS,
    "ch6-focal": MISTAKES_CH6_FOCAL,
    "ch7-l1": MISTAKES_CH7_L1,
    "ch8-pos-weight": MISTAKES_CH8_POS,
    "ch8-distillation": MISTAKES_CH8_KD,
    "ch8-infonce": MISTAKES_CH8_NCE,
}
"""For the exercises whose answer is a function: each popular mistake as a function, and its hint."""


def check(exercise: str, answer: Any, *, quiet: bool = False) -> Result:
    """Check ``answer`` to ``exercise`` (an id of :data:`EXERCISES`) and print the verdict in one line.

    Args:
        exercise: the exercise's id, as printed in the book (``"ch3-weighted-mean"``).
        answer: a number, a function or a class, as the exercise asks; ``None`` (or a function that returns
            ``None`` or raises ``NotImplementedError``) counts as not attempted yet.
        quiet: do not print.

    Returns:
        A :class:`Result`; ``result.passed`` is what a solution cell asserts.

    Raises:
        ValueError: for an unknown exercise id.
    """
    if exercise not in EXERCISES:
        raise ValueError(f"exercise must be one of {sorted(EXERCISES)}, got {exercise!r}")
    try:
        if answer is None:
            raise _NotAttempted
        message = EXERCISES[exercise](answer)
        result = Result(exercise, PASSED, message[0].upper() + message[1:])
    except (_NotAttempted, NotImplementedError):
        result = Result(exercise, NOT_ATTEMPTED, "Write your answer in the cell above, run it, then run this check.")
    except _Wrong as e:
        result = Result(exercise, FAILED, str(e)[0].upper() + str(e)[1:])
    except Exception as e:  # noqa: BLE001 - the reader's code raised: say so in one sentence
        result = Result(exercise, FAILED, f"Your answer raised {type(e).__name__}: {e}")
    if not quiet:
        print(result)
    return result
