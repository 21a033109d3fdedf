"""Argument checks and input conventions shared by the book's loss functions.

Every check raises ``ValueError`` (bad value or shape) or ``TypeError`` (bad dtype or type) with a
message that names the argument and says what was expected, as ``torch.nn`` losses do.

Checks of shapes, dtypes and hyperparameters read only metadata and cost nothing. Checks of tensor
*values* (targets in ``[0, C)``, probabilities in ``[0, 1]``) are different: reading a value on the
host (``int(t.min())``, ``if (t < 0).any():``) waits for an asynchronous device such as a GPU to
finish every queued kernel, and stops :func:`torch.compile` from capturing the loss as one graph.
:func:`check_values` therefore raises the ``ValueError`` only where reading a value is free (eager
mode on the CPU); on other devices and while compiling it queues a device-side assertion
(:func:`torch._assert_async`; on CUDA a failure is a device-side assert, reported as a generic
``RuntimeError`` at a later synchronisation, see :func:`check_values`); under ``torch.func``
transforms (``vmap``), where a value cannot be branched on, and on the ``meta`` device, which has
no values, it checks nothing.

Two conventions of ``torch.nn`` losses that every loss here shares:

* :func:`same_device`: a buffer (class weights, margins) on another device than the input is an
  error, as in ``nn.CrossEntropyLoss``, not a silent copy (on CUDA a blocking host-to-device copy
  on every call, which waits for the GPU);
* :func:`float32_under_autocast`: under :func:`torch.autocast`, a 16-bit input is computed on in
  float32 and the loss is returned in float32, as autocast does for ``F.cross_entropy``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

REDUCTIONS = ("none", "mean", "sum")


def check_reduction(reduction: str) -> str:
    """Return ``reduction`` if it is one of ``'none'``, ``'mean'``, ``'sum'``; else raise ``ValueError``."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def reduce_loss(loss: torch.Tensor, reduction: str, weight_sum: torch.Tensor | None = None) -> torch.Tensor:
    """Apply ``reduction`` to element-wise losses.

    ``'mean'`` divides the sum by ``weight_sum`` when given (the weighted-mean convention of
    ``F.cross_entropy`` and ``F.nll_loss``: divide by the total weight of the targets), otherwise by
    the number of elements. A total weight of 0 (every target ignored) gives NaN with a zero
    gradient, as ``F.cross_entropy`` does (a plain ``0 / 0`` would give NaN gradients too).
    """
    check_reduction(reduction)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if weight_sum is None:
        return loss.mean()
    counted = weight_sum != 0
    mean = loss.sum() / torch.where(counted, weight_sum, torch.ones_like(weight_sum))
    return torch.where(counted, mean, torch.full_like(mean, float("nan")))


def under_functorch() -> bool:
    """True inside a ``torch.func`` transform (``vmap``, ``grad``, ``jacrev``, ...)."""
    return torch._C._functorch.peek_interpreter_stack() is not None


def values_readable(tensor: torch.Tensor) -> bool:
    """True where reading ``tensor``'s values on the host costs no device sync and no graph break:
    eager mode on the CPU, outside ``torch.func`` transforms."""
    return tensor.device.type == "cpu" and not torch.compiler.is_compiling() and not under_functorch()


def check_values(ok: torch.Tensor, message: str, detail: Callable[[], str] | None = None) -> None:
    """Require every element of the boolean tensor ``ok`` to be True, without a host sync where it costs one.

    Eager on the CPU: ``ValueError(message + detail())`` (``detail`` is called only on failure, to
    describe the offending values). On other devices and under :func:`torch.compile`: a device-side
    assertion (:func:`torch._assert_async`), which does not wait for the device. On CUDA a failure
    is a device-side assert: the kernel prints ``message`` on the device (recent versions; older
    ones drop it) and Python sees the generic ``RuntimeError: CUDA error: device-side assert
    triggered`` at a later synchronisation, after which the CUDA context is unusable. Keep
    ``message`` short (PyTorch's CUDA code refuses one of 255 characters or more). Under ``torch.func`` transforms
    (``vmap`` over targets: no single value to branch on) and on the ``meta`` device (no values):
    nothing is checked.
    """
    if ok.device.type == "meta" or (not torch.compiler.is_compiling() and under_functorch()):
        return
    if not values_readable(ok):
        torch._assert_async(ok.all(), message)
    elif not bool(ok.all()):
        raise ValueError(message + (detail() if detail is not None else ""))


def same_device(buffer: torch.Tensor, input: torch.Tensor, name: str) -> torch.Tensor:
    """``buffer`` in ``input``'s dtype, if it is on ``input``'s device; else ``RuntimeError``.

    ``nn.CrossEntropyLoss`` refuses a weight on another device; so does every loss here, instead of
    copying it on every call (for a CPU buffer and a CUDA input, a blocking copy that waits for the
    GPU). Move the loss with the model: ``loss_fn.to(device)``.
    """
    if buffer.device != input.device:
        raise RuntimeError(
            f"{name} is on device {buffer.device} but input is on device {input.device}: move the loss with the model "
            f"(loss_fn.to({str(input.device)!r}))"
        )
    return buffer.to(dtype=input.dtype)


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch without the device_type argument: the per-device functions
        if device_type == "cpu":
            return torch.is_autocast_cpu_enabled()
        return device_type == "cuda" and torch.is_autocast_enabled()
    except RuntimeError:  # a device type autocast does not know (meta)
        return False


def float32_under_autocast(input: torch.Tensor) -> torch.Tensor:
    """``input`` in float32 when it is float16/bfloat16 and autocast is on for its device; else unchanged.

    Autocast runs ``F.cross_entropy`` and the other ``torch.nn`` losses in float32 and returns a
    float32 loss; a loss written from ``log_softmax`` and ``logsumexp`` would otherwise compute in
    bfloat16 on the CPU (those ops are not on the CPU's float32 list) and lose up to a tenth of a
    nat per example. Outside autocast a 16-bit input keeps its dtype, as in ``torch.nn``.
    """
    if input.dtype in (torch.float16, torch.bfloat16) and _autocast_enabled(input.device.type):
        return input.float()
    return input


def check_weight_length(weight: torch.Tensor | None, num_classes: int, name: str = "weight") -> None:
    """``ValueError`` unless ``weight`` is None or has ``num_classes`` entries (metadata only: no sync)."""
    if weight is not None and weight.numel() != num_classes:
        raise ValueError(f"{name} must have {num_classes} entries (one per class of input), got {weight.numel()}")


def check_class_targets(
    input: torch.Tensor, target: torch.Tensor, ignore_index: int | None = None, *, input_name: str = "input"
) -> int:
    """Check logits ``(N, C)`` or ``(N, C, d1, ...)`` against class-index targets ``(N)`` or ``(N, d1, ...)``.

    Returns ``C``. Raises ``TypeError`` for a non-floating input or a non-int64 target, and
    ``ValueError`` for mismatched shapes. Target values outside ``[0, C)`` (other than
    ``ignore_index``) are refused by :func:`check_values`: a ``ValueError`` naming the offending
    minimum and maximum in eager mode on the CPU, a device-side assertion elsewhere (no host sync).
    """
    if not torch.is_floating_point(input):
        raise TypeError(f"{input_name} must be a floating-point tensor of logits, got dtype {input.dtype}")
    if input.dim() < 2:
        raise ValueError(f"{input_name} must have shape (N, C) or (N, C, d1, ...), got {tuple(input.shape)}")
    if target.dtype != torch.int64:
        raise TypeError(f"target must be an int64 tensor of class indices, got dtype {target.dtype}")
    expected = (input.shape[0], *input.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(
            f"target must have shape {expected} to match {input_name} of shape {tuple(input.shape)}, "
            f"got {tuple(target.shape)}"
        )
    num_classes = int(input.shape[1])
    ok = (target >= 0) & (target < num_classes)
    if ignore_index is not None:
        ok = ok | (target == ignore_index)

    def detail() -> str:
        bad = target[~ok]
        return f", got {bad.numel()} value(s) outside it, min {int(bad.min())} and max {int(bad.max())}"

    message = f"target values must be in [0, {num_classes})" + (
        f" or equal ignore_index={ignore_index}" if ignore_index is not None else ""
    )
    check_values(ok, message, detail)
    return num_classes


def check_class_weight(
    weight: torch.Tensor | Sequence[float] | None, num_classes: int | None = None, name: str = "weight"
) -> torch.Tensor | None:
    """Return ``weight`` as a 1-D floating tensor (or None), checking length and non-negativity.

    Meant for construction time, where reading the values once is cheap: the values are read on the
    host (a sync for a GPU tensor) except under :func:`torch.compile`, where the check becomes a
    device-side assertion so that a functional loss that validates its weights still compiles.
    """
    if weight is None:
        return None
    w = torch.as_tensor(weight)
    if not torch.is_floating_point(w):
        w = w.to(torch.get_default_dtype())
    if w.dim() != 1:
        raise ValueError(f"{name} must be a 1-D tensor with one entry per class, got shape {tuple(w.shape)}")
    if num_classes is not None and w.numel() != num_classes:
        raise ValueError(f"{name} must have {num_classes} entries (one per class), got {w.numel()}")
    ok = torch.isfinite(w) & (w >= 0)
    message = f"{name} must be finite and non-negative"
    if torch.compiler.is_compiling():
        torch._assert_async(ok.all(), message)
    elif w.device.type != "meta" and not bool(ok.all()):
        raise ValueError(f"{message}, got {w.tolist()}")
    return w


def check_class_counts(
    class_counts: torch.Tensor | Sequence[int], num_classes: int | None = None, name: str = "class_counts"
) -> torch.Tensor:
    """Return per-class training counts as a 1-D float64 tensor; every count must be a positive integer."""
    counts = torch.as_tensor(class_counts)
    if counts.dim() != 1 or counts.numel() < 2:
        raise ValueError(
            f"{name} must be a 1-D sequence with one count per class (at least 2), got shape {tuple(counts.shape)}"
        )
    if num_classes is not None and counts.numel() != num_classes:
        raise ValueError(f"{name} must have {num_classes} entries, got {counts.numel()}")
    counts = counts.to(torch.float64)
    if not torch.isfinite(counts).all() or (counts <= 0).any() or (counts != counts.round()).any():
        raise ValueError(
            f"{name} must be positive integers (a class with zero examples has no prior), got {counts.tolist()}"
        )
    return counts
