"""Forward+backward time and peak memory of classification losses, as ratios to ``F.cross_entropy``.

Losses compared on the same logits ``(N, C)`` and labels (chapter 6):

* ``cross_entropy``: :func:`torch.nn.functional.cross_entropy`, the yardstick (ratio 1);
* ``focal_eager``: :class:`helpers.losses.FocalLoss` (gamma=2), autograd through every step;
* ``focal_fast``: :class:`helpers.fast_focal.FastFocalLoss` (gamma=2), hand-written backward;
* ``sigmoid_focal_tv``: :func:`torchvision.ops.sigmoid_focal_loss` on one-hot targets, mean-reduced.

Timing: every round runs each loss once (forward, ``backward()``) on the same logits, in a rotating
order, so the losses share the machine's state; a loss's time ratio is the median over rounds of its
time divided by cross-entropy's time *in the same round*, reported with the quartiles of those
ratios. This keeps ratios meaningful on a busy machine, where absolute times are not. Peak memory:
the largest total size of the tensors alive at once during one training step of a classifier head,
``nn.Linear(head_features, C)`` applied to ``(N, head_features)`` features, then the loss, then
``backward()`` (on CUDA, ``torch.cuda.max_memory_allocated`` above what existed before; on CPU,
tensors tracked at the granularity of aten operations by a dispatch mode). The logits are produced
inside the measured block, as in a network: ``nn.Linear`` saves its input, not its output, so the
logits stay alive for the backward pass only if the loss saves them, and a loss that keeps them
(``FastFocalLoss``) must be charged for them. The features, targets and head parameters exist
before the block and are not counted.

Use :func:`run_benchmark` and :func:`format_table` (chapter 6 does), or the command line of a clone,
``python benchmarks/bench_losses.py --help``, which wraps them.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from helpers.fast_focal import FastFocalLoss
from helpers.losses import FocalLoss

__all__ = [
    "BASELINE",
    "PeakTensorMemory",
    "format_table",
    "forward_backward",
    "loss_functions",
    "peak_memory_bytes",
    "run_benchmark",
    "time_side_by_side",
]

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
BASELINE = "cross_entropy"


def loss_functions(gamma: float = 2.0) -> dict[str, LossFn]:
    """The compared losses, each ``fn(logits, labels, one_hot_labels) -> scalar``; the baseline first."""
    from torchvision.ops import sigmoid_focal_loss

    eager, fast = FocalLoss(gamma=gamma), FastFocalLoss(gamma=gamma)
    return {
        BASELINE: lambda x, y, onehot: F.cross_entropy(x, y),
        "focal_eager": lambda x, y, onehot: eager(x, y),
        "focal_fast": lambda x, y, onehot: fast(x, y),
        "sigmoid_focal_tv": lambda x, y, onehot: sigmoid_focal_loss(x, onehot, gamma=gamma, reduction="mean"),
    }


class PeakTensorMemory(TorchDispatchMode):
    """Track the total bytes of tensor storages alive during the ops run under this mode; keep the peak.

    Storages created by an operation are recorded with a weak reference and dropped once freed, so
    ``peak`` is the largest total, sampled after every aten operation (forward and backward), of the
    storages allocated inside the block. Memory a kernel uses internally is not seen.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.live = {key: value for key, value in self.live.items() if not value[0].expired()}
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                ref = StorageWeakRef(storage)
                self.live.setdefault(ref.cdata, (ref, storage.nbytes()))
        self.peak = max(self.peak, sum(nbytes for _, nbytes in self.live.values()))
        return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_backward(fn: LossFn, x: torch.Tensor, y: torch.Tensor, onehot: torch.Tensor) -> None:
    """One training-style step of a loss: forward to a scalar, then backward into ``x.grad``."""
    x.grad = None
    fn(x, y, onehot).backward()


def peak_memory_bytes(
    fn: LossFn, x: torch.Tensor, y: torch.Tensor, onehot: torch.Tensor, head: nn.Module | None = None
) -> int:
    """Peak bytes of the tensors allocated during one forward+backward (inputs excluded).

    With ``head``, ``x`` are features and the logits ``head(x)`` are computed inside the measured
    block (so they count wherever the loss keeps them alive); without it, ``x`` are the logits.
    """
    x.grad = None
    if head is not None:
        head.zero_grad(set_to_none=True)

    def step() -> None:
        fn(x if head is None else head(x), y, onehot).backward()

    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
        torch.cuda.reset_peak_memory_stats(x.device)
        before = torch.cuda.memory_allocated(x.device)
        step()
        torch.cuda.synchronize(x.device)
        return torch.cuda.max_memory_allocated(x.device) - before
    tracker = PeakTensorMemory()
    with tracker:
        step()
    return tracker.peak


def time_side_by_side(
    fns: dict[str, LossFn], x: torch.Tensor, y: torch.Tensor, onehot: torch.Tensor, repeats: int, warmup: int
) -> dict[str, list[float]]:
    """Seconds per forward+backward for each loss, ``repeats`` interleaved rounds after ``warmup`` rounds."""
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(warmup + repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:  # rotate the order: no loss always runs first
            _sync(x.device)
            start = time.perf_counter()
            forward_backward(fns[name], x, y, onehot)
            _sync(x.device)
            if round_index >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def run_benchmark(
    n: int = 8192,
    classes: tuple[int, ...] = (10, 100, 1000),
    repeats: int = 30,
    warmup: int = 3,
    device: str = "cpu",
    gamma: float = 2.0,
    seed: int = 0,
    threads: int | None = 1,
    progress: Callable | None = None,
    head_features: int = 64,
) -> list[dict]:
    """Measure every loss of :func:`loss_functions` at each ``(n, C)``; one row per loss and size.

    Row keys: ``loss, N, C, ms`` (median), ``time_ratio`` (median of same-round ratios to
    cross-entropy), ``time_ratio_q1``/``time_ratio_q3`` (quartiles of those ratios), ``peak_mib``,
    ``memory_ratio`` (peak memory of a head + loss step, see the module docstring; ``head_features``
    is the head's input size). ``threads`` sets ``torch.set_num_threads`` for the measurement only (restored
    afterwards; None keeps torch's choice). The default, 1, gives stable numbers on a shared machine,
    where several threads per process mostly measure the contention between processes.
    """
    if n < 1 or repeats < 1 or warmup < 0 or not classes or min(classes) < 2:
        raise ValueError(
            f"need n >= 1, repeats >= 1, warmup >= 0 and every C >= 2; got {n}, {repeats}, {warmup}, {classes}"
        )
    dev = torch.device(device)
    fns = loss_functions(gamma)
    generator = torch.Generator().manual_seed(seed)
    rows: list[dict] = []
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        for num_classes in classes if progress is None else progress(classes, desc="benchmark (C)"):
            rows.extend(_measure_size(fns, n, num_classes, repeats, warmup, dev, generator, head_features))
    finally:
        torch.set_num_threads(previous_threads)
    return rows


def _measure_size(
    fns: dict[str, LossFn],
    n: int,
    num_classes: int,
    repeats: int,
    warmup: int,
    dev: torch.device,
    generator: torch.Generator,
    head_features: int,
) -> list[dict]:
    """The rows of :func:`run_benchmark` for one class count."""
    x = torch.randn(n, num_classes, generator=generator).to(dev).requires_grad_()
    y = torch.randint(0, num_classes, (n,), generator=generator).to(dev)
    onehot = F.one_hot(y, num_classes).to(x.dtype)
    times = time_side_by_side(fns, x, y, onehot, repeats, warmup)
    head = nn.Linear(head_features, num_classes).to(dev)
    features = torch.randn(n, head_features, generator=generator).to(dev).requires_grad_()
    peaks = {name: peak_memory_bytes(fn, features, y, onehot, head) for name, fn in fns.items()}
    rows = []
    for name in fns:
        ratios = sorted(t / b for t, b in zip(times[name], times[BASELINE], strict=True))
        quartiles = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else [ratios[0]] * 3
        rows.append(
            {
                "loss": name,
                "N": n,
                "C": num_classes,
                "ms": 1e3 * statistics.median(times[name]),
                "time_ratio": statistics.median(ratios),
                "time_ratio_q1": quartiles[0],
                "time_ratio_q3": quartiles[2],
                "peak_mib": peaks[name] / 2**20,
                "memory_ratio": peaks[name] / peaks[BASELINE],
            }
        )
    return rows


def format_table(rows: list[dict]) -> str:
    """A Markdown table of the rows (time and memory as ratios to cross-entropy)."""
    lines = [
        "| loss | N | C | median ms | time / CE (median [q1, q3]) | peak MiB (head + loss) | memory / CE |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['loss']} | {r['N']} | {r['C']} | {r['ms']:.2f} | {r['time_ratio']:.2f} "
            f"[{r['time_ratio_q1']:.2f}, {r['time_ratio_q3']:.2f}] | {r['peak_mib']:.1f} | {r['memory_ratio']:.2f} |"
        )
    return "\n".join(lines)
