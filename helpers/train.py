"""A fast, deterministic trainer for in-memory image tensors.

The whole training set lives in one tensor on the compute device, and a mini-batch is one
indexing operation ``x[idx]``: no ``DataLoader``, no PIL, no per-sample Python. That, larger
batches and ``channels_last`` memory layout are what make the book's experiments fast (see
``benchmarks/bench_mnist_trainer.py``).

Learning-rate schedule (per optimizer step :math:`s`, with :math:`S` steps per epoch, :math:`W`
warm-up steps, :math:`T` total steps and base rate :math:`\\eta`):

.. math::

    \\eta_s = \\eta \\, \\frac{s + 1}{W} \\quad (s < W), \\qquad
    \\eta_s = \\eta \\cdot \\begin{cases}
        \\tfrac12 \\left(1 + \\cos\\left(\\pi \\frac{s - W}{T - W}\\right)\\right) & \\text{cosine} \\\\
        \\gamma^{\\,|\\{m \\in \\text{milestones} : m \\le \\lfloor s / S \\rfloor\\}|} & \\text{step} \\\\
        1 & \\text{constant}
    \\end{cases} \\quad (s \\ge W).

Determinism: for a given ``config.seed`` the batch order, resampling and augmentation randomness
come from generators seeded with it, and :func:`train` re-seeds torch at the start, so two runs
with the same seed, model initialisation and data give identical results on CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from helpers.runtime import progress, seed_everything

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "constant")

Transform = Callable[[torch.Tensor], torch.Tensor]
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass
class TrainConfig:
    """Everything that defines a training run except the model, loss and data.

    Attributes:
        epochs: passes over the training set (with ``balanced_sampling``, an epoch is as many draws
            as there are training examples).
        batch_size: examples per optimizer step; the last, smaller batch of an epoch is kept.
        lr: base learning rate :math:`\\eta` (peak rate after warm-up).
        optimizer: ``"sgd"`` (with ``momentum`` and ``nesterov``) or ``"adamw"``.
        momentum: SGD momentum (ignored by AdamW).
        nesterov: Nesterov momentum for SGD.
        weight_decay: L2 penalty (SGD) or decoupled weight decay (AdamW).
        warmup_epochs: linear warm-up length in epochs (may be fractional, e.g. 0.5).
        schedule: ``"cosine"`` (to zero at the end), ``"step"`` (multiply by ``gamma`` at each of
            ``milestones``, given in epochs) or ``"constant"``.
        milestones: epochs at which the step schedule decays.
        gamma: decay factor of the step schedule.
        balanced_sampling: draw each batch with replacement so that every class is equally likely
            (class-balanced resampling) instead of a shuffled pass over the data.
        sampling_weights: per-class weight ``w_c`` of each *example* when drawing with replacement:
            an example of class ``c`` is drawn with probability proportional to ``w_c``, so class
            ``c`` gets a share proportional to ``n_c w_c`` (``w_c = 1/n_c`` is class-balanced;
            Cao et al.'s "CB RS" uses ``w_c = (1 - beta) / (1 - beta^n_c)``). None: uniform over
            classes when ``balanced_sampling``, a shuffled pass otherwise. Implies drawing with
            replacement.
        amp: mixed precision (float16 autocast with gradient scaling, or bfloat16 where the GPU
            supports it) on CUDA; ignored on other devices.
        channels_last: store the model and every 4-D batch in ``channels_last`` memory layout.
        compile: wrap the model with :func:`torch.compile` on CUDA; ignored on other devices, where
            compilation costs more than it saves for the book's short runs.
        seed: seeds torch (dropout, initialisation done inside ``train``), the batch order, the
            resampling and the ``augment`` generator.
        grad_clip: clip the global gradient norm to this value (None: no clipping).
        fused: use the optimizer's fused implementation (one kernel for all parameters) where it
            exists (CPU and CUDA); False keeps PyTorch's default implementation.
        decay_last_bias: apply ``weight_decay`` to the bias of the model's last ``nn.Linear`` too
            (False exempts it, as Cui et al. do for their sigmoid and focal losses, whose prior bias
            :math:`-\\log(C-1)` would otherwise decay towards 0).
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    optimizer: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    warmup_epochs: float = 0.0
    schedule: str = "cosine"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    balanced_sampling: bool = False
    sampling_weights: tuple[float, ...] | None = None
    amp: bool = False
    channels_last: bool = False
    compile: bool = False
    seed: int = 0
    grad_clip: float | None = None
    fused: bool = True
    decay_last_bias: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be a positive int, got {self.epochs!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {self.batch_size!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be non-negative, got {self.weight_decay!r}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs={self.epochs}), got {self.warmup_epochs!r}")
        self.milestones = tuple(int(m) for m in self.milestones)
        increasing = all(a < b for a, b in zip(self.milestones, self.milestones[1:], strict=False))
        if not increasing or any(m < 1 for m in self.milestones):
            raise ValueError(f"milestones must be strictly increasing positive epochs, got {self.milestones!r}")
        if self.schedule == "step" and not self.milestones:
            raise ValueError("schedule='step' needs milestones (epochs at which the rate is multiplied by gamma)")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        if self.sampling_weights is not None:
            weights = tuple(float(w) for w in self.sampling_weights)
            if not weights or not all(math.isfinite(w) and w > 0 for w in weights):
                raise ValueError(
                    f"sampling_weights must be one positive finite weight per class, got {self.sampling_weights!r}"
                )
            self.sampling_weights = weights

    def to_dict(self) -> dict:
        """The configuration as a JSON-serialisable dict."""
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        if self.sampling_weights is not None:
            d["sampling_weights"] = list(self.sampling_weights)
        return d


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        model: the trained model (the module passed in, trained in place; not the compiled wrapper).
        history: per-epoch curves, each a list with one entry per completed epoch: ``epoch``
            (1-based), ``train_loss`` (the loss being minimised, mean over the epoch's examples),
            ``train_ce`` (plain, unweighted cross-entropy of the same batches' outputs, times
            ``ce_scale``: comparable across losses and unaffected by a change of class weights;
            NaN for outputs that are not ``(N, C)`` logits), ``lr`` (rate of the last
            step), ``seconds`` (training time of the epoch, validation excluded), and, when
            validation data is given, ``val_loss`` (plain cross-entropy), ``val_accuracy``,
            ``val_balanced_accuracy`` and ``val_worst_class_recall``.
        seconds: total training time (validation excluded).
        images_per_second: training throughput, examples processed per second of training time.
        diverged: True if the training loss became NaN or infinite (training then stops early).
    """

    model: nn.Module
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    images_per_second: float = 0.0
    diverged: bool = False


def lr_at(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Learning rate of optimizer step ``step`` (0-based) under ``config`` (formula in the module docstring)."""
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be positive, got {steps_per_epoch}")
    total = config.epochs * steps_per_epoch
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return config.lr * (step + 1) / warmup
    if config.schedule == "cosine":
        progress_frac = (step - warmup) / max(1, total - warmup)
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress_frac)))
    if config.schedule == "step":
        epoch = step // steps_per_epoch
        return config.lr * config.gamma ** sum(epoch >= m for m in config.milestones)
    return config.lr


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD or AdamW over the model's trainable parameters, as ``config`` says.

    With ``config.decay_last_bias=False`` the bias of the last ``nn.Linear`` gets no weight decay.

    With ``config.fused`` (the default) on CPU and CUDA the fused implementation is used (one kernel
    updates every parameter): for a small network the per-parameter loop of the default CPU
    implementation costs about 1 ms per step, a tenth of a whole MNIST training step at batch 128
    (``benchmarks/bench_mnist_trainer.py``).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    devices = {p.device.type for p in params}
    floating = all(p.is_floating_point() for p in params)
    fused = config.fused and floating and len(devices) == 1 and devices <= {"cpu", "cuda"}
    extra = {"fused": True} if fused else {}
    groups: list | list[dict] = params
    if not config.decay_last_bias:
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        bias = linears[-1].bias if linears else None
        if bias is not None and bias.requires_grad:
            groups = [{"params": [p for p in params if p is not bias]}, {"params": [bias], "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            groups,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov,
            weight_decay=config.weight_decay,
            **extra,
        )
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay, **extra)


def _check_data(x: torch.Tensor, y: torch.Tensor, x_name: str, y_name: str) -> None:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"{x_name} and {y_name} must be tensors, got {type(x).__name__} and {type(y).__name__}")
    if y.dtype != torch.int64 or y.dim() != 1:
        raise TypeError(f"{y_name} must be a 1-D int64 tensor of class indices, got {y.dtype} {tuple(y.shape)}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{x_name} has {x.shape[0]} examples but {y_name} has {y.shape[0]}")
    if x.shape[0] == 0:
        raise ValueError(f"{x_name} is empty")
    if x.dtype != torch.uint8 and not torch.is_floating_point(x):
        raise TypeError(f"{x_name} must be uint8 (with a transform) or floating point, got {x.dtype}")


def _epoch_indices(
    y: torch.Tensor,
    balanced: bool,
    generator: torch.Generator,
    num_classes: int,
    class_weights: tuple[float, ...] | None = None,
) -> torch.Tensor:
    """One epoch of example indices (CPU int64): a permutation, or weighted draws with replacement.

    With ``class_weights`` an example of class ``c`` is drawn with probability proportional to
    ``class_weights[c]``; with ``balanced`` alone every present class gets probability ``1/K``.
    """
    n = y.shape[0]
    if not balanced and class_weights is None:
        return torch.randperm(n, generator=generator)
    labels = y.cpu()
    if class_weights is not None:
        if len(class_weights) < num_classes:
            raise ValueError(
                f"sampling_weights has {len(class_weights)} entries but the labels have {num_classes} classes"
            )
        per_example = torch.tensor(class_weights, dtype=torch.float64)[labels]
        return torch.multinomial(per_example, n, replacement=True, generator=generator)
    counts = torch.bincount(labels, minlength=num_classes).to(torch.float64)
    present = counts > 0
    # every present class gets probability 1/K; within a class, examples are equally likely
    per_example = (1.0 / counts.clamp(min=1))[labels] / present.sum()
    return torch.multinomial(per_example, n, replacement=True, generator=generator)


def _prepare(
    batch: torch.Tensor, transform: Transform | None, augment: Augment | None, aug_gen, channels_last: bool
) -> torch.Tensor:
    if transform is not None:
        batch = transform(batch)
    if augment is not None:
        batch = augment(batch, aug_gen)
    if channels_last and batch.dim() == 4:
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch


def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype), dtype
    return torch.autocast(device.type, enabled=False), None


def train(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    config: TrainConfig,
    *,
    x_val: torch.Tensor | None = None,
    y_val: torch.Tensor | None = None,
    transform: Transform | None = None,
    augment: Augment | None = None,
    on_epoch_start: Callable[[int], object] | None = None,
    on_step_start: Callable[[int], object] | None = None,
    ce_scale: float = 1.0,
    show_progress: bool = True,
    desc: str = "training",
) -> TrainResult:
    """Train ``model`` in place on in-memory tensors and return its per-epoch curves.

    Each step draws a batch ``idx`` (a shuffled pass, or class-balanced draws), computes
    ``loss_fn(model(augment(transform(x_train[idx]))), y_train[idx])`` and takes an optimizer step
    with the rate :func:`lr_at` gives.

    Args:
        model: the network; moved to ``x_train``'s device (and to ``channels_last`` if asked).
        loss_fn: ``(logits (N, C), target (N,) int64) -> scalar``; a module is moved to the device.
        x_train: images ``(N, C, H, W)`` (or any ``(N, ...)`` the model takes), already on the
            compute device: ``uint8`` (then ``transform`` must turn a uint8 batch into a
            normalised float batch) or floating point.
        y_train: ``(N,)`` int64 class indices on the same device.
        config: the :class:`TrainConfig`.
        x_val, y_val: optional validation tensors (same format as the training ones); evaluated
            after every epoch (plain cross-entropy and the accuracy metrics in ``history``).
        transform: ``batch -> float batch`` applied to every batch (training and validation).
        augment: ``(batch, generator) -> batch`` applied to training batches after ``transform``;
            ``generator`` is a :class:`torch.Generator` on the data's device, seeded from
            ``config.seed``, so augmentation is reproducible.
        on_epoch_start: called with the 0-based epoch before it starts, e.g.
            ``lambda e: drw(loss_fn, e)`` for deferred re-weighting by epoch.
        on_step_start: called with the 0-based optimizer step (counted over the whole run) before
            it is taken, e.g. ``lambda s: drw(loss_fn, s)`` for a DRW whose start is a step.
        ce_scale: factor applied to the model's outputs for the ``train_ce`` curve (e.g. LDAM's
            scale for its cosine logits).
        show_progress: show a :func:`helpers.runtime.progress` bar over epochs.
        desc: the progress bar's label.

    Returns:
        :class:`TrainResult`.

    Raises:
        TypeError: on tensors of the wrong type or dtype.
        ValueError: on mismatched lengths, or uint8 images without a ``transform``.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    _check_data(x_train, y_train, "x_train", "y_train")
    if (x_val is None) != (y_val is None):
        raise ValueError("give both x_val and y_val, or neither")
    if x_val is not None:
        _check_data(x_val, y_val, "x_val", "y_val")
    if x_train.dtype == torch.uint8 and transform is None:
        raise ValueError("x_train is uint8: pass a transform that maps a uint8 batch to a normalised float batch")
    device = x_train.device
    if y_train.device != device:
        raise ValueError(f"y_train is on {y_train.device} but x_train is on {device}")

    seed_everything(config.seed)
    order_gen = torch.Generator().manual_seed(config.seed)
    aug_gen = torch.Generator(device=device).manual_seed(config.seed + 1)

    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    if isinstance(loss_fn, nn.Module):
        loss_fn.to(device)
    net = torch.compile(model) if (config.compile and device.type == "cuda") else model
    optimizer = make_optimizer(model, config)
    autocast, amp_dtype = _autocast(device, config.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    n = x_train.shape[0]
    num_classes = int(y_train.max()) + 1
    steps_per_epoch = math.ceil(n / config.batch_size)
    history: dict[str, list[float]] = {"epoch": [], "train_loss": [], "train_ce": [], "lr": [], "seconds": []}
    total_seconds, total_images, step, diverged = 0.0, 0, 0, False

    bar = progress(range(config.epochs), desc=desc, leave=False) if show_progress else range(config.epochs)
    for epoch in bar:
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        model.train()
        order = _epoch_indices(
            y_train, config.balanced_sampling, order_gen, num_classes, config.sampling_weights
        ).to(device)
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        ce_sum = torch.zeros((), device=device, dtype=torch.float64)
        start = time.perf_counter()
        for begin in range(0, n, config.batch_size):
            idx = order[begin : begin + config.batch_size]
            xb = _prepare(x_train[idx], transform, augment, aug_gen, config.channels_last)
            yb = y_train[idx]
            lr = lr_at(config, step, steps_per_epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            if on_step_start is not None:
                on_step_start(step)
            with autocast:
                out = net(xb)
                loss = loss_fn(out, yb)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.grad_clip is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            loss_sum += loss.detach().to(torch.float64) * idx.shape[0]
            if out.dim() == 2 and yb.dtype == torch.int64:
                with torch.no_grad():
                    plain = F.cross_entropy(ce_scale * out.detach().float(), yb, reduction="sum")
                ce_sum += plain.to(torch.float64)
            else:
                ce_sum += math.nan
            step += 1
        epoch_loss = float(loss_sum) / n  # one device sync per epoch
        history["train_ce"].append(float(ce_sum) / n)
        seconds = time.perf_counter() - start
        total_seconds += seconds
        total_images += n
        history["epoch"].append(epoch + 1)
        history["train_loss"].append(epoch_loss)
        history["lr"].append(lr)
        history["seconds"].append(seconds)
        if x_val is not None:
            for key, value in _validate(net, x_val, y_val, transform, config.channels_last).items():
                history.setdefault(key, []).append(value)
        if show_progress and hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{epoch_loss:.3f}", lr=f"{lr:.3g}")
        if not math.isfinite(epoch_loss):
            diverged = True
            break
    return TrainResult(
        model=model,
        history=history,
        seconds=total_seconds,
        images_per_second=total_images / total_seconds if total_seconds > 0 else float("nan"),
        diverged=diverged,
    )


def _validate(model, x_val, y_val, transform, channels_last) -> dict[str, float]:
    from helpers.metrics import accuracy, balanced_accuracy, worst_class_recall

    logits = predict_logits(model, x_val, transform=transform, channels_last=channels_last)
    num_classes = logits.shape[1]
    y = y_val.to(logits.device)
    return {
        "val_loss": float(nn.functional.cross_entropy(logits.float(), y)),
        "val_accuracy": accuracy(logits, y),
        "val_balanced_accuracy": float(balanced_accuracy(logits, y, num_classes)),
        "val_worst_class_recall": float(worst_class_recall(logits, y, num_classes)),
    }


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    x: torch.Tensor,
    batch_size: int = 1024,
    transform: Transform | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """Logits ``(N, C)`` (float32, on ``x``'s device) of ``model`` in eval mode, without gradients.

    ``x`` is ``(N, ...)``: floating point, or uint8 with a ``transform`` as in :func:`train`.
    The model's training/eval mode is restored afterwards.
    """
    if x.dtype == torch.uint8 and transform is None:
        raise ValueError("x is uint8: pass a transform that maps a uint8 batch to a normalised float batch")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    was_training = model.training
    model.eval()
    try:
        outs = [
            model(_prepare(x[i : i + batch_size], transform, None, None, channels_last)).float()
            for i in range(0, x.shape[0], batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(outs)


# ------------------------------------------------------------------------------------- throughput
#: The trainer variants :func:`compare_throughput` measures, name -> (batch_size, channels_last,
#: fused optimizer); each adds one change, and the last one is the setting the MNIST chapter uses.
THROUGHPUT_VARIANTS = {
    "in-memory, batch 32": (32, False, False),
    "in-memory, batch 128": (128, False, False),
    "in-memory, batch 128, channels_last": (128, True, False),
    "in-memory, batch 256, channels_last, fused AdamW": (256, True, True),
    "in-memory, batch 128, channels_last, fused AdamW": (128, True, True),
}
TUTORIAL_BASELINE = "baseline: DataLoader(ToTensor(), batch 32)"
_BENCH_RECIPE = {"lr": 3e-3, "optimizer": "adamw", "weight_decay": 1e-4, "schedule": "constant"}


def _tutorial_throughput(model_factory, loader, images: int, seed: int) -> float:
    """Images/s of the tutorial loop (data loading included) over ``images`` images."""
    torch.manual_seed(seed)
    model = model_factory()
    optimizer = make_optimizer(model, TrainConfig(fused=False, **_BENCH_RECIPE))  # the tutorials' default AdamW
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    seen, start = 0, time.perf_counter()
    for x, y in loader:
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        seen += x.shape[0]
        if seen >= images:
            break
    return seen / (time.perf_counter() - start)


def _trainer_throughput(model_factory, x, y, batch_size: int, channels_last: bool, fused: bool, seed: int) -> float:
    torch.manual_seed(seed)
    config = TrainConfig(
        epochs=1, batch_size=batch_size, channels_last=channels_last, fused=fused, seed=seed, **_BENCH_RECIPE
    )
    return train(model_factory(), nn.CrossEntropyLoss(), x, y, config, show_progress=False).images_per_second


def compare_throughput(
    model_factory: Callable[[], nn.Module], images: int = 8192, repeats: int = 3, verbose: bool = False
) -> dict[str, float]:
    """Training images/s on MNIST (CPU): the common tutorial loop versus :func:`train`, side by side.

    The baseline is ``DataLoader(torchvision.datasets.MNIST(transform=ToTensor()), batch_size=32,
    shuffle=True)`` with a plain forward/backward/step loop; the trainer variants
    (:data:`THROUGHPUT_VARIANTS`) hold the set as one normalised tensor and batch by indexing. Every
    variant trains a fresh ``model_factory()`` with the same loss and optimizer (AdamW; the baseline
    and the first variants with PyTorch's default implementation, the last ones fused) on ``images``
    images; all are measured in turn ``repeats`` times in this process and the median is kept, so a
    busy machine slows them alike.

    Returns:
        ``{TUTORIAL_BASELINE: ..., **{variant: ...}, "load_seconds": ...}`` where ``load_seconds`` is
        the one-time cost of reading MNIST into a normalised tensor (paid once per process).
    """
    import statistics

    from torch.utils.data import DataLoader
    from torchvision.datasets import MNIST
    from torchvision.transforms import ToTensor

    from helpers.datasets import data_root, load_mnist

    if images < 256 or repeats < 1:
        raise ValueError(f"need images >= 256 and repeats >= 1, got {images} and {repeats}")
    start = time.perf_counter()
    mnist = load_mnist(train=True)
    x_all = mnist.normalized()
    load_seconds = time.perf_counter() - start
    idx = torch.randperm(len(mnist), generator=torch.Generator().manual_seed(0))[:images]
    x, y = x_all[idx].contiguous(), mnist.labels[idx]
    dataset = MNIST(str(data_root()), train=True, download=False, transform=ToTensor())
    loader = DataLoader(dataset, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
    samples: dict[str, list[float]] = {TUTORIAL_BASELINE: [], **{name: [] for name in THROUGHPUT_VARIANTS}}
    _tutorial_throughput(model_factory, loader, 128, 0)  # warm-up: lazy initialisation, first batches
    _trainer_throughput(model_factory, x[:256], y[:256], 128, True, True, 0)
    for r in range(repeats):
        samples[TUTORIAL_BASELINE].append(_tutorial_throughput(model_factory, loader, images, r))
        for name, (batch_size, channels_last, fused) in THROUGHPUT_VARIANTS.items():
            samples[name].append(_trainer_throughput(model_factory, x, y, batch_size, channels_last, fused, r))
        if verbose:
            latest = ", ".join(f"{k}: {v[-1]:.0f}" for k, v in samples.items())
            print(f"repeat {r + 1}/{repeats}: {latest}", flush=True)
    result = {name: statistics.median(values) for name, values in samples.items()}
    result["load_seconds"] = load_seconds
    return result
