"""The types a long-tailed experiment passes around: what a dataset contributes, and what a run returns.

They live here, below both :mod:`helpers.longtail_data` (the dataset registry) and
:mod:`helpers.cifar` (the CIFAR-LT dataset builders), so that the dependency runs one way:
``longtail_types <- cifar <- longtail_data``. Neither module needs a run-time import of the other.

* :class:`DatasetSpec` -- a long-tailed training set, its balanced validation set, the balanced
  test set, the model factory and the training recipe of one dataset (one data seed);
* :class:`RunRecord` -- the raw result of one run (one method, one training seed, one data seed):
  metrics, per-epoch curves and the test logits, for plots and paired comparisons;
* :func:`drw_start` -- the epoch where deferred re-weighting starts (80% of training, Cao et al.), and
  :func:`drw_start_step`, the optimizer step where it starts (the runner switches at a step, so the
  switch is at 80% of the steps even when a run has only a few epochs).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from helpers.datasets import ImageSet
from helpers.train import TrainConfig

#: Fraction of training after which deferred re-weighting starts (epoch 160 of 200 in Cao et al.).
DRW_FRACTION = 0.8


def drw_start(epochs: int) -> int:
    """Epoch (from 0) where DRW starts: 80% of training, as Cao et al. (epoch 160 of 200)."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    return min(epochs - 1, int(round(DRW_FRACTION * epochs)))


def drw_start_step(epochs: int, steps_per_epoch: int) -> int:
    """Optimizer step (from 0) where DRW starts: ``round(0.8 * epochs * steps_per_epoch)``.

    With 200 epochs this is the first step of epoch 160, as in Cao et al.; with 3 epochs it is 80%
    of the steps, where :func:`drw_start` (whole epochs) would give 67%.
    """
    for name, value in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    total = epochs * steps_per_epoch
    return min(total - 1, int(round(DRW_FRACTION * total)))


@dataclass
class DatasetSpec:
    """Everything a dataset contributes to an experiment, for one data seed.

    Attributes:
        train: the long-tailed training set.
        val: balanced validation set (training images left out by the subsampling).
        test: the balanced test set.
        counts: training examples per class.
        model_factory: builds a fresh, untrained model.
        config: the training recipe (seed is replaced per run).
        transform: maps a uint8 batch to a normalised float batch on the device; None means
            :func:`helpers.longtail_runner.run_experiment` normalises the whole set once with
            :meth:`ImageSet.normalized`.
        augment: batch augmentation ``(batch, generator) -> batch`` or None.
        drw_start_epoch: first epoch (from 0) of deferred re-weighting in whole epochs (reported;
            :mod:`helpers.longtail_runner` switches at :func:`drw_start_step` instead).
        description: one line describing the setting.
    """

    train: ImageSet
    val: ImageSet
    test: ImageSet
    counts: list[int]
    model_factory: Callable[[], nn.Module]
    config: TrainConfig
    transform: Callable[[torch.Tensor], torch.Tensor] | None
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None
    drw_start_epoch: int
    description: str


@dataclass
class RunRecord:
    """The raw result of one run, for plots and paired comparisons.

    Attributes:
        method: registry name of the method.
        seed: training seed (initialisation, batch order, resampling, augmentation).
        metrics: test metrics (:data:`helpers.longtail_runner.METRICS`), plus ``val_*`` versions on the
            validation set.
        history: per-epoch curves from :func:`helpers.train.train` (a post-hoc method carries its
            base model's).
        test_logits: ``(N_test, C)`` float32 on the CPU.
        test_targets: ``(N_test,)`` int64 on the CPU.
        counts: training examples per class.
        seconds: training time; images_per_second: training throughput.
        diverged: the training loss became non-finite.
        extra: run details (``config``, ``drw_start_epoch``, ``val_logits``, ``data_source``: ``"real"``,
            ``"synthetic"`` for the CIFAR stand-in or ``"user tensors"``; a post-hoc method's chosen knob
            such as ``tau``...).
        data_seed: seed of the long-tailed draw and of the validation split this run saw. Runs
            with the same ``(seed, data_seed)`` are paired.
    """

    method: str
    seed: int
    metrics: dict[str, float]
    history: dict[str, list[float]]
    test_logits: torch.Tensor
    test_targets: torch.Tensor
    counts: list[int]
    seconds: float = 0.0
    images_per_second: float = math.nan
    diverged: bool = False
    extra: dict = field(default_factory=dict)
    data_seed: int = 0

    @property
    def pair(self) -> tuple[int, int]:
        """``(seed, data_seed)``: the key that pairs runs of different methods."""
        return (self.seed, self.data_seed)


__all__ = ["DRW_FRACTION", "DatasetSpec", "RunRecord", "drw_start", "drw_start_step"]
