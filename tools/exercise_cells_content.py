"""The exercises of each chapter: task, criterion, the reader's stub and the checked solution.

Read by tools/exercise_cells.py, which writes them as cells at the end of each notebook. Code here is
notebook code: lines of at most 88 characters.
"""

HOW_TO = """**How to use these exercises.** Each exercise has an answer cell, with a stub to
replace, and a hidden solution under it. Write your answer in the answer cell and run it:
the last line calls `check`, which tests your answer (on fresh random inputs when the
answer is a function) and prints one line: `passed`, `not attempted yet` (the stub is
untouched), or `wrong` with one sentence naming the likely mistake. The solution stays
hidden until you ask for it: on this page, click the toggle of the collapsed cell under
the answer cell; on Colab, double-click the cell titled "Solution (click to show)". Each solution asserts that it
passes its own checker, so the build tests it like every other cell."""

_IMPORTS = {
    "math": "import math\n\n",
    "torch": "import torch\n",
    "F": "import torch.nn.functional as F\n",
    "nn": "from torch import nn\n",
}


def setup(*names: str) -> str:
    """The block's first code cell: the imports its exercises use, then ``check``."""
    return "".join(_IMPORTS[n] for n in ("math", "torch", "F", "nn") if n in names + ("torch",)) + (
        "\nfrom helpers.exercises import check\n"
    )


_NUMBER_STUB = "{name} = None  # replace None by your number\ncheck(\"{id}\", {name})"


def _number_stub(name: str, ex_id: str) -> str:
    return _NUMBER_STUB.format(name=name, id=ex_id)


def _fn_stub(signature: str, ex_id: str, name: str) -> str:
    return f'def {signature}:\n    raise NotImplementedError  # your code here\n\n\ncheck("{ex_id}", {name})'


CH1 = {
    "setup": setup("math", "F", "nn"),
    "label": "ch1-exercises",
    "intro": "Four exercises on `reduction`, the value of cross-entropy at initialisation, and two "
    "losses written from their formulas.",
    "exercises": [
        {
            "id": "ch1-mse-mean", "title": "MSE by hand", "kind": "Compute by hand", "minutes": 2,
            "link": "[what `reduction` does](#reduction-scale)",
            "task": r"""Predictions $\hat y = \begin{pmatrix}1 & -2 & 0.5\\ 3 & 0 & -1\end{pmatrix}$
and targets $y = \begin{pmatrix}0 & 0 & 0\\ 1 & 1 & 1\end{pmatrix}$ (shape `(2, 3)`). What
does `nn.MSELoss()` (default `reduction='mean'`) return? Work it out on paper first.""",
            "criterion": "is one number, within 0.1 %.",
            "stub": _number_stub("mse_by_hand", "ch1-mse-mean"),
            "solution": """pred = torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]])
target = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
# squares 1, 4, 0.25, 4, 1, 4: their sum 14.25 over all six elements
solution_mse = 14.25 / 6
assert math.isclose(solution_mse, nn.MSELoss()(pred, target).item(), rel_tol=1e-6)
assert check("ch1-mse-mean", solution_mse).passed""",
        },
        {
            "id": "ch1-ln-c", "title": "The loss at initialisation", "kind": "Predict, then run",
            "minutes": 3, "link": "[cross-entropy is NLL after `log_softmax`](#ce-is-nll)",
            "task": """A 10-class classifier whose final layer outputs all-zero logits: predict
the cross-entropy it reports (any target), then run `F.cross_entropy` on a
`torch.zeros(4, 10)` batch to see it.""",
            "criterion": "is the predicted number, within 0.1 %.",
            "stub": _number_stub("loss_at_init", "ch1-ln-c"),
            "solution": """# equal logits: every class has probability 1/10, and the loss is -ln(1/10)
solution_ln_c = math.log(10)
ran = F.cross_entropy(torch.zeros(4, 10), torch.tensor([0, 3, 7, 9]))
print(f"predicted {solution_ln_c:.4f}, F.cross_entropy gives {ran.item():.4f}")
assert math.isclose(solution_ln_c, ran.item(), rel_tol=1e-6)
assert check("ch1-ln-c", solution_ln_c).passed""",
        },
        {
            "id": "ch1-cross-entropy", "title": "Cross-entropy from its formula", "kind": "Implement",
            "minutes": 10, "link": "[the atlas](#loss-atlas)",
            "task": r"""Write `my_cross_entropy(logits, target)` for logits of shape `(N, C)` and
class indices of shape `(N,)`: the mean over the batch of
$\log \sum_j e^{x_{ij}} - x_{i, y_i}$, without calling `F.cross_entropy`, `F.nll_loss` or
`log_softmax`. It must stay finite for logits of size 1000.""",
            "criterion": "equals `F.cross_entropy(logits, target)` on random batches, logits of "
            "size 1000 included.",
            "stub": _fn_stub("my_cross_entropy(logits, target)", "ch1-cross-entropy",
                             "my_cross_entropy"),
            "solution": """def solution_cross_entropy(logits, target):
    m = logits.amax(dim=1, keepdim=True)  # subtract the max: exp cannot overflow
    lse = m.squeeze(1) + (logits - m).exp().sum(dim=1).log()
    return (lse - logits.gather(1, target[:, None]).squeeze(1)).mean()


assert check("ch1-cross-entropy", solution_cross_entropy).passed""",
        },
        {
            "id": "ch1-kl-div", "title": "KL in torch's argument order", "kind": "Implement",
            "minutes": 10, "link": "[the errata, 5.5](#errata)",
            "task": r"""Write `my_kl(log_q, p)` equal to `F.kl_div(log_q, p,
reduction='batchmean')`, where `log_q` holds log-probabilities and `p` probabilities, both
of shape `(N, C)`. Which one is it, $\mathrm{KL}(p \| q)$ or $\mathrm{KL}(q \| p)$?
Write it from that formula, not by calling `F.kl_div`.""",
            "criterion": "equals `F.kl_div(log_q, p, reduction='batchmean')` on random "
            "distributions.",
            "stub": _fn_stub("my_kl(log_q, p)", "ch1-kl-div", "my_kl"),
            "solution": """def solution_kl(log_q, p):
    # KL(p || q): the target p comes first in the formula, second in the call
    return (p * (p.log() - log_q)).sum() / log_q.shape[0]


assert check("ch1-kl-div", solution_kl).passed""",
        },
    ],
}

CH2 = {
    "setup": setup("F"),
    "label": "ch2-exercises",
    "intro": "Four exercises on gradients: one by hand, two written from the derivation and "
    "checked against autograd, and a custom `autograd.Function`.",
    "exercises": [
        {
            "id": "ch2-mse-grad", "title": "A gradient at a point", "kind": "Compute by hand",
            "minutes": 3, "link": "[gradients derived by hand](#backward-by-hand)",
            "task": r"""With $x = (1, 2, 3)$ and $y = (0, 1, 5)$, what is the gradient of
`F.mse_loss(x, y)` (mean reduction) with respect to $x$? Give three numbers (a list).""",
            "criterion": "is the three components, each within 0.1 %.",
            "stub": _number_stub("grad_by_hand", "ch2-mse-grad").replace(
                "your number", "your list of three numbers"),
            "solution": """# d/dx mean((x - y)**2) = 2 (x - y) / N with N = 3
solution_grad = [2 * 1 / 3, 2 * 1 / 3, 2 * (-2) / 3]
x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
F.mse_loss(x, torch.tensor([0.0, 1.0, 5.0])).backward()
assert torch.allclose(x.grad, torch.tensor(solution_grad))
assert check("ch2-mse-grad", solution_grad).passed""",
        },
        {
            "id": "ch2-ce-grad", "title": "The gradient of cross-entropy", "kind": "Implement",
            "minutes": 8, "link": "[cross-entropy on logits](#backward-by-hand)",
            "task": """Write `ce_grad(logits, target)` returning the gradient of
`F.cross_entropy(logits, target)` (mean reduction) with respect to `logits`, shape
`(N, C)`, from the formula, without autograd.""",
            "criterion": "equals autograd's gradient on random batches (one of them of size 1).",
            "stub": _fn_stub("ce_grad(logits, target)", "ch2-ce-grad", "ce_grad"),
            "solution": """def solution_ce_grad(logits, target):
    onehot = F.one_hot(target, logits.shape[1]).to(logits.dtype)
    return (logits.softmax(dim=1) - onehot) / logits.shape[0]


assert check("ch2-ce-grad", solution_ce_grad).passed""",
        },
        {
            "id": "ch2-logsumexp", "title": "A log-sum-exp that does not overflow",
            "kind": "Predict, then implement", "minutes": 8,
            "link": "[numerical stability](#backward-stability)",
            "task": """First predict what `torch.tensor([1000.0, 1000.0]).exp().sum().log()`
returns, and run it. Then write `my_logsumexp(x)` along the last dimension that stays
finite for inputs near +1000 and -1000 (without `torch.logsumexp`).""",
            "criterion": "equals `torch.logsumexp(x, -1)` on random inputs, near +1000 and "
            "-1000 too.",
            "stub": _fn_stub("my_logsumexp(x)", "ch2-logsumexp", "my_logsumexp"),
            "solution": """naive = torch.tensor([1000.0, 1000.0]).exp().sum().log()
print(f"naive log-sum-exp of (1000, 1000): {naive.item()}")  # exp overflows to inf
assert torch.isinf(naive)


def solution_logsumexp(x):
    m = x.amax(dim=-1, keepdim=True)
    return (m + (x - m).exp().sum(dim=-1, keepdim=True).log()).squeeze(-1)


assert check("ch2-logsumexp", solution_logsumexp).passed""",
        },
        {
            "id": "ch2-function", "title": "MSE as an `autograd.Function`", "kind": "Small project",
            "minutes": 15, "link": "[a custom `autograd.Function`](#backward-custom-function)",
            "task": """Write a `torch.autograd.Function` subclass `MyMSE` whose `forward(ctx, x, y)`
returns `((x - y)**2).mean()` and whose `backward` returns the gradient for `x` (and
`None` for `y`) by hand. The checker multiplies the output by a constant before calling
backward, so the incoming gradient is not 1.""",
            "criterion": "gives the forward value and the gradient of autograd's MSE, for an "
            "incoming gradient other than 1, on inputs of several shapes. Pass the class itself "
            "(`check(\"ch2-function\", MyMSE)`).",
            "stub": """class MyMSE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y):
        raise NotImplementedError  # your code here

    @staticmethod
    def backward(ctx, grad_output):
        raise NotImplementedError  # your code here


check("ch2-function", MyMSE)""",
            "solution": """class SolutionMSE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return ((x - y) ** 2).mean()

    @staticmethod
    def backward(ctx, grad_output):
        x, y = ctx.saved_tensors
        # the chain rule: the incoming gradient times d loss / d x
        return grad_output * 2 * (x - y) / x.numel(), None


x64 = torch.randn(5, dtype=torch.float64, requires_grad=True)
y64 = torch.randn(5, dtype=torch.float64)
assert torch.autograd.gradcheck(lambda x: SolutionMSE.apply(x, y64), (x64,))
assert check("ch2-function", SolutionMSE).passed""",
        },
    ],
}

CH3 = {
    "setup": setup("math", "F"),
    "label": "ch3-exercises",
    "intro": "Four exercises on what `'mean'` divides by when classes are weighted.",
    "exercises": [
        {
            "id": "ch3-weighted-mean", "title": "The weighted mean of a batch", "kind": "Compute by hand",
            "minutes": 3, "link": "[the general rule](#weighted-mean-rule)",
            "task": r"""Four positions have unweighted cross-entropies $(0.5, 1.0, 2.0, 0.1)$,
targets `[0, 1, 2, 2]`, and the loss has `weight=torch.tensor([1., 2., 3.])`. What does
`reduction='mean'` return?""",
            "criterion": "is one number, within 0.1 %.",
            "stub": _number_stub("weighted_mean", "ch3-weighted-mean"),
            "solution": """# each loss times its target's weight, divided by the sum of those weights
solution_weighted_mean = (0.5 * 1 + 1.0 * 2 + 2.0 * 3 + 0.1 * 3) / (1 + 2 + 3 + 3)
assert check("ch3-weighted-mean", solution_weighted_mean).passed""",
        },
        {
            "id": "ch3-ignored", "title": "The same batch with an ignored position",
            "kind": "Predict, then run", "minutes": 3, "link": "[the general rule](#weighted-mean-rule)",
            "task": """The same batch, but the last target is `-100` (`ignore_index`). Predict
the `'mean'` loss, then build logits whose per-position losses are those four numbers and
run `F.cross_entropy` to see it.""",
            "criterion": "is one number, within 0.1 %.",
            "stub": _number_stub("ignored_mean", "ch3-ignored"),
            "solution": """solution_ignored = (0.5 * 1 + 1.0 * 2 + 2.0 * 3) / (1 + 2 + 3)
# logits whose losses are given: two classes at 0 and one at z, target on class 0
losses = torch.tensor([0.5, 1.0, 2.0, 0.1])
target = torch.tensor([0, 1, 2, -100])
logits = torch.zeros(4, 3)
# with the target's logit at 0 and the others at z: loss = log(1 + 2 e^z)
z = torch.log((losses.exp() - 1) / 2)
others = torch.tensor([[1, 2], [0, 2], [0, 1], [1, 2]])  # the non-target classes
logits[torch.arange(4)[:, None], others] = z[:, None]
ran = F.cross_entropy(logits, target, weight=torch.tensor([1.0, 2.0, 3.0]))
print(f"predicted {solution_ignored:.4f}, F.cross_entropy gives {ran.item():.4f}")
assert math.isclose(ran.item(), solution_ignored, rel_tol=1e-5)
assert check("ch3-ignored", solution_ignored).passed""",
        },
        {
            "id": "ch3-weighted-ce", "title": "Weighted cross-entropy with every reduction",
            "kind": "Implement", "minutes": 15, "link": "[the general rule](#weighted-mean-rule)",
            "task": """Write `my_weighted_ce(logits, target, weight, reduction)` for `(N, C)`
logits, `(N,)` targets (some equal to `-100`, to be ignored), a `(C,)` weight and
`reduction` in `'none'`, `'sum'`, `'mean'`, without `F.cross_entropy` or `F.nll_loss`.""",
            "criterion": "equals `F.cross_entropy(logits, target, weight=weight, "
            "reduction=reduction)` for the three reductions, with ignored targets.",
            "stub": _fn_stub("my_weighted_ce(logits, target, weight, reduction)", "ch3-weighted-ce",
                             "my_weighted_ce"),
            "solution": """def solution_weighted_ce(logits, target, weight, reduction):
    keep = target != -100
    safe = target.clamp(min=0)  # any class index; the ignored rows are zeroed below
    nll = logits.logsumexp(1) - logits.gather(1, safe[:, None]).squeeze(1)
    w = weight[safe] * keep
    losses = w * nll
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / w.sum()  # the weight sum, not N


assert check("ch3-weighted-ce", solution_weighted_ce).passed""",
        },
        {
            "id": "ch3-lr-scale", "title": "How much `'mean'` rescales the step",
            "kind": "Implement, then run", "minutes": 10,
            "link": "[`'mean'` versus `'sum'` / B](#weighted-mean-learning-rate)",
            "task": """Write `mean_over_sum_scale(weight, target)`: the factor by which the
gradient of the weighted `'mean'` loss differs from that of the `'sum'` loss divided by the
batch size B. Then check your formula against autograd on one batch.""",
            "criterion": "is the factor, for random weights and batches.",
            "stub": _fn_stub("mean_over_sum_scale(weight, target)", "ch3-lr-scale",
                             "mean_over_sum_scale"),
            "solution": """def solution_scale(weight, target):
    return target.numel() / weight[target].sum()  # 1 / (the batch's mean weight)


g = torch.Generator().manual_seed(0)
logits = torch.randn(16, 4, generator=g, requires_grad=True)
target = torch.randint(0, 4, (16,), generator=g)
weight = torch.tensor([0.5, 1.0, 2.0, 4.0])
(g_mean,) = torch.autograd.grad(F.cross_entropy(logits, target, weight=weight), logits)
sum_over_b = F.cross_entropy(logits, target, weight=weight, reduction="sum") / 16
(g_sum,) = torch.autograd.grad(sum_over_b, logits)
assert torch.allclose(g_mean, g_sum * solution_scale(weight, target))
assert check("ch3-lr-scale", solution_scale).passed""",
        },
    ],
}

CH4 = {
    "setup": setup("F"),
    "label": "ch4-exercises",
    "intro": """Four exercises on the pieces of this chapter's experiments: the long-tailed
counts, a loss, a metric, and the paired interval, which the last one uses in a small
experiment on a toy problem that trains in a second (`helpers.exercises.toy_long_tail`).""",
    "exercises": [
        {
            "id": "ch4-counts", "title": "The long-tailed counts", "kind": "Implement", "minutes": 5,
            "link": 'the section "The long-tailed training sets" above',
            "task": r"""Write `my_counts(n_max, num_classes, rho)`: the exponential profile, class
$i$ keeping $\lfloor n_{max}\,\rho^{-i/(C-1)} \rfloor$ examples, as a list of integers.""",
            "criterion": "gives exactly the book's counts (CIFAR-10-LT's among them).",
            "stub": _fn_stub("my_counts(n_max, num_classes, rho)", "ch4-counts", "my_counts"),
            "solution": """def solution_counts(n_max, num_classes, rho):
    return [int(n_max * rho ** (-i / (num_classes - 1))) for i in range(num_classes)]


print(solution_counts(5000, 10, 100))
assert check("ch4-counts", solution_counts).passed""",
        },
        {
            "id": "ch4-logit-adjusted", "title": "The logit-adjusted loss", "kind": "Implement",
            "minutes": 8, "link": "[the methods](#ch4-methods)",
            "task": r"""Write `my_la_loss(logits, target, counts, tau)`: cross-entropy on
$x + \tau \log \pi$, with $\pi$ the class prior `counts / counts.sum()` (Menon et al.).""",
            "criterion": "equals the reference on random batches for several values of tau.",
            "stub": _fn_stub("my_la_loss(logits, target, counts, tau)", "ch4-logit-adjusted",
                             "my_la_loss"),
            "solution": """def solution_la_loss(logits, target, counts, tau):
    log_prior = (counts / counts.sum()).log()
    return F.cross_entropy(logits + tau * log_prior, target)


assert check("ch4-logit-adjusted", solution_la_loss).passed""",
        },
        {
            "id": "ch4-balanced-accuracy", "title": "Balanced accuracy", "kind": "Implement",
            "minutes": 5, "link": "[the results](#ch4-results)",
            "task": """Write `my_balanced_accuracy(pred, target, num_classes)`: the mean over
classes of each class's recall (every class occurs in `target`).""",
            "criterion": "equals the mean per-class recall on imbalanced random label sets.",
            "stub": _fn_stub("my_balanced_accuracy(pred, target, num_classes)",
                             "ch4-balanced-accuracy", "my_balanced_accuracy"),
            "solution": """def solution_balanced_accuracy(pred, target, num_classes):
    recalls = [(pred[target == c] == c).float().mean() for c in range(num_classes)]
    return torch.stack(recalls).mean().item()


assert check("ch4-balanced-accuracy", solution_balanced_accuracy).passed""",
        },
        {
            "id": "ch4-paired-interval", "title": "A paired comparison on a toy long tail",
            "kind": "Small experiment", "minutes": 20, "link": "[the results](#ch4-results)",
            "task": """Write `my_paired_interval(a, b, level)` returning `(mean, low, high)`: the
mean of the paired differences `a - b` and its Student-t interval. Then compare
cross-entropy with your logit-adjusted loss on `toy_long_tail` (imbalance 20, five
classes), three seeds, each seed one pair, on balanced accuracy.""",
            "criterion": """equals the Student-t interval of the differences
(`helpers.stats.paired_difference`) on random pairs. The checker cannot tell whether the
experiment's conclusion is right: with three seeds on a toy problem the interval is the
honest answer, whatever side of zero it falls on.""",
            "stub": _fn_stub("my_paired_interval(a, b, level)", "ch4-paired-interval",
                             "my_paired_interval"),
            "solution": """from scipy import stats

from helpers.exercises import toy_long_tail, train_linear


def solution_paired_interval(a, b, level=0.95):
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    d = a - b
    half = stats.t.ppf(0.5 + level / 2, len(d) - 1) * d.std().item() / len(d) ** 0.5
    return d.mean().item(), d.mean().item() - half, d.mean().item() + half


assert check("ch4-paired-interval", solution_paired_interval).passed

counts = [int(400 * 20 ** (-i / 4)) for i in range(5)]
log_prior = (torch.tensor(counts, dtype=torch.float32) / sum(counts)).log()
losses = {"CE": F.cross_entropy, "LA": lambda z, t: F.cross_entropy(z + log_prior, t)}
bacc = {"CE": [], "LA": []}
for seed in range(3):
    x, y, x_test, y_test = toy_long_tail(counts, per_class_eval=200, seed=seed)
    for name, loss in losses.items():
        pred = train_linear(x, y, loss, seed=seed)(x_test).argmax(1)
        recall = [(pred[y_test == c] == c).float().mean() for c in range(5)]
        bacc[name].append(torch.stack(recall).mean().item())
mean, low, high = solution_paired_interval(bacc["LA"], bacc["CE"])
print(
    f"LA - CE balanced accuracy: {100 * mean:+.1f} [{100 * low:+.1f}, "
    f"{100 * high:+.1f}] points over 3 seeds"
)""",
        },
    ],
}

CH5 = {
    "setup": setup(),
    "label": "ch5-exercises",
    "intro": "Four exercises on CIFAR-10-LT's data and on two of the papers' formulas.",
    "exercises": [
        {
            "id": "ch5-total", "title": "How many training images CIFAR-10-LT keeps",
            "kind": "Compute by hand", "minutes": 5, "link": 'the section "CIFAR-10-LT" above',
            "task": """With 5000 images in the largest class, ten classes and imbalance 100, how many
training images does CIFAR-10-LT hold in all (the exponential profile, truncated with
`int`)? A calculator or one line of Python is fine.""",
            "criterion": "is the exact integer.",
            "stub": _number_stub("cifar10_lt_total", "ch5-total"),
            "solution": """solution_total = sum(int(5000 * 100 ** (-i / 9)) for i in range(10))
print(solution_total)
assert check("ch5-total", solution_total).passed""",
        },
        {
            "id": "ch5-ldam-margins", "title": "LDAM's margins", "kind": "Implement", "minutes": 5,
            "link": "[reproduction on a GPU](#ch5-reproduction)",
            "task": r"""Write `my_margins(counts, max_margin)`: LDAM's per-class margins
$\Delta_c \propto n_c^{-1/4}$, scaled so that the largest is `max_margin` (Cao et al.).""",
            "criterion": "equals the paper's margins on random count vectors.",
            "stub": _fn_stub("my_margins(counts, max_margin)", "ch5-ldam-margins", "my_margins"),
            "solution": """def solution_margins(counts, max_margin):
    m = counts.double() ** -0.25
    return m * max_margin / m.max()  # the rarest class gets max_margin


assert check("ch5-ldam-margins", solution_margins).passed""",
        },
        {
            "id": "ch5-class-balanced", "title": "Class-balanced weights", "kind": "Implement",
            "minutes": 8, "link": "[reproduction on a GPU](#ch5-reproduction)",
            "task": r"""Write `my_cb_weights(counts, beta)`: Cui et al.'s weights
$w_c \propto (1-\beta)/(1-\beta^{n_c})$, the inverse of the effective number of samples,
normalised to sum to the number of classes.""",
            "criterion": "equals the reference for several values of beta.",
            "stub": _fn_stub("my_cb_weights(counts, beta)", "ch5-class-balanced", "my_cb_weights"),
            "solution": """def solution_cb_weights(counts, beta):
    w = (1 - beta) / (1 - beta ** counts.double())
    return w * len(counts) / w.sum()


assert check("ch5-class-balanced", solution_cb_weights).passed""",
        },
        {
            "id": "ch5-flip", "title": "A random horizontal flip on a batch", "kind": "Implement",
            "minutes": 8, "link": 'the section "A data pipeline on tensors" above',
            "task": """Write `my_flip(images)` for a batch of shape `(N, C, H, W)`: each image,
independently with probability 0.5, mirrored left to right; no Python loop over images.""",
            "criterion": "leaves each image unchanged or mirrors it along its width, one coin "
            "per image, about half of them mirrored.",
            "stub": _fn_stub("my_flip(images)", "ch5-flip", "my_flip"),
            "solution": """def solution_flip(images):
    coin = torch.rand(images.shape[0], device=images.device) < 0.5
    return torch.where(coin[:, None, None, None], images.flip(-1), images)


assert check("ch5-flip", solution_flip).passed""",
        },
    ],
}

CH6 = {
    "setup": setup("math", "F", "nn"),
    "label": "ch6-exercises",
    "intro": "Four exercises on writing losses that behave like torch's own.",
    "exercises": [
        {
            "id": "ch6-focal-value", "title": "A focal loss by hand", "kind": "Compute by hand",
            "minutes": 2, "link": "[the two focal losses](#two-focal-losses)",
            "task": r"""The model gives the true class probability $p_t = 0.9$. What is the
focal loss with $\gamma = 2$ (no $\alpha$)?""",
            "criterion": "is one number, within 0.1 %.",
            "stub": _number_stub("focal_by_hand", "ch6-focal-value"),
            "solution": """solution_focal_value = -((1 - 0.9) ** 2) * math.log(0.9)
print(f"focal {solution_focal_value:.5f} against cross-entropy {-math.log(0.9):.5f}")
assert check("ch6-focal-value", solution_focal_value).passed""",
        },
        {
            "id": "ch6-label-smoothing", "title": "Label smoothing", "kind": "Implement",
            "minutes": 10, "link": "[label smoothing](#label-smoothing)",
            "task": """Write `my_smoothed_ce(logits, target, eps)` equal to
`F.cross_entropy(logits, target, label_smoothing=eps)`, without passing
`label_smoothing` to torch.""",
            "criterion": "equals torch's value for several values of eps.",
            "stub": _fn_stub("my_smoothed_ce(logits, target, eps)", "ch6-label-smoothing",
                             "my_smoothed_ce"),
            "solution": """def solution_smoothed_ce(logits, target, eps):
    logp = logits.log_softmax(dim=1)
    nll = -logp.gather(1, target[:, None]).squeeze(1)
    uniform = -logp.mean(dim=1)  # eps spread over all C classes, the target included
    return ((1 - eps) * nll + eps * uniform).mean()


assert check("ch6-label-smoothing", solution_smoothed_ce).passed""",
        },
        {
            "id": "ch6-module", "title": "A `reduction`-aware loss module", "kind": "Small project",
            "minutes": 20, "link": "[the contract of a PyTorch loss](#loss-contract)",
            "task": r"""Write a module `LogCoshLoss(reduction='mean')` computing
$\log\cosh(\text{input} - \text{target})$ per element, that follows the contract: the
three reductions, a `ValueError` for any other, finite at a residual of 1000, the output
in the input's dtype (float16 included).""",
            "criterion": "passes all four checks. Pass the class itself.",
            "stub": """class LogCoshLoss(nn.Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, input, target):
        raise NotImplementedError  # your code here


check("ch6-module", LogCoshLoss)""",
            "solution": """class SolutionLogCosh(nn.Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        if reduction not in ("none", "mean", "sum"):
            raise ValueError(
                f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}"
            )
        self.reduction = reduction

    def forward(self, input, target):
        r = (input - target).abs()
        # log cosh r = r + log(1 + exp(-2r)) - log 2, finite for any r
        v = r + F.softplus(-2 * r) - math.log(2)
        if self.reduction == "mean":
            return v.mean()
        return v.sum() if self.reduction == "sum" else v


assert check("ch6-module", SolutionLogCosh).passed""",
        },
        {
            "id": "ch6-focal", "title": "A softmax focal loss with finite gradients",
            "kind": "Implement", "minutes": 15, "link": "[the naive focal loss](#focal-nan)",
            "task": r"""Write `my_focal(logits, target, gamma)`: the mean over the batch of
$-(1-p_t)^\gamma \log p_t$ (softmax), whose value and gradient stay finite when a correct
logit is very confident, for $\gamma = 0.5$ too.""",
            "criterion": "equals the reference on random batches, and its value and gradient "
            "are finite at saturated logits with gamma = 0.5.",
            "stub": _fn_stub("my_focal(logits, target, gamma)", "ch6-focal", "my_focal"),
            "solution": """def solution_focal(logits, target, gamma):
    logp_t = logits.log_softmax(dim=1).gather(1, target[:, None]).squeeze(1)
    # (1 - p_t)**gamma in log space: log1p(-p_t) = log(1 - p_t), with -expm1(logp_t) > 0
    log_one_minus = torch.log(-torch.expm1(logp_t).clamp(max=-1e-30))
    return (-torch.exp(gamma * log_one_minus) * logp_t).mean()


assert check("ch6-focal", solution_focal).passed""",
        },
    ],
}

CH7 = {
    "setup": setup("F"),
    "label": "ch7-exercises",
    "intro": "Four exercises on tuning without fooling yourself; the last one tunes a knob on "
    "a toy problem that trains in a second.",
    "exercises": [
        {
            "id": "ch7-lr", "title": "The learning rate when the reduction changes",
            "kind": "Compute by hand", "minutes": 2,
            "link": 'the section "5. The learning rate depends on the reduction" above',
            "task": """A model trains with plain SGD, `reduction='sum'`, batch size 64 and
learning rate 0.001. You switch to `reduction='mean'`: which learning rate gives the same
steps?""",
            "criterion": "is one number, within 0.1 %.",
            "stub": _number_stub("lr_for_mean", "ch7-lr"),
            "solution": """solution_lr = 0.001 * 64  # 'mean' divides every gradient by the batch size
assert check("ch7-lr", solution_lr).passed""",
        },
        {
            "id": "ch7-l1", "title": "An L1 penalty in the loss", "kind": "Implement", "minutes": 5,
            "link": 'the section "An L1 penalty and first-layer sparsity" above',
            "task": """Write `my_l1(model, lam)`: `lam` times the sum of the absolute values of
every weight tensor of `model` (parameters whose name ends in `weight`; biases are not
penalised), as a tensor autograd can differentiate.""",
            "criterion": "equals the penalty on two models and keeps its gradient.",
            "stub": _fn_stub("my_l1(model, lam)", "ch7-l1", "my_l1"),
            "solution": """def solution_l1(model, lam):
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    return lam * sum(w.abs().sum() for w in weights)


assert check("ch7-l1", solution_l1).passed""",
        },
        {
            "id": "ch7-selection-bias", "title": "The best of twenty", "kind": "Predict, then run",
            "minutes": 5, "link": 'the section "6. The test set, read once" above',
            "task": """Twenty configurations all have true accuracy 0.8; each is scored on its
own 500-example validation set. Is the best validation score, on average, `"higher"`,
`"equal"` or `"lower"` than 0.8? Predict, then simulate it with `torch.binomial`.""",
            "criterion": "is one of the three words.",
            "stub": 'best_of_twenty = None  # "higher", "equal" or "lower"\n'
            'check("ch7-selection-bias", best_of_twenty)',
            "solution": """torch.manual_seed(0)
correct = torch.binomial(torch.full((1000, 20), 500.0), torch.full((1000, 20), 0.8))
scores = correct / 500  # 1000 trials of 20 validation scores
best = scores.max(dim=1).values.mean().item()
print(f"mean of the best validation score over 1000 trials: {best:.3f}")
assert best > 0.8
assert check("ch7-selection-bias", "higher").passed""",
        },
        {
            "id": "ch7-tune", "title": "Tune one knob on validation", "kind": "Small experiment",
            "minutes": 20, "link": 'the section "6. The test set, read once" above',
            "task": """Write `my_tune(train, grid, val, test)`: train one model per knob value
(`train(k)` returns a model), choose the value whose model has the best `val.score(model)`,
and return `(chosen value, test.score(chosen model))`, reading the test set once. Then use
it to tune the logit-adjustment `tau` of a linear model on `toy_long_tail`.""",
            "criterion": """chooses on validation only and reads the test set once (the
checker counts the reads, and makes validation and test disagree). Whether the chosen
value is a good one for your data is what the experiment shows; the checker cannot say.""",
            "stub": _fn_stub("my_tune(train, grid, val, test)", "ch7-tune", "my_tune"),
            "solution": """from helpers.exercises import toy_long_tail, train_linear


def solution_tune(train, grid, val, test):
    models = {k: train(k) for k in grid}
    best = max(grid, key=lambda k: val.score(models[k]))
    return best, test.score(models[best])


assert check("ch7-tune", solution_tune).passed


class BalancedSplit:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def score(self, model):
        pred = model(self.x).argmax(1)
        recall = [(pred[self.y == c] == c).float().mean() for c in range(5)]
        return torch.stack(recall).mean().item()


counts = [int(400 * 20 ** (-i / 4)) for i in range(5)]
x, y, x_eval, y_eval = toy_long_tail(counts, per_class_eval=300, seed=0)
# disjoint: 100 validation and 200 test examples per class
is_val = torch.arange(len(y_eval)) % 3 == 0
val = BalancedSplit(x_eval[is_val], y_eval[is_val])
test = BalancedSplit(x_eval[~is_val], y_eval[~is_val])
log_prior = (torch.tensor(counts, dtype=torch.float32) / sum(counts)).log()


def train(tau):
    def loss(z, t):
        return F.cross_entropy(z + tau * log_prior, t)

    return train_linear(x, y, loss, seed=0)


tau, test_bacc = solution_tune(train, [0.0, 0.5, 1.0, 1.5], val, test)
print(f"tau chosen on validation: {tau}; its test balanced accuracy: {test_bacc:.3f}")""",
        },
    ],
}

CH8 = {
    "setup": setup("F", "nn"),
    "label": "ch8-exercises",
    "intro": "Four exercises on the traps of real training loops.",
    "exercises": [
        {
            "id": "ch8-accumulation", "title": "The loss of an accumulated step",
            "kind": "Compute by hand", "minutes": 3,
            "link": "[gradient accumulation with padding](#practice-accumulation)",
            "task": """A step accumulates three micro-batches with 3, 1 and 4 real tokens, whose
summed token losses are 6.0, 4.0 and 2.0. What is the step's mean loss per token, the
value whose gradient the step should follow?""",
            "criterion": "is one number, within 0.1 %.",
            "stub": _number_stub("step_loss", "ch8-accumulation"),
            "solution": """solution_step = (6.0 + 4.0 + 2.0) / (3 + 1 + 4)  # the step's tokens
print(
    f"per token {solution_step:.3f}; the mean of micro-batch means would be "
    f"{(6 / 3 + 4 / 1 + 2 / 4) / 3:.3f}"
)
assert check("ch8-accumulation", solution_step).passed""",
        },
        {
            "id": "ch8-pos-weight", "title": "`pos_weight` for dense inputs", "kind": "Implement",
            "minutes": 5, "link": "[`pos_weight` broadcasting](#practice-pos-weight)",
            "task": """Write `my_pos_weight(pos, neg)`, from per-class counts of positive and
negative pixels (shape `(C,)`), returning the `pos_weight` for
`BCEWithLogitsLoss` on `(N, C, H, W)` logits.""",
            "criterion": "is negatives / positives per class, in the shape that broadcasts "
            "along the channel dimension.",
            "stub": _fn_stub("my_pos_weight(pos, neg)", "ch8-pos-weight", "my_pos_weight"),
            "solution": """def solution_pos_weight(pos, neg):
    return (neg / pos).reshape(-1, 1, 1)  # (C, 1, 1) lines up with (N, C, H, W)


pos_weight = solution_pos_weight(torch.tensor([1.0, 2.0, 5.0]), torch.full((3,), 10.0))
loss = nn.BCEWithLogitsLoss(pos_weight=pos_weight, reduction="none")
per_pixel = loss(torch.zeros(2, 3, 4, 5), torch.ones(2, 3, 4, 5))
# every pixel of channel c weighs neg_c / pos_c: constant along H and W
corner = per_pixel[:, :, :1, :1]
assert torch.allclose(corner.expand_as(per_pixel), per_pixel)
assert check("ch8-pos-weight", solution_pos_weight).passed""",
        },
        {
            "id": "ch8-distillation", "title": "The distillation loss", "kind": "Implement",
            "minutes": 10, "link": "[distillation with `KLDivLoss`](#practice-distillation)",
            "task": """Write `my_kd(student_logits, teacher_logits, T)`: Hinton et al.'s soft
loss, the KL from the teacher's softened distribution to the student's, per
sample, scaled by `T**2`.""",
            "criterion": "equals the reference for several temperatures.",
            "stub": _fn_stub("my_kd(student_logits, teacher_logits, T)", "ch8-distillation", "my_kd"),
            "solution": """def solution_kd(student_logits, teacher_logits, T):
    log_q = (student_logits / T).log_softmax(dim=1)  # log-probabilities: the input
    p = (teacher_logits / T).softmax(dim=1)  # probabilities: the target
    return F.kl_div(log_q, p, reduction="batchmean") * T**2


assert check("ch8-distillation", solution_kd).passed""",
        },
        {
            "id": "ch8-infonce", "title": "InfoNCE on two views", "kind": "Implement",
            "minutes": 10, "link": "[contrastive and metric losses](#practice-contrastive)",
            "task": r"""Write `my_info_nce(z1, z2, tau)` for two `(N, D)` batches of embeddings
of the same N items: cross-entropy over the cosine similarities $\cos(z1_i, z2_j)/\tau$,
the positive of row $i$ being column $i$ (one direction only).""",
            "criterion": "equals the reference for several temperatures.",
            "stub": _fn_stub("my_info_nce(z1, z2, tau)", "ch8-infonce", "my_info_nce"),
            "solution": """def solution_info_nce(z1, z2, tau):
    sim = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T / tau
    return F.cross_entropy(sim, torch.arange(z1.shape[0], device=z1.device))


assert check("ch8-infonce", solution_info_nce).passed""",
        },
    ],
}

CHAPTERS = {"01": CH1, "02": CH2, "03": CH3, "04": CH4, "05": CH5, "06": CH6, "07": CH7, "08": CH8}
