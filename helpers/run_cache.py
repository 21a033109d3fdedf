"""A cache of training runs for knob sweeps: each distinct setting trains once per seed.

Chapter 7 sweeps the knob of each long-tail loss (:data:`KINDS`) and searches the logit-adjusted
loss's ``tau`` together with the learning rate and the weight decay. Many knob values name the same
training run:

* focal ``gamma = 0``, class-balanced ``beta = 0`` and logit-adjusted ``tau = 0`` are plain
  cross-entropy (``FocalLoss`` with ``gamma = 0`` is ``-log p_y``; ``(1 - 0) / (1 - 0^n) = 1`` for
  every class; the adjustment ``tau log pi_c`` vanishes);
* deferred re-weighting (DRW) that starts at epoch 0 is class-balanced cross-entropy with
  ``beta = cb_beta`` from the first step, and DRW that starts at or after the last epoch never
  re-weights: plain cross-entropy.

:func:`canonical_setting` maps a knob value to the distinct setting it names, :func:`build_setting`
builds the model, the loss and the DRW schedule of a setting, and :class:`RunCache` trains each
distinct ``(setting, seed, learning rate, weight decay)`` once, keeping the model and its validation
logits. Test logits are computed only when asked for (:meth:`RunCache.test_logits`), so a chapter
can keep its test set sealed until the end.

Seeds are *paired*: run seed ``s`` trains on the long-tailed subset drawn with data seed ``s``
(``make_spec(s)``) and initialises and shuffles with training seed ``s``. The spread over seeds
therefore covers which tail images were drawn as well as the training noise, and two settings run
with the same seed share both, so their paired difference cancels what they share
(:func:`helpers.stats.paired_difference`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

from helpers.longtail_methods import CB_BETA, LDAM_SCALE
from helpers.longtail_types import DatasetSpec
from helpers.losses import DeferredReweighting, FocalLoss, LDAMLoss, LogitAdjustedLoss, class_balanced_weights
from helpers.metrics import balanced_accuracy
from helpers.models import use_normed_head
from helpers.train import predict_logits, train

__all__ = ["KINDS", "RunCache", "RunKey", "build_setting", "canonical_setting"]

#: The knobbed losses: name -> what its value means.
KINDS: dict[str, str] = {
    "ce": "plain cross-entropy (value None)",
    "focal": "focal loss, value = gamma >= 0",
    "cb": "cross-entropy with class-balanced weights, value = beta in [0, 1)",
    "la": "logit-adjusted loss, value = tau >= 0",
    "ldam": "LDAM with a cosine last layer, value = largest margin >= 0",
    "drw": "cross-entropy with deferred class-balanced re-weighting, value = first re-weighted epoch (int >= 0)",
}


def _check_value(kind: str, value: float | int | None) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    if kind == "ce":
        if value is not None:
            raise ValueError(f"kind 'ce' has no knob: value must be None, got {value!r}")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"value of kind {kind!r} must be a finite number >= 0 ({KINDS[kind]}), got {value!r}")
    if kind == "cb" and not value < 1:
        raise ValueError(f"value of kind 'cb' is beta and must be in [0, 1), got {value!r}")
    if kind == "drw" and int(value) != value:
        raise ValueError(f"value of kind 'drw' is an epoch and must be a whole number, got {value!r}")


def canonical_setting(kind: str, value: float | int | None, epochs: int,
                      cb_beta: float = CB_BETA) -> tuple[str, float | int | None]:
    """The distinct training setting ``(kind, value)`` behind one knob value.

    Args:
        kind: a key of :data:`KINDS`.
        value: the knob's value (None for ``"ce"``).
        epochs: the number of training epochs (DRW from ``epochs`` on never re-weights).
        cb_beta: the ``beta`` of DRW's class-balanced weights.

    Returns:
        ``("ce", None)`` for every value that trains plain cross-entropy, ``("cb", cb_beta)`` for
        DRW from epoch 0, otherwise ``(kind, value)``.

    Raises:
        ValueError: on an unknown kind or a value outside the kind's range.
    """
    _check_value(kind, value)
    if kind == "ce" or (kind in ("focal", "cb", "la") and value == 0) or (kind == "drw" and value >= epochs):
        return ("ce", None)
    if kind == "drw" and value == 0:
        return ("cb", cb_beta)
    if kind == "drw":
        return ("drw", int(value))
    return (kind, float(value))


def build_setting(kind: str, value: float | int | None, model_factory: Callable[[], nn.Module],
                  counts: torch.Tensor, *, cb_beta: float = CB_BETA, ldam_scale: float = LDAM_SCALE,
                  device: torch.device | str | None = None) -> tuple[nn.Module, nn.Module, DeferredReweighting | None]:
    """A fresh model, the loss of one knob setting, and its DRW schedule (None if it has none).

    Args:
        kind, value: the setting (see :data:`KINDS`).
        model_factory: builds a fresh, untrained model (call ``torch.manual_seed`` first).
        counts: training examples per class, shape ``(C,)``.
        cb_beta: ``beta`` of DRW's class-balanced weights.
        ldam_scale: LDAM's scale ``s`` of the cosine logits; LDAM also replaces the model's last
            linear layer by a cosine classifier (:func:`helpers.models.use_normed_head`), as in
            :mod:`helpers.longtail_methods`.
        device: where the loss (and DRW's weights) will live (default: the CPU).
    """
    _check_value(kind, value)
    counts = torch.as_tensor(counts, dtype=torch.float64)
    if counts.dim() != 1:
        raise ValueError(f"counts must have shape (C,), got {tuple(counts.shape)}")
    model, drw = model_factory(), None
    if kind == "ce":
        loss: nn.Module = nn.CrossEntropyLoss()
    elif kind == "focal":
        loss = FocalLoss(gamma=float(value))
    elif kind == "cb":
        loss = nn.CrossEntropyLoss(weight=class_balanced_weights(counts, float(value)))
    elif kind == "la":
        loss = LogitAdjustedLoss(counts, tau=float(value))
    elif kind == "ldam":
        loss = LDAMLoss(counts, max_margin=float(value), scale=ldam_scale)
        use_normed_head(model)
    else:  # drw
        loss = nn.CrossEntropyLoss()
        drw = DeferredReweighting(class_balanced_weights(counts, cb_beta).to(device), start_epoch=int(value))
    return model, loss.to(device), drw


@dataclass(frozen=True)
class RunKey:
    """One training run: its distinct setting, its (paired data and training) seed and its optimizer knobs."""

    kind: str
    value: float | int | None
    seed: int
    lr: float
    weight_decay: float


@dataclass
class _Run:
    model: nn.Module
    val_logits: torch.Tensor
    seconds: float
    cpu_seconds: float
    test_logits: torch.Tensor | None = None


class RunCache:
    """Train each distinct knob setting once per seed; keep its model and validation logits.

    Args:
        make_spec: ``data_seed -> DatasetSpec`` (e.g. ``lambda s: mnist_spec(100, "exp", seed=s)``);
            called once per seed. Every spec must have the same number of epochs.
        device: where to train (default: the CPU).
        cb_beta: ``beta`` of DRW's class-balanced weights.

    ``fit(kind, value, seed)`` trains the run (or finds it) and returns its validation balanced
    accuracy; ``lr`` and ``weight_decay`` default to the spec's recipe. ``len(cache)`` is the number
    of runs trained so far, :attr:`seconds` their total training time.
    """

    def __init__(self, make_spec: Callable[[int], DatasetSpec], device: torch.device | str | None = None,
                 cb_beta: float = CB_BETA) -> None:
        if not callable(make_spec):
            raise TypeError(f"make_spec must be a callable data_seed -> DatasetSpec, got {type(make_spec).__name__}")
        self._make_spec = make_spec
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.cb_beta = cb_beta
        self._specs: dict[int, DatasetSpec] = {}
        self._data: dict[int, dict[str, torch.Tensor]] = {}
        self._runs: dict[RunKey, _Run] = {}

    # ------------------------------------------------------------------ data
    def spec(self, seed: int) -> DatasetSpec:
        """The dataset drawn with data seed ``seed`` (built once)."""
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        if seed not in self._specs:
            spec = self._make_spec(seed)
            if not isinstance(spec, DatasetSpec):
                raise TypeError(f"make_spec({seed}) must return a DatasetSpec, got {type(spec).__name__}")
            if self._specs and spec.config.epochs != self.epochs:
                raise ValueError(f"make_spec({seed}) trains {spec.config.epochs} epochs, the others {self.epochs}")
            self._specs[seed] = spec
        return self._specs[seed]

    @property
    def epochs(self) -> int:
        """Training epochs of every run (from the first spec built)."""
        if not self._specs:
            raise ValueError("no spec built yet: call spec(seed) or fit(...) first")
        return next(iter(self._specs.values())).config.epochs

    def counts(self, seed: int) -> torch.Tensor:
        """Training examples per class of seed ``seed``'s subset, ``float64`` ``(C,)``."""
        return torch.tensor(self.spec(seed).counts, dtype=torch.float64)

    def _tensors(self, seed: int) -> dict[str, torch.Tensor]:
        if seed not in self._data:
            spec = self.spec(seed)
            self._data[seed] = {
                "x_train": spec.train.normalized(self.device), "y_train": spec.train.labels.to(self.device),
                "x_val": spec.val.normalized(self.device), "y_val": spec.val.labels.to(self.device),
            }
        return self._data[seed]

    def val_labels(self, seed: int) -> torch.Tensor:
        """Validation labels of seed ``seed`` (on the cache's device)."""
        return self._tensors(seed)["y_val"]

    def test_labels(self, seed: int) -> torch.Tensor:
        """Test labels of seed ``seed``'s spec (on the cache's device)."""
        return self.spec(seed).test.labels.to(self.device)

    # ------------------------------------------------------------------ runs
    def key(self, kind: str, value: float | int | None, seed: int, lr: float | None = None,
            weight_decay: float | None = None) -> RunKey:
        """The cache key of a run: its distinct setting, seed, learning rate and weight decay."""
        spec = self.spec(seed)
        setting = canonical_setting(kind, value, spec.config.epochs, self.cb_beta)
        lr = spec.config.lr if lr is None else float(lr)
        weight_decay = spec.config.weight_decay if weight_decay is None else float(weight_decay)
        return RunKey(*setting, seed, lr, weight_decay)

    def __len__(self) -> int:
        return len(self._runs)

    def __contains__(self, key: RunKey) -> bool:
        return key in self._runs

    @property
    def keys(self) -> list[RunKey]:
        """Every trained run, in training order."""
        return list(self._runs)

    @property
    def seconds(self) -> float:
        """Total wall-clock training time of the runs so far."""
        return sum(r.seconds for r in self._runs.values())

    @property
    def cpu_seconds(self) -> float:
        """Total CPU time (all threads of this process) spent training the runs so far."""
        return sum(r.cpu_seconds for r in self._runs.values())

    def _run(self, kind, value, seed, lr=None, weight_decay=None) -> tuple[RunKey, _Run]:
        key = self.key(kind, value, seed, lr, weight_decay)
        if key not in self._runs:
            spec, data = self.spec(seed), self._tensors(seed)
            config = replace(spec.config, seed=seed, lr=key.lr, weight_decay=key.weight_decay)
            torch.manual_seed(seed)
            model, loss, drw = build_setting(key.kind, key.value, spec.model_factory, self.counts(seed),
                                             cb_beta=self.cb_beta, device=self.device)
            start, cpu = time.perf_counter(), time.process_time()
            train(model, loss, data["x_train"], data["y_train"], config, show_progress=False,
                  on_epoch_start=(lambda epoch: drw(loss, epoch)) if drw is not None else None)
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
            self._runs[key] = _Run(model, predict_logits(model, data["x_val"]), seconds, cpu_seconds)
        return key, self._runs[key]

    def fit(self, kind: str, value: float | int | None, seed: int, lr: float | None = None,
            weight_decay: float | None = None) -> float:
        """Train (or find) one run; return its validation balanced accuracy."""
        _, run = self._run(kind, value, seed, lr, weight_decay)
        return balanced_accuracy(run.val_logits, self.val_labels(seed), run.val_logits.shape[1])

    def val_logits(self, kind: str, value: float | int | None, seed: int, lr: float | None = None,
                   weight_decay: float | None = None) -> torch.Tensor:
        """Validation logits ``(N_val, C)`` of a run (trained first if needed)."""
        return self._run(kind, value, seed, lr, weight_decay)[1].val_logits

    def model(self, kind: str, value: float | int | None, seed: int, lr: float | None = None,
              weight_decay: float | None = None) -> nn.Module:
        """The trained model of a run (trained first if needed)."""
        return self._run(kind, value, seed, lr, weight_decay)[1].model

    def test_logits(self, kind: str, value: float | int | None, seed: int, lr: float | None = None,
                    weight_decay: float | None = None) -> torch.Tensor:
        """Test logits ``(N_test, C)`` of an already trained run, computed once on first request.

        Raises:
            KeyError: if the run was never trained (reading the test set must not start training).
        """
        key = self.key(kind, value, seed, lr, weight_decay)
        if key not in self._runs:
            raise KeyError(f"no trained run {key}; train it with fit() before reading the test set")
        run = self._runs[key]
        if run.test_logits is None:
            data = self._tensors(seed)
            if "x_test" not in data:
                data["x_test"] = self.spec(seed).test.normalized(self.device)
            run.test_logits = predict_logits(run.model, data["x_test"])
        return run.test_logits
