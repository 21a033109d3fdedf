r"""Losses with hand-written backward passes, and gradient checks for every loss the book defines.

Two things live here, both about the backward pass of a loss (chapter 2):

* :class:`SoftmaxCrossEntropyFunction`, a :class:`torch.autograd.Function` for (class-weighted)
  softmax cross-entropy whose ``backward`` is the formula derived by hand, with the functional
  wrapper :func:`softmax_cross_entropy` (validated arguments, the signature of ``F.cross_entropy``).
* The gradient-check harness: :func:`discover_losses` walks the ``helpers`` package for losses
  (``nn.Module`` subclasses named ``*Loss`` or taking ``reduction``, ``autograd.Function``
  subclasses, functions taking ``reduction``), :data:`GRADCHECK_FACTORIES` builds each one with
  small float64 example inputs (:class:`GradcheckCase`), and :func:`gradcheck_loss` /
  :func:`check_case` run :func:`torch.autograd.gradcheck` on them.
  ``tests/test_gradcheck.py`` fails when a discovered loss has no factory, so a new loss cannot
  enter the book without its gradients being checked.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx
from torch.autograd.gradcheck import GradcheckError

from helpers.validation import REDUCTIONS, check_class_targets, check_class_weight, check_reduction

__all__ = [
    "GRADCHECK_FACTORIES",
    "GradcheckCase",
    "NOT_LOSSES",
    "check_case",
    "composed_cross_entropy",
    "SoftmaxCrossEntropyFunction",
    "discover_losses",
    "gradcheck_cases",
    "gradcheck_loss",
    "softmax_cross_entropy",
]


class SoftmaxCrossEntropyFunction(torch.autograd.Function):
    r"""Softmax cross-entropy on logits with an explicit, hand-derived backward pass.

    Forward, for logits :math:`z \in \mathbb{R}^{N \times C}`, class indices :math:`y_i` and
    optional class weights :math:`w \in \mathbb{R}^C` (all ones when ``None``), with
    :math:`w_i = w_{y_i}`, :math:`p_i = \operatorname{softmax}(z_i)` and
    :math:`W = \sum_i w_i`:

    .. math::
        \ell_i = w_i \bigl(\operatorname{logsumexp}(z_i) - z_{i, y_i}\bigr), \qquad
        L_\text{none} = (\ell_i)_i, \quad L_\text{sum} = \sum_i \ell_i, \quad
        L_\text{mean} = \frac{1}{W} \sum_i \ell_i .

    Backward (the chain rule applied to the formula above; :math:`g` is the incoming gradient,
    a vector for ``'none'`` and a scalar otherwise, :math:`e_{y}` the one-hot row of the target):

    .. math::
        \frac{\partial L}{\partial z_i} = g_i\, w_i\, (p_i - e_{y_i}) \;(\text{none}), \quad
        g\, w_i\, (p_i - e_{y_i}) \;(\text{sum}), \quad
        \frac{g\, w_i}{W}\, (p_i - e_{y_i}) \;(\text{mean}),

    and for the class weights (with :math:`n_c = |\{i : y_i = c\}|` and
    :math:`\mathrm{nll}_i = \operatorname{logsumexp}(z_i) - z_{i, y_i}`)

    .. math::
        \frac{\partial L}{\partial w_c} = \sum_{i: y_i = c} g_i\, \mathrm{nll}_i \;(\text{none}), \quad
        g \sum_{i: y_i = c} \mathrm{nll}_i \;(\text{sum}), \quad
        \frac{g}{W} \Bigl(\sum_{i: y_i = c} \mathrm{nll}_i - n_c L_\text{mean}\Bigr) \;(\text{mean}).

    Call it as ``SoftmaxCrossEntropyFunction.apply(input, target, weight, reduction)`` with
    ``input`` of shape ``(N, C)`` (floating point), ``target`` of shape ``(N,)`` (int64),
    ``weight`` of shape ``(C,)`` or ``None`` and ``reduction`` in ``{'none', 'mean', 'sum'}``;
    :func:`softmax_cross_entropy` validates these first.

    There is no double backward. The backward is not written in differentiable operations, so a
    gradient taken with ``create_graph=True`` (a gradient penalty, a Hessian-vector product) would
    have no graph and its own gradient would be silently missing. Instead, ``backward`` raises
    ``RuntimeError`` whenever it runs with grad mode on, which in a ``.backward()`` or
    ``torch.autograd.grad`` call happens exactly when ``create_graph=True`` was asked for; use
    :func:`composed_cross_entropy` or ``F.cross_entropy`` there. (The Function has no
    ``setup_context``, so ``torch.func`` transforms refuse it before its backward runs.)
    ``torch.autograd.function.once_differentiable`` is not enough: it objects only when the incoming
    gradient itself requires grad, and even then only later, when the returned gradient is itself
    differentiated; otherwise it returns a first derivative without a graph.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx, input: Tensor, target: Tensor, weight: Tensor | None, reduction: str
    ) -> Tensor:
        log_p = torch.log_softmax(input, dim=1)  # z - logsumexp(z), in one stable pass
        nll = -log_p.gather(1, target.unsqueeze(1)).squeeze(1)
        w = torch.ones_like(nll) if weight is None else weight.to(input.dtype)[target]
        losses = w * nll
        if reduction == "none":
            out = losses
        elif reduction == "sum":
            out = losses.sum()
        else:
            out = losses.sum() / w.sum()
        ctx.save_for_backward(log_p, target, w, nll, out)
        ctx.reduction = reduction
        ctx.num_classes = input.shape[1]
        return out

    @staticmethod
    def backward(ctx: FunctionCtx, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        # In .backward()/autograd.grad, grad mode is on here exactly when create_graph=True.
        if torch.is_grad_enabled():
            raise RuntimeError(
                "SoftmaxCrossEntropyFunction does not support double backward "
                "(create_graph=True): its hand-written backward is not differentiable. "
                "Use composed_cross_entropy or F.cross_entropy for gradients of gradients."
            )
        # From here on grad mode is off, so nothing below is recorded.
        log_p, target, w, nll, out = ctx.saved_tensors
        reduction = ctx.reduction
        # Per-example multiplier of (p_i - e_{y_i}) and of nll_i (see the docstring).
        if reduction == "none":
            g = grad_output
        elif reduction == "sum":
            g = grad_output.expand_as(w)
        else:
            g = (grad_output / w.sum()).expand_as(w)
        grad_input = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_input = log_p.exp()  # softmax, a new tensor: log_p stays intact
            grad_input[torch.arange(len(target), device=target.device), target] -= 1
            grad_input.mul_((g * w).unsqueeze(1))
        if ctx.needs_input_grad[2]:
            per_example = g * (nll - out) if reduction == "mean" else g * nll
            grad_weight = per_example.new_zeros(ctx.num_classes)
            grad_weight.index_add_(0, target, per_example)
        return grad_input, None, grad_weight, None


def softmax_cross_entropy(
    input: Tensor, target: Tensor, weight: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    r"""Class-weighted softmax cross-entropy through :class:`SoftmaxCrossEntropyFunction`.

    Same value and gradients as ``F.cross_entropy(input, target, weight=weight, reduction=reduction)``
    for class-index targets (see the class docstring for the formulas), but the backward pass is
    the hand-written one. ``'mean'`` divides by :math:`\sum_i w_{y_i}`, as ``F.cross_entropy`` does.

    Args:
        input: logits of shape ``(N, C)``, floating point.
        target: class indices of shape ``(N,)``, int64, values in ``[0, C)``.
        weight: optional per-class weights of shape ``(C,)``, non-negative; cast to ``input``'s dtype.
            A weight tensor with ``requires_grad=True`` receives its gradient.
        reduction: ``'none'`` (shape ``(N,)``), ``'mean'`` or ``'sum'`` (scalars).

    Raises:
        TypeError: non-floating ``input`` or non-int64 ``target``.
        ValueError: ``input`` not 2-D, mismatched shapes, targets out of range, a bad ``weight`` or
            an unknown ``reduction``.
    """
    check_reduction(reduction)
    if input.dim() != 2:
        raise ValueError(f"input must be logits of shape (N, C), got shape {tuple(input.shape)}")
    num_classes = check_class_targets(input, target)
    if weight is not None:
        if not isinstance(weight, Tensor):
            weight = check_class_weight(weight, num_classes)
        else:
            check_class_weight(weight.detach(), num_classes)
        weight = weight.to(input.device)
    return SoftmaxCrossEntropyFunction.apply(input, target, weight, reduction)


def composed_cross_entropy(
    input: Tensor, target: Tensor, weight: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    r"""The loss of :class:`SoftmaxCrossEntropyFunction` composed from differentiable torch ops.

    .. math::
        \ell_i = -w_{y_i} \log \operatorname{softmax}(z_i)_{y_i}, \qquad
        L_\text{mean} = \frac{\sum_i \ell_i}{\sum_i w_{y_i}},

    written as ``log_softmax`` followed by ``gather``, so that autograd derives the backward pass.
    It is the reference the hand-written backward is checked (and, in chapter 2's appendix, timed)
    against; unlike ``F.cross_entropy`` it accepts a ``weight`` that requires grad. Arguments as in
    :func:`softmax_cross_entropy` (validated the same way).
    """
    check_reduction(reduction)
    if input.dim() != 2:
        raise ValueError(f"input must be logits of shape (N, C), got shape {tuple(input.shape)}")
    num_classes = check_class_targets(input, target)
    if weight is None:
        w_t = torch.ones(target.shape, dtype=input.dtype, device=input.device)
    else:
        check_class_weight(weight.detach() if isinstance(weight, Tensor) else weight, num_classes)
        w_t = torch.as_tensor(weight, dtype=input.dtype, device=input.device)[target]
    losses = -w_t * input.log_softmax(1).gather(1, target.unsqueeze(1)).squeeze(1)
    if reduction == "none":
        return losses
    return losses.sum() if reduction == "sum" else losses.sum() / w_t.sum()


# ---------------------------------------------------------------------------------------------
# Gradient checks for every loss in helpers/
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GradcheckCase:
    """One gradient check: ``loss(*inputs)`` is differentiated with respect to every input that
    requires grad (float64 tensors; the others are passed through unchanged).

    ``label`` names the configuration (e.g. ``"reduction='mean', class weights"``). ``expected_failure``
    is None for a case that must pass, or the documented reason why the implemented gradient is
    deliberately *not* the derivative of the value (the check then must fail, and says so).
    """

    label: str
    loss: Callable[..., Tensor]
    inputs: tuple[Tensor, ...]
    expected_failure: str | None = None


#: Discovered names that are not losses, with the reason (they take ``reduction`` but compute no loss).
NOT_LOSSES: dict[str, str] = {
    "helpers.validation.check_reduction": "argument check",
    "helpers.validation.reduce_loss": "the reduction step shared by the losses, not a loss",
}


def _takes_reduction(obj: Callable) -> bool:
    try:
        return "reduction" in inspect.signature(obj).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False


def discover_losses(package: str = "helpers") -> dict[str, Callable]:
    """Every loss defined in the modules of ``package``, keyed by ``"module.name"``.

    A loss is, among the public names *defined* in a module (imports from elsewhere, e.g. ``torch.nn``,
    do not count):

    * an ``nn.Module`` subclass whose name ends in ``Loss`` or whose constructor takes ``reduction``;
    * a ``torch.autograd.Function`` subclass;
    * a function that takes a ``reduction`` argument (the ``torch.nn.functional`` convention),
      unless :data:`NOT_LOSSES` lists it.

    Importing every module is deliberate: a module that does not import is an error, not a skip.
    """
    root = importlib.import_module(package)
    found: dict[str, Callable] = {}
    for info in sorted(pkgutil.iter_modules(root.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{package}.{info.name}")
        for name, obj in inspect.getmembers(module):
            key = f"{module.__name__}.{name}"
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__ or key in NOT_LOSSES:
                continue
            if inspect.isclass(obj):
                is_loss = (issubclass(obj, nn.Module) and (name.endswith("Loss") or _takes_reduction(obj))) or (
                    issubclass(obj, torch.autograd.Function)
                )
            else:
                is_loss = inspect.isfunction(obj) and _takes_reduction(obj)
            if is_loss:
                found[key] = obj
    return found


F64 = torch.float64
COUNTS = (40, 15, 6, 2)  # class counts for the losses built from a long-tailed training set


def _randn(seed: int, *shape: int, scale: float = 1.5, grad: bool = True) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(*shape, generator=g, dtype=F64)).requires_grad_(grad)


def _targets(n: int = 6, c: int = 4, seed: int = 0) -> Tensor:
    """Int64 class indices covering every class (shuffled)."""
    return (torch.arange(n) % c)[torch.randperm(n, generator=torch.Generator().manual_seed(seed))]


def _class_weight(c: int = 4) -> Tensor:
    return torch.linspace(0.5, 2.0, c, dtype=F64)


def _module_cases(
    build: Callable[[str], nn.Module], make_inputs: Callable[[], tuple[Tensor, ...]], label: str = ""
) -> list[GradcheckCase]:
    """One case per reduction for the module ``build(reduction)`` (converted to float64).

    The module's parameters, if it has any, are checked too: they become extra inputs through
    :func:`torch.func.functional_call`.
    """
    cases = []
    for reduction in REDUCTIONS:
        module = build(reduction).to(F64)
        names = [n for n, _ in module.named_parameters()]
        params = tuple(p.detach().clone().requires_grad_() for _, p in module.named_parameters())
        inputs = make_inputs()

        def loss(*args: Tensor, module: nn.Module = module, k: int = len(inputs), names: list[str] = names) -> Tensor:
            return torch.func.functional_call(module, dict(zip(names, args[k:], strict=True)), args[:k])

        prefix = f"{label}, " if label else ""
        cases.append(GradcheckCase(f"{prefix}reduction={reduction!r}", loss, (*inputs, *params)))
    return cases


def _logits_cases(build: Callable[[str], nn.Module], label: str = "") -> list[GradcheckCase]:
    """Cases for a module taking ``(N, C)`` logits and ``(N,)`` class indices."""
    return _module_cases(build, lambda: (_randn(0, 6, 4), _targets()), label)


def _function_cases(apply: Callable[..., Tensor], extra: tuple = (), label: str = "") -> list[GradcheckCase]:
    """Cases for ``apply(logits, target, *extra, reduction)`` (an autograd Function or a functional loss)."""
    prefix = f"{label}, " if label else ""
    return [
        GradcheckCase(
            f"{prefix}reduction={r!r}",
            lambda z, y, r=r: apply(z, y, *extra, r),
            (_randn(0, 6, 4), _targets()),
        )
        for r in REDUCTIONS
    ]


def _softmax_cross_entropy_cases(cls: type) -> list[GradcheckCase]:
    cases = _function_cases(cls.apply, (None,))
    for r in REDUCTIONS:
        cases.append(
            GradcheckCase(
                f"class weights, gradient w.r.t. logits and weights, reduction={r!r}",
                lambda z, y, w, r=r: cls.apply(z, y, w, r),
                (_randn(1, 6, 4), _targets(), _class_weight().requires_grad_()),
            )
        )
    return cases


def _reference_cases(fn: Callable[..., Tensor]) -> list[GradcheckCase]:
    """Cases for a from-scratch reference loss: the test cases of its entries in the chapter-1 atlas."""
    from helpers import reference

    cases = []
    generator = torch.Generator().manual_seed(0)
    for entry in reference.ATLAS.values():
        if entry.reference is not fn:
            continue
        for case in entry.cases(generator):
            # The atlas marks cases without a gradient to compare, and cases where torch's gradient is
            # documented not to be the formula's derivative (inputs at a clamp, where a finite
            # difference would leave the domain): neither is a gradcheck case.
            if not case.grad or getattr(case, "grad_differs", ""):
                continue
            where = [i for i, a in enumerate(case.args) if isinstance(a, Tensor) and a.requires_grad]
            expected = None
            if "clamp ignored by autograd" in case.label or "straight-through" in case.label:
                expected = "documented by torch: the variance clamp is invisible to autograd (straight-through)"
            for r in case.reductions:

                def loss(*leaves: Tensor, case=case, r: str = r, where: list[int] = where) -> Tensor:
                    args = list(case.args)
                    for i, leaf in zip(where, leaves, strict=True):
                        args[i] = leaf
                    args = tuple(args) if case.transform is None else case.transform(tuple(args))
                    return fn(*args, **case.kwargs, reduction=r)

                leaves = tuple(case.args[i] for i in where)
                cases.append(GradcheckCase(f"{entry.name}: {case.label}, reduction={r!r}", loss, leaves, expected))
    if not cases:
        raise LookupError(f"{fn.__name__} has no entry with gradient cases in helpers.reference.ATLAS")
    return cases


def _linear_cross_entropy_cases(fn: Callable[..., Tensor]) -> list[GradcheckCase]:
    target = _targets(7, 5)
    return [
        GradcheckCase(
            f"bias and class weights, label_smoothing=0.1, reduction={r!r}",
            lambda x, w, b, r=r: fn(x, w, target, b, weight=_class_weight(5), reduction=r, label_smoothing=0.1),
            (_randn(0, 7, 6, scale=0.5), _randn(1, 5, 6, scale=0.5), _randn(2, 5, scale=0.5)),
        )
        for r in REDUCTIONS
    ]


def _multi_task_cases(cls: type) -> list[GradcheckCase]:
    return _module_cases(
        lambda r: cls(2, task_types=["classification", "regression"], init_log_var=0.3, reduction=r),
        lambda: (torch.tensor(1.3, dtype=F64, requires_grad=True), torch.tensor(0.7, dtype=F64, requires_grad=True)),
        "task losses and log-variances",
    )


def _dice_cases(cls: type) -> list[GradcheckCase]:
    """Soft Dice takes probabilities: check the gradient w.r.t. logits through a softmax."""
    target = torch.randint(0, 3, (2, 4, 4), generator=torch.Generator().manual_seed(0))
    cases = []
    for r in REDUCTIONS:
        module = cls(smooth=1.0, weight=_class_weight(3), reduction=r).to(F64)
        cases.append(
            GradcheckCase(
                f"softmax of logits (N, C, H, W), class weights, reduction={r!r}",
                lambda z, module=module: module(z.softmax(1), target),
                (_randn(0, 2, 3, 4, 4),),
            )
        )
    return cases


def _reference_factory(fn: Callable[..., Tensor]) -> list[GradcheckCase]:
    return _linear_cross_entropy_cases(fn) if fn.__name__ == "linear_cross_entropy" else _reference_cases(fn)


# name -> factory(the discovered class or function) -> cases.
# tests/test_gradcheck.py fails when a discovered loss has no entry here.
GRADCHECK_FACTORIES: dict[str, Callable[[Callable], list[GradcheckCase]]] = {
    "helpers.autograd_losses.SoftmaxCrossEntropyFunction": _softmax_cross_entropy_cases,
    "helpers.autograd_losses.composed_cross_entropy": lambda fn: _function_cases(fn, (_class_weight(),), "weights"),
    "helpers.autograd_losses.softmax_cross_entropy": lambda fn: _function_cases(fn, (_class_weight(),), "weights"),
    "helpers.class_balanced.ClassBalancedSigmoidFocalLoss": lambda cls: _logits_cases(
        lambda r: cls(COUNTS, beta=0.9, gamma=2.0, reduction=r), "beta=0.9, gamma=2"
    ),
    "helpers.custom_losses.LabelSmoothingCrossEntropy": lambda cls: _module_cases(
        lambda r: cls(0.1, weight=_class_weight(), ignore_index=-100, reduction=r),
        lambda: (_randn(0, 6, 4), torch.tensor([0, 1, -100, 3, 2, 1])),
        "smoothing 0.1, class weights, one ignored target",
    ),
    "helpers.custom_losses.SigmoidFocalLoss": lambda cls: _module_cases(
        lambda r: cls(alpha=0.25, gamma=0.5, reduction=r),
        lambda: (_randn(0, 5, 3), torch.rand(5, 3, generator=torch.Generator().manual_seed(1), dtype=F64)),
        "gamma=0.5, alpha=0.25, soft targets",
    ),
    "helpers.custom_losses.SoftDiceLoss": _dice_cases,
    "helpers.custom_losses.UncertaintyWeightedLoss": _multi_task_cases,
    "helpers.fast_focal.FastFocalLoss": lambda cls: _logits_cases(
        lambda r: cls(gamma=0.5, alpha=_class_weight(), reduction=r), "gamma=0.5, alpha"
    ),
    "helpers.fast_focal.FocalLossFunction": lambda cls: [  # apply returns the loss first, then saved vectors
        *_function_cases(lambda *args: cls.apply(*args)[0], (_class_weight(), 0.5), "gamma=0.5, alpha"),
        *_function_cases(lambda *args: cls.apply(*args)[0], (None, 2.0), "gamma=2"),
    ],
    "helpers.fast_focal.fast_focal_loss": lambda fn: _function_cases(
        lambda z, y, r: fn(z, y, _class_weight(), 0.5, r), label="gamma=0.5, alpha"
    ),
    "helpers.losses.BalancedSoftmaxLoss": lambda cls: _logits_cases(
        lambda r: cls(COUNTS, weight=_class_weight(), reduction=r), "class weights"
    ),
    "helpers.losses.FocalLoss": lambda cls: [
        *_logits_cases(lambda r: cls(gamma=0.5, alpha=_class_weight(), reduction=r), "gamma=0.5, alpha"),
        *_logits_cases(lambda r: cls(gamma=2.0, reduction=r), "gamma=2"),
    ],
    "helpers.losses.LDAMLoss": lambda cls: _logits_cases(
        lambda r: cls(COUNTS, max_margin=0.5, scale=5.0, weight=_class_weight(), reduction=r), "scale=5, weights"
    ),
    "helpers.losses.LogitAdjustedLoss": lambda cls: _logits_cases(
        lambda r: cls(COUNTS, tau=1.0, weight=_class_weight(), reduction=r), "tau=1, class weights"
    ),
    "helpers.onehot_losses.OneHotMSELoss": lambda cls: _logits_cases(
        lambda r: cls(4, weight=_class_weight(), reduction=r), "class weights"
    ),
    **{
        f"helpers.reference.{name}": _reference_factory
        for name in (
            "binary_cross_entropy binary_cross_entropy_with_logits cosine_embedding_loss cross_entropy ctc_loss "
            "gaussian_nll_loss hinge_embedding_loss huber_loss kl_div l1_loss linear_cross_entropy "
            "margin_ranking_loss mse_loss multi_margin_loss multilabel_margin_loss multilabel_soft_margin_loss "
            "nll_loss poisson_nll_loss smooth_l1_loss soft_margin_loss triplet_margin_loss "
            "triplet_margin_with_distance_loss"
        ).split()
    },
}


def gradcheck_cases(name: str, loss: Callable) -> list[GradcheckCase]:
    """The float64 cases for the discovered loss ``name`` (``"module.name"``).

    Raises:
        KeyError: when :data:`GRADCHECK_FACTORIES` has no factory for ``name``.
    """
    if name not in GRADCHECK_FACTORIES:
        raise KeyError(
            f"loss {name} has no gradcheck factory: add one to GRADCHECK_FACTORIES in helpers/autograd_losses.py"
        )
    return GRADCHECK_FACTORIES[name](loss)


def gradcheck_loss(case: GradcheckCase, **kwargs) -> bool:
    """Run :func:`torch.autograd.gradcheck` on one case (keyword arguments pass through, e.g. ``eps``
    or ``fast_mode``). Returns True or raises ``torch.autograd.gradcheck.GradcheckError``.

    Raises:
        TypeError: if a floating input of the case is not float64 (finite differences in float32
            are too coarse for gradcheck's tolerances; chapter 2 shows why).
    """
    for i, t in enumerate(case.inputs):
        if t.is_floating_point() and t.dtype != F64:
            raise TypeError(f"{case.label}: input #{i} must be float64 for gradcheck, got {t.dtype}")
    return torch.autograd.gradcheck(case.loss, case.inputs, **kwargs)


def check_case(case: GradcheckCase, **kwargs) -> str:
    """Gradcheck one case and say how it went: ``'passed'``, or ``'failed as documented'`` for a
    case with an ``expected_failure`` that does fail (keyword arguments go to :func:`gradcheck_loss`).

    Raises:
        torch.autograd.gradcheck.GradcheckError: a case that should pass does not.
        AssertionError: a case documented to fail passes (the documentation, or the loss, changed).
    """
    if case.expected_failure is None:
        gradcheck_loss(case, **kwargs)
        return "passed"
    try:
        gradcheck_loss(case, **kwargs)
    except GradcheckError:
        return "failed as documented"
    raise AssertionError(f"{case.label}: expected gradcheck to fail ({case.expected_failure}), but it passed")
