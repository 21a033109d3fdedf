"""The contract of a ``torch.nn`` loss, tested on every loss module in ``helpers``.

Like PyTorch's ``test/test_modules.py`` over ``ModuleInfo``, every generic test below runs on every
sample of every loss module registered in ``tests/loss_samples.py``; the modules are found by
walking the package (:func:`helpers.autograd_losses.discover_losses`), so a new loss module without
samples is a failing test. The contract (chapter 6, section 1):

* reductions ``'none' | 'mean' | 'sum'`` (``'sum'`` is the sum of ``'none'``);
* weights and other constants are buffers: ``state_dict``, ``.double()``, ``.to(device)``;
* dtype and device follow the input (float64, ``meta``); a buffer on another device raises, as in
  ``nn.CrossEntropyLoss``;
* an empty batch and an all-ignored batch: ``'mean'`` is NaN as in torch, the gradient is zero;
* non-contiguous and channels_last inputs give the same values and gradients;
* CPU bfloat16 autocast: a float32 result, within float32 rounding of the exact loss of the same
  bfloat16 logits (as ``F.cross_entropy``);
* CUDA autocast, emulated on the CPU: the ops CUDA autocast runs in float32 return float32 inside
  ``forward`` (a ``TorchFunctionMode`` applies that policy), and forward + backward still work; with
  the losses' autocast test patched to answer True (a ``TorchFunctionMode`` does not turn autocast
  on), a float32 loss within 1e-4 relative of the exact loss of the same 16-bit inputs;
  with a GPU, the real thing with float16 and bfloat16 under ``torch.cuda.set_sync_debug_mode("error")``;
* ``gradcheck`` and ``gradgradcheck`` in float64 (exact second derivatives);
* ``torch.compile(fullgraph=True)``: no graph break, so no host read;
* ``torch.func.vmap(torch.func.grad(...))`` over examples (per-sample gradients) equals a loop;
* a target that requires grad gets no NaN gradient;
* bad inputs raise the documented exception with a message naming the argument.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch._dynamo
from loss_samples import SAMPLES, LossSample
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_map

from helpers.autograd_losses import discover_losses

MODULES = sorted(
    name for name, obj in discover_losses().items() if isinstance(obj, type) and issubclass(obj, nn.Module)
)
CASES = [pytest.param(name, s, id=f"{name.rsplit('.', 1)[1]}[{s.label}]") for name in MODULES for s in SAMPLES[name]]
REDUCTIONS = ("none", "mean", "sum")


def _leaves(sample: LossSample, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """Fresh copies of ``inputs``; the differentiated ones require grad."""
    return tuple(t.detach().clone().requires_grad_(i in sample.grad) for i, t in enumerate(inputs))


def _grads(out: Tensor, leaves: tuple[Tensor, ...], sample: LossSample) -> tuple[Tensor, ...]:
    wrt = [leaves[i] for i in sample.grad]
    return torch.autograd.grad(out.sum(), wrt, allow_unused=True, materialize_grads=True)


def _f64(sample: LossSample, reduction: str = "mean") -> nn.Module:
    return sample.build(reduction).double()


def test_every_loss_module_has_samples():
    assert len(MODULES) >= 11, MODULES
    missing = sorted(set(MODULES) - set(SAMPLES))
    assert not missing, f"register samples in tests/loss_samples.py for: {missing}"
    stale = sorted(set(SAMPLES) - set(MODULES))
    assert not stale, f"tests/loss_samples.py has samples for modules that no longer exist: {stale}"


@pytest.mark.parametrize(("name", "sample"), CASES)
def test_reductions(name, sample):
    inputs = sample.make()
    outs = {r: _f64(sample, r)(*inputs) for r in REDUCTIONS}
    assert outs["mean"].dim() == 0 and outs["sum"].dim() == 0
    torch.testing.assert_close(outs["sum"], outs["none"].sum())
    with pytest.raises(ValueError, match="reduction"):
        sample.build("average")


@pytest.mark.parametrize(("name", "sample"), CASES)
def test_buffers_follow_the_module(name, sample):
    module = sample.build("mean")
    tensors = dict(module.named_buffers()) | dict(module.named_parameters())
    floating = {k: v for k, v in tensors.items() if v is not None and v.is_floating_point()}
    assert set(floating) <= set(module.state_dict())
    as_double = [v for v in module.double().buffers() if v.is_floating_point()]
    assert all(v.dtype == torch.float64 for v in as_double)
    on_meta = copy.deepcopy(module).to("meta")
    assert all(t.device.type == "meta" for t in [*on_meta.buffers(), *on_meta.parameters()])
    restored = sample.build("mean").double()
    restored.load_state_dict(module.state_dict())
    inputs = sample.make()
    torch.testing.assert_close(restored(*inputs), module(*inputs))


@pytest.mark.parametrize(("name", "sample"), CASES)
def test_dtype_and_device_follow_the_input(name, sample):
    inputs = sample.make()
    assert _f64(sample)(*inputs).dtype == torch.float64
    assert sample.build("mean")(*(t.float() if t.is_floating_point() else t for t in inputs)).dtype == torch.float32
    meta_inputs = tuple(t.to("meta") for t in inputs)  # no values: a forward that read one would raise
    out = sample.build("mean").to("meta")(*(t.float() if t.is_floating_point() else t for t in meta_inputs))
    assert out.device.type == "meta" and out.dtype == torch.float32


@pytest.mark.parametrize(("name", "sample"), CASES)
def test_buffer_on_another_device_raises_as_torch_does(name, sample):
    module = sample.build("mean")  # CPU buffers
    if not [*module.buffers(), *module.parameters()]:
        return  # nothing that could be on another device
    meta_inputs = tuple(t.float().to("meta") if t.is_floating_point() else t.to("meta") for t in sample.make())
    with pytest.raises(RuntimeError, match="device"):  # ours names both devices, as torch's message does
        module(*meta_inputs)


def _zero_grads_and_value(sample: LossSample, inputs: tuple[Tensor, ...]) -> Tensor:
    leaves = _leaves(sample, inputs)
    out = _f64(sample)(*leaves)
    for g in _grads(out, leaves, sample):
        assert torch.isfinite(g).all() and (g == 0).all(), "the gradient must be zero (finite)"
    return out


@pytest.mark.parametrize(("name", "sample"), CASES)
def test_empty_batch_is_nan_with_zero_gradient(name, sample):
    if not sample.batched:
        return
    empty = tuple(t[:0] for t in sample.make())
    assert torch.isnan(_zero_grads_and_value(sample, empty)), "'mean' of an empty batch is 0/0 = NaN in torch"


@pytest.mark.parametrize(("name", "sample"), CASES)
def test_all_ignored_batch_is_nan_with_zero_gradient(name, sample):
    if sample.ignore is None:
        return
    out = _zero_grads_and_value(sample, sample.ignore(sample.make()))
    assert torch.isnan(out) if sample.ignored_mean_is_nan else torch.isfinite(out)


def _non_contiguous(t: Tensor) -> Tensor:
    wide = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype)[..., ::2]
    return wide.copy_(t)


@pytest.mark.parametrize(("name", "sample"), CASES)
def test_non_contiguous_and_channels_last(name, sample):
    inputs = sample.make()
    module = _f64(sample, "none")
    ref_leaves = _leaves(sample, inputs)
    ref = module(*ref_leaves)
    ref_grads = _grads(ref, ref_leaves, sample)
    layouts = [tuple(_non_contiguous(t) if t.dim() else t for t in inputs)]
    if inputs[0].dim() == 4:
        layouts.append(tuple(t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t for t in inputs))
    for layout in layouts:
        leaves = tuple(t.detach().requires_grad_(i in sample.grad) for i, t in enumerate(layout))
        out = module(*leaves)
        torch.testing.assert_close(out, ref)
        for g, r in zip(_grads(out, leaves, sample), ref_grads, strict=True):
            torch.testing.assert_close(g, r)


def _low(t: Tensor, dtype: torch.dtype, sample_inputs: tuple[Tensor, ...], sample: LossSample) -> Tensor:
    """Differentiated floating inputs in ``dtype`` (the network's 16-bit output); targets unchanged."""
    index = next(i for i, s in enumerate(sample_inputs) if s is t)
    return t.to(dtype) if index in sample.grad and t.is_floating_point() else t


@pytest.mark.parametrize(("name", "sample"), CASES)
def test_cpu_bfloat16_autocast_gives_float32_within_torch_error(name, sample):
    inputs = sample.make()
    low = tuple(_low(t, torch.bfloat16, inputs, sample) for t in inputs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = sample.build("none")(*low)
    assert out.dtype == torch.float32, f"autocast returns float32 for torch's losses, got {out.dtype}"
    exact = _f64(sample, "none")(*(t.double() if t.is_floating_point() else t for t in low))
    # float32 arithmetic on the bfloat16 values: the error F.cross_entropy has under autocast
    torch.testing.assert_close(out.double(), exact, rtol=1e-4, atol=1e-5)


# CUDA autocast's policy (aten/src/ATen/autocast_mode.h, CUDA key): these ops run in float32.
CUDA_FP32_OPS = frozenset(
    "exp log log1p expm1 pow logsumexp softplus reciprocal rsqrt softmax log_softmax sum cumsum prod "
    "cross_entropy nll_loss mse_loss l1_loss smooth_l1_loss binary_cross_entropy_with_logits kl_div".split()
)


class CudaAutocastPolicy(TorchFunctionMode):
    """Emulates on the CPU what CUDA autocast does to 16-bit inputs of the ops it runs in float32."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") in CUDA_FP32_OPS:

            def up(t):
                return t.float() if isinstance(t, Tensor) and t.dtype in (torch.float16, torch.bfloat16) else t

            args, kwargs = tree_map(up, (args, kwargs))
        return func(*args, **kwargs)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("name", "sample"), CASES)
def test_cuda_autocast_policy_emulated_on_cpu(name, sample, dtype, monkeypatch):
    """Two runs. With the policy alone (``torch.is_autocast_enabled`` is False inside a
    ``TorchFunctionMode``, so the losses do not cast their input): ops moved to float32 must not make
    forward or backward mix dtypes. Then with the losses' autocast test answering True, as it does on
    CUDA: the loss is float32 and within float32 rounding of the exact loss of the same 16-bit inputs.
    """
    inputs = sample.make()
    exact = None
    for autocast_seen in (False, True):
        if autocast_seen:
            monkeypatch.setattr("helpers.validation._autocast_enabled", lambda device_type: True)
        leaves = tuple(
            _low(t, dtype, inputs, sample).detach().requires_grad_(i in sample.grad) for i, t in enumerate(inputs)
        )
        with CudaAutocastPolicy():
            out = sample.build("mean")(*leaves)
        grads = _grads(out, leaves, sample)  # the backward runs outside autocast, as on CUDA
        assert torch.isfinite(out)
        for i, g in zip(sample.grad, grads, strict=True):
            assert g.dtype == leaves[i].dtype and torch.isfinite(g).all()
        if exact is None:
            exact = _f64(sample)(*(t.detach().double() if t.is_floating_point() else t for t in leaves))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), exact, rtol=1e-4, atol=1e-5)  # as the CPU bfloat16 test


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("name", "sample"), CASES)
def test_cuda_autocast_without_host_sync(name, sample, dtype):
    inputs = tuple(t.cuda() for t in sample.make())
    module = sample.build("mean")
    if [*module.buffers(), *module.parameters()]:
        with pytest.raises(RuntimeError, match="device"):  # a CPU buffer, a CUDA input: refused, not copied
            module(*inputs)
    module = module.cuda()
    leaves = tuple(
        _low(t, dtype, inputs, sample).detach().requires_grad_(i in sample.grad) for i, t in enumerate(inputs)
    )
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.autocast("cuda", dtype=dtype):
            out = module(*leaves)
        grads = _grads(out, leaves, sample)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.dtype == torch.float32
    assert torch.isfinite(out)
    for i, g in zip(sample.grad, grads, strict=True):
        assert g.dtype == leaves[i].dtype and torch.isfinite(g).all()


@pytest.mark.parametrize(("name", "sample"), CASES)
def test_gradcheck_and_gradgradcheck_float64(name, sample):
    inputs = sample.make()
    module = _f64(sample, "sum")

    def fn(*diff: Tensor) -> Tensor:
        args = list(inputs)
        for i, t in zip(sample.grad, diff, strict=True):
            args[i] = t
        return module(*args)

    diff = tuple(inputs[i].detach().clone().requires_grad_() for i in sample.grad)
    assert torch.autograd.gradcheck(fn, diff, fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, diff, fast_mode=True)


@pytest.mark.parametrize(("name", "sample"), CASES)
def test_compile_fullgraph(name, sample):
    inputs = sample.make()
    module = _f64(sample)
    torch._dynamo.reset()
    compiled = torch.compile(module, fullgraph=True, backend="eager")  # a graph break (host read) is an error
    leaves = _leaves(sample, inputs)
    out = compiled(*leaves)
    ref_leaves = _leaves(sample, inputs)
    ref = module(*ref_leaves)
    torch.testing.assert_close(out, ref)
    for g, r in zip(_grads(out, leaves, sample), _grads(ref, ref_leaves, sample), strict=True):
        torch.testing.assert_close(g, r)


@pytest.mark.parametrize(("name", "sample"), CASES)
def test_vmap_grad_per_sample_gradients(name, sample):
    inputs = sample.make()
    module = _f64(sample)
    first = sample.grad[0]

    def one(*args: Tensor) -> Tensor:
        return module(*(a.unsqueeze(0) for a in args)) if sample.batched else module(*args)

    if sample.batched:  # per-example gradients of the first differentiated input
        batch = inputs
    else:  # a batch of three calls
        batch = tuple(torch.stack([t, 2 * t, 0.5 * t]) for t in inputs)
    per_sample = torch.func.vmap(torch.func.grad(one, argnums=first))(*batch)
    loop = []
    for k in range(len(batch[0])):
        leaves = [t[k].detach().clone() for t in batch]
        leaves[first].requires_grad_()
        out = one(*leaves)
        (g,) = torch.autograd.grad(out, leaves[first], allow_unused=True, materialize_grads=True)
        loop.append(g)
    torch.testing.assert_close(per_sample, torch.stack(loop))


@pytest.mark.parametrize(("name", "sample"), CASES)
def test_target_that_requires_grad_gives_no_nan(name, sample):
    inputs = sample.make()
    targets = [i for i, t in enumerate(inputs) if i not in sample.grad and t.is_floating_point()]
    if not targets:
        return  # integer class indices cannot require grad
    leaves = tuple(t.detach().clone().requires_grad_(i in sample.grad or i in targets) for i, t in enumerate(inputs))
    _f64(sample, "sum")(*leaves).backward()
    for t in leaves:
        assert t.grad is None or torch.isfinite(t.grad).all()


@pytest.mark.parametrize(("name", "sample"), CASES)
def test_bad_inputs_raise_the_documented_error(name, sample):
    module = _f64(sample)
    for bad in sample.bad:
        with pytest.raises(bad.error, match=bad.match):
            module(*bad.change(sample.make()))


def test_emulation_changes_dtypes_like_cuda_autocast():
    # The emulation is only as good as its policy: log_softmax and exp of float16 give float32 inside it.
    x = torch.randn(3, 4, dtype=torch.float16)
    with CudaAutocastPolicy():
        assert torch.log_softmax(x, 1).dtype == torch.float32
        assert x.exp().dtype == torch.float32
        assert (x * x).dtype == torch.float16  # mul is not on the list
    assert math.isfinite(float(x.float().sum()))
