"""Long-tailed experiments: the methods, the datasets, a runner that returns a tidy table, paired comparisons, a CLI.

One *run* trains one model with one method on a long-tailed training set
(:mod:`helpers.imbalance`), then scores it on the untouched, balanced test set with
:func:`helpers.metrics.classification_report`. :func:`run_experiment` loops over methods x seeds and
returns one row per run. A run's seed fixes both its *data seed* (which images the long-tailed draw
keeps, and which left-out images form the balanced validation set) and its *training seed*
(initialisation, batch order, resampling, augmentation): pair ``i`` uses data seed ``i`` and training
seed ``i``, so the spread over seeds covers both sources of variance (``data_seed=k`` keeps the data
fixed instead). Runs of different methods with the same ``(seed, data_seed)`` are *paired*:
:func:`paired_table` compares every method with cross-entropy by paired differences with a Student-t
interval over the pairs (:mod:`helpers.stats`), and names the set of methods that cannot be told apart
from the best on the *validation* set.

Every method's hyperparameters come from its paper (see :data:`METHODS`), never from the test set:
logit adjustment ``tau = 1`` (Menon et al.), focal ``gamma`` in {1, 2} (Lin et al.), class-balanced
``beta = 0.9999`` (Cui et al.), LDAM maximum margin 0.5 with scale 30 and a cosine (normalised)
last layer, deferred re-weighting from 80% of the epochs with class-balanced weights (Cao et al.).
Post-hoc and decoupled methods (``posthoc_la``, ``crt``, ``tau_norm``; Menon et al., Kang et al.)
re-use the trained cross-entropy model of the same pair: they cost no backbone training.

Command line (``python -m helpers.experiments --help`` documents every flag)::

    python -m helpers.experiments --dataset mnist --imbalance 100 --profile exp \\
        --methods ce,focal_g2,ldam_drw,crt,tau_norm --seeds 0,1,2 --out results.json

records each finished run in the JSON file as it completes (atomically, :mod:`helpers.results_store`),
resumes from the finished runs when rerun with the same arguments, and refuses to overwrite a file
of different arguments without ``--force``. The file holds the configuration, one metrics record
per run, the per-epoch curves and provenance (date, torch version, device, git commit).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import platform
import subprocess
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from helpers.cifar import PROTOCOLS, cifar10_spec, cifar100_spec
from helpers.class_balanced import ClassBalancedSigmoidFocalLoss, effective_number_sampling, init_prior_bias
from helpers.datasets import ImageSet, load_mnist
from helpers.decoupling import (
    choose_tau,
    classifier_retraining,
    last_linear,
    penultimate_features,
    tau_normalized_logits,
)
from helpers.imbalance import PROFILES, make_imbalanced, make_imbalanced_tensors
from helpers.longtail_types import DRW_FRACTION, DatasetSpec, RunRecord, drw_start
from helpers.losses import (
    BalancedSoftmaxLoss,
    DeferredReweighting,
    FocalLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    class_balanced_weights,
    inverse_frequency_weights,
    posthoc_logit_adjustment,
)
from helpers.metrics import classification_report, describe_groups
from helpers.models import MnistNet, use_normed_head
from helpers.results_store import ResultsConflictError, ResultsStore
from helpers.runtime import pick_device, progress, quick_mode
from helpers.stats import QUICK_VERDICT, indistinguishable_from_best, paired_difference, verdict
from helpers.train import TrainConfig, predict_logits, train

__all__ = [
    "CB_BETA", "DATASETS", "DRW_FRACTION", "DatasetSpec", "ExperimentConfigError", "LA_TAU", "LDAM_MAX_MARGIN",
    "LDAM_SCALE", "METHODS", "METRICS", "MNIST_RECIPES", "Method", "PosthocInput", "RunRecord", "check_methods",
    "drw_start", "main", "mnist_config", "mnist_spec", "paired_stats", "paired_table", "run_experiment",
    "summarize", "val_best_set",
]  # fmt: skip

#: Paper values shared by several methods.
CB_BETA = 0.9999
LA_TAU = 1.0
LDAM_MAX_MARGIN = 0.5
LDAM_SCALE = 30.0
CB_FOCAL_GAMMA = 1.0

#: Metrics reported for every run (keys of :func:`helpers.metrics.classification_report`); the rows
#: also hold ``head_recall`` / ``tail_recall``, older names of ``many_recall`` / ``few_recall``.
METRICS = (
    "accuracy",
    "balanced_accuracy",
    "worst_class_recall",
    "macro_f1",
    "many_recall",
    "medium_recall",
    "few_recall",
    "ece",
    "nll",
)

LossBuild = tuple[nn.Module, "DeferredReweighting | None"]


class ExperimentConfigError(ValueError):
    """The experiment's arguments cannot build its data (e.g. an imbalance that empties a class)."""


# --------------------------------------------------------------------------------------------- methods
@dataclass
class PosthocInput:
    """What a post-hoc or decoupled method gets from its base run (same pair, same data).

    Attributes:
        model: the trained base model (eval it, do not train it).
        base: the base run's :class:`RunRecord` (test logits, ``extra["val_logits"]``).
        data: ``x_train, y_train, x_val, y_val, x_test, y_test`` tensors on the device.
        transform: the batch transform of the data (None for float tensors).
        counts: training examples per class.
        seed: the pair's training seed.
        channels_last: whether the model runs in ``channels_last``.
    """

    model: nn.Module
    base: RunRecord
    data: dict[str, torch.Tensor]
    transform: Callable[[torch.Tensor], torch.Tensor] | None
    counts: list[int]
    seed: int
    channels_last: bool = False
    _features: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def features(self, split: str) -> torch.Tensor:
        """Penultimate features of ``x_<split>`` (``train``, ``val`` or ``test``) under the base model.

        Computed once per split and shared by every method derived from the same base run.
        """
        if split not in self._features:
            self._features[split] = penultimate_features(self.model, self.data[f"x_{split}"], self.transform,
                                                         channels_last=self.channels_last)  # fmt: skip
        return self._features[split]


#: ``PosthocInput -> (test_logits, val_logits, extra)``, logits ``(N, C)`` float32 on the CPU.
Posthoc = Callable[[PosthocInput], tuple[torch.Tensor, torch.Tensor, dict]]


@dataclass(frozen=True)
class Method:
    """How one long-tail method trains: its loss, sampling, last layer, and post-hoc correction.

    Attributes:
        name: registry key (``--methods`` in the CLI).
        description: one line for tables and ``--help``.
        cite: bibliography key of its paper (``book/references.bib``), or "".
        make_loss: ``(class_counts (C,) float64, drw_start_epoch, device) -> (loss_fn, drw or None)``.
        balanced_sampling: train with class-balanced resampling (every class equally likely per draw).
        sampling: ``class_counts -> per-class weight of each example`` for resampling with
            replacement (:attr:`helpers.train.TrainConfig.sampling_weights`), or None.
        normed_head: replace the model's last linear layer by a cosine classifier (LDAM's setting).
        init_model: ``(model, class_counts)`` called on the fresh model before training (e.g. the
            prior bias of Cui et al.'s sigmoid losses), or None.
        posthoc_of: name of the method whose trained model this one re-uses (no backbone training
            of its own); ``posthoc`` computes its logits.
        posthoc: see :data:`Posthoc`.
        logit_scale: factor applied to the model's outputs before scoring, so that probabilities
            (calibration, NLL) are the ones the loss trained: LDAM's scale ``s`` for its cosine
            logits in [-1, 1]. Predictions (argmax) do not change.
    """

    name: str
    description: str
    cite: str
    make_loss: Callable[[torch.Tensor, int, torch.device], LossBuild]
    balanced_sampling: bool = False
    sampling: Callable[[torch.Tensor], torch.Tensor] | None = None
    normed_head: bool = False
    init_model: Callable[[nn.Module, torch.Tensor], object] | None = None
    posthoc_of: str | None = None
    posthoc: Posthoc | None = None
    logit_scale: float = 1.0


def _ce(counts, start, device):
    return nn.CrossEntropyLoss(), None


def _drw(loss: nn.Module, counts: torch.Tensor, start: int, device: torch.device) -> LossBuild:
    return loss, DeferredReweighting(class_balanced_weights(counts, CB_BETA).to(device), start)


def _posthoc_la(inp: PosthocInput) -> tuple[torch.Tensor, torch.Tensor, dict]:
    return (
        posthoc_logit_adjustment(inp.base.test_logits, inp.counts, tau=LA_TAU),
        posthoc_logit_adjustment(inp.base.extra["val_logits"], inp.counts, tau=LA_TAU),
        {"tau": LA_TAU},
    )


def _crt(inp: PosthocInput) -> tuple[torch.Tensor, torch.Tensor, dict]:
    head = classifier_retraining(
        inp.features("train"), inp.data["y_train"], len(inp.counts), seed=inp.seed
    )
    with torch.no_grad():
        test, val = head(inp.features("test")), head(inp.features("val"))
    return test.float().cpu(), val.float().cpu(), {}


def _tau_norm(inp: PosthocInput) -> tuple[torch.Tensor, torch.Tensor, dict]:
    weight = last_linear(inp.model).weight
    scale = float(getattr(inp.model, "logit_scale", 1.0))
    val_features, test_features = inp.features("val"), inp.features("test")
    tau, scores = choose_tau(val_features, inp.data["y_val"], weight)
    test = scale * tau_normalized_logits(test_features, weight, tau)
    val = scale * tau_normalized_logits(val_features, weight, tau)
    return test.float().cpu(), val.float().cpu(), {"tau": tau, "tau_val_balanced_accuracy": scores}


def _method_list() -> list[Method]:
    cb = lambda counts: class_balanced_weights(counts, CB_BETA)
    return [
        Method("ce", "cross-entropy", "", _ce),
        Method(
            "ce_inv",
            "cross-entropy, inverse-frequency class weights",
            "cui2019classbalanced",
            lambda c, s, d: (nn.CrossEntropyLoss(weight=inverse_frequency_weights(c)), None),
        ),
        Method(
            "ce_cb",
            f"cross-entropy, class-balanced weights (beta={CB_BETA}): Cui et al.'s softmax CB re-weighting (CB RW)",
            "cui2019classbalanced",
            lambda c, s, d: (nn.CrossEntropyLoss(weight=cb(c)), None),
        ),
        Method(
            "resample", "cross-entropy, class-balanced resampling (every class 1/C per draw)", "", _ce,
            balanced_sampling=True,
        ),
        Method(
            "cb_resample",
            f"cross-entropy, effective-number resampling (beta={CB_BETA}): Cao et al.'s CB RS",
            "cao2019ldam",
            _ce,
            sampling=lambda c: effective_number_sampling(c, CB_BETA),
        ),
        Method("focal_g1", "focal loss, gamma=1", "lin2017focal", lambda c, s, d: (FocalLoss(gamma=1.0), None)),
        Method("focal_g2", "focal loss, gamma=2", "lin2017focal", lambda c, s, d: (FocalLoss(gamma=2.0), None)),
        Method(
            "cb_focal",
            f"softmax focal loss, gamma=1, alpha = class-balanced weights (beta={CB_BETA}); NOT Cui et al.'s CB Focal",
            "cui2019classbalanced",
            lambda c, s, d: (FocalLoss(gamma=1.0, alpha=cb(c)), None),
        ),
        Method(
            "cb_focal_sigmoid",
            f"Cui et al.'s CB Focal: sigmoid focal loss, gamma={CB_FOCAL_GAMMA:g}, class-balanced weights "
            f"(beta={CB_BETA}), sum over classes / number of positives, last bias -log(C-1)",
            "cui2019classbalanced",
            lambda c, s, d: (ClassBalancedSigmoidFocalLoss(c, beta=CB_BETA, gamma=CB_FOCAL_GAMMA), None),
            init_model=lambda model, counts: init_prior_bias(model),
        ),
        Method(
            "ldam",
            f"LDAM, max margin {LDAM_MAX_MARGIN}, scale {LDAM_SCALE:g}, cosine last layer",
            "cao2019ldam",
            lambda c, s, d: (LDAMLoss(c, max_margin=LDAM_MAX_MARGIN, scale=LDAM_SCALE), None),
            normed_head=True,
            logit_scale=LDAM_SCALE,
        ),
        Method(
            "ldam_drw",
            "LDAM with deferred class-balanced re-weighting",
            "cao2019ldam",
            lambda c, s, d: _drw(LDAMLoss(c, max_margin=LDAM_MAX_MARGIN, scale=LDAM_SCALE), c, s, d),
            normed_head=True,
            logit_scale=LDAM_SCALE,
        ),
        Method(
            "ce_drw",
            "cross-entropy with deferred class-balanced re-weighting",
            "cao2019ldam",
            lambda c, s, d: _drw(nn.CrossEntropyLoss(), c, s, d),
        ),
        Method(
            "la_loss",
            f"logit-adjusted loss, tau={LA_TAU:g}",
            "menon2021logitadjustment",
            lambda c, s, d: (LogitAdjustedLoss(c, tau=LA_TAU), None),
        ),
        Method(
            "balanced_softmax",
            "balanced softmax",
            "ren2020balancedsoftmax",
            lambda c, s, d: (BalancedSoftmaxLoss(c), None),
        ),
        Method(
            "posthoc_la",
            f"cross-entropy model, post-hoc logit adjustment (tau={LA_TAU:g})",
            "menon2021logitadjustment",
            _ce,
            posthoc_of="ce",
            posthoc=_posthoc_la,
        ),
        Method(
            "crt",
            "cross-entropy model, classifier re-trained on frozen features with class-balanced sampling (cRT)",
            "kang2020decoupling",
            _ce,
            posthoc_of="ce",
            posthoc=_crt,
        ),
        Method(
            "tau_norm",
            "cross-entropy model, classifier weights divided by norm^tau, tau chosen on validation (tau-norm)",
            "kang2020decoupling",
            _ce,
            posthoc_of="ce",
            posthoc=_tau_norm,
        ),
    ]


#: Registry of the compared methods, name -> :class:`Method`.
METHODS: dict[str, Method] = {m.name: m for m in _method_list()}


def check_methods(methods: str | Sequence[str]) -> list[str]:
    """Validate method names (a comma-separated string or a sequence); return them as a list.

    Raises:
        ValueError: naming every unknown method and listing the valid ones, or on an empty or
            repeated list.
    """
    names = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else list(methods)
    if not names or any(not isinstance(n, str) or not n for n in names):
        raise ValueError(f"methods must be a non-empty list of names from {sorted(METHODS)}, got {methods!r}")
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(map(repr, unknown))}; choose from {', '.join(METHODS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"methods must not repeat, got {names}")
    return names


# -------------------------------------------------------------------------------------------- datasets
#: Head-class size of the MNIST long-tailed sets (quick mode: 300): large enough to learn, small
#: enough for the chapter's time budget.
MNIST_N_MAX = 2000
#: Training budget of one MNIST run, in images seen (quick mode: one epoch): the number of epochs is
#: this divided by the training-set size, so a smaller long-tailed set is passed over more often and
#: every setting gets about the same number of optimizer steps.
MNIST_IMAGES_PER_RUN = 25_000
#: The MNIST training recipes (:func:`mnist_config`): the book's AdamW recipe, and the papers' plain
#: SGD with momentum, without and with a linear warm-up (for the instability study of chapter 4).
MNIST_RECIPES = ("adamw", "sgd", "sgd_warmup")
#: Base learning rate of the SGD recipes (Cao et al. and Cui et al. use 0.1 with batch 128 on CIFAR).
MNIST_SGD_LR = 0.1


def mnist_epochs(n_train: int, images: int = MNIST_IMAGES_PER_RUN) -> int:
    """Epochs that show about ``images`` training images (at least 2; 1 in quick mode)."""
    if quick_mode():
        return 1
    return max(2, round(images / n_train))


def mnist_config(
    epochs: int, seed: int = 0, recipe: str = "adamw", lr: float | None = None, warmup_epochs: float | None = None
) -> TrainConfig:
    """An MNIST training recipe; ``"adamw"`` (default) was fixed for plain cross-entropy on the validation split.

    * ``"adamw"``: AdamW, learning rate 3e-3 with a warm-up of half an epoch (of the whole run when
      it has one epoch) and cosine decay, weight decay 1e-4;
    * ``"sgd"``: the papers' optimizer (Cao et al., Cui et al.): SGD with momentum 0.9, learning rate
      :data:`MNIST_SGD_LR` from the first step (no warm-up), cosine decay, weight decay 2e-4;
    * ``"sgd_warmup"``: the same with a linear warm-up over the first epoch (half the run if it has
      fewer than 2 epochs); Cao et al. warm up for 5 of 200 epochs.

    All use batches of 128 in ``channels_last``. ``lr`` and ``warmup_epochs`` override the recipe's.
    """
    if recipe not in MNIST_RECIPES:
        raise ValueError(f"recipe must be one of {MNIST_RECIPES}, got {recipe!r}")
    if recipe == "adamw":
        base = dict(lr=3e-3, optimizer="adamw", weight_decay=1e-4, warmup_epochs=min(0.5, epochs / 2))
    else:
        warm = min(1.0, epochs / 2) if recipe == "sgd_warmup" else 0.0
        base = dict(lr=MNIST_SGD_LR, optimizer="sgd", momentum=0.9, weight_decay=2e-4, warmup_epochs=warm)
    if lr is not None:
        base["lr"] = lr
    if warmup_epochs is not None:
        base["warmup_epochs"] = warmup_epochs
    return TrainConfig(epochs=epochs, batch_size=128, schedule="cosine", channels_last=True, seed=seed, **base)


def mnist_spec(
    imbalance_ratio: float = 100,
    profile: str = "exp",
    seed: int = 0,
    epochs: int | None = None,
    protocol: str | None = None,
    device: torch.device | str | None = None,
    n_max: int | None = None,
    val_per_class: int | None = None,
    recipe: str = "adamw",
    lr: float | None = None,
) -> DatasetSpec:
    """Long-tailed real MNIST with :class:`helpers.models.MnistNet` and :func:`mnist_config`.

    Args:
        imbalance_ratio, profile: the long-tailed profile (:func:`helpers.imbalance.long_tailed_counts`).
        seed: data seed of the subsampling and of the validation draw.
        epochs: training epochs (default: :func:`mnist_epochs` of the training-set size).
        protocol: only ``None`` or ``"default"`` (MNIST has one protocol).
        device: unused here (:func:`run_experiment` moves the data); accepted for a common signature.
        n_max: head-class size (default :data:`MNIST_N_MAX`; 300 in quick mode).
        val_per_class: balanced validation examples per class (default 100; 20 in quick mode).
        recipe, lr: the training recipe (:data:`MNIST_RECIPES`) and an optional learning rate.

    In quick mode the test set is cut to its first 1,000 images.
    """
    if protocol not in (None, "default"):
        raise ValueError(f"dataset 'mnist' has only the protocol 'default', got {protocol!r}")
    quick = quick_mode()
    n_max = n_max if n_max is not None else (300 if quick else MNIST_N_MAX)
    val_per_class = val_per_class if val_per_class is not None else (20 if quick else 100)
    split = make_imbalanced(load_mnist(train=True), imbalance_ratio, profile, n_max, val_per_class, seed)
    test = load_mnist(train=False)
    if quick:
        test = test.subset(torch.arange(1000), name=test.name + "-first1000")
    config = mnist_config(epochs if epochs is not None else mnist_epochs(len(split.train)), recipe=recipe, lr=lr)
    return DatasetSpec(
        train=split.train,
        val=split.val,
        test=test,
        counts=split.counts,
        model_factory=lambda: MnistNet(in_channels=1, num_classes=10),
        config=config,
        transform=None,
        augment=None,
        drw_start_epoch=drw_start(config.epochs),
        description=(
            f"MNIST-LT ({profile}, imbalance {imbalance_ratio:g}, {len(split.train)} training images, "
            f"head class {n_max}, data seed {seed}), MnistNet, {config.epochs} epochs, recipe {recipe!r}"
        ),
    )


#: Registry of dataset builders, name -> ``builder(imbalance_ratio, profile, seed, epochs, protocol, device, ...)``.
DATASETS: dict[str, Callable[..., DatasetSpec]] = {
    "mnist": mnist_spec, "cifar10": cifar10_spec, "cifar100": cifar100_spec,
}  # fmt: skip
#: The protocols each registered dataset accepts (the CLI checks ``--protocol`` against them).
DATASET_PROTOCOLS: dict[str, tuple[str, ...]] = {
    "mnist": ("default",), "cifar10": tuple(PROTOCOLS), "cifar100": tuple(PROTOCOLS),
}  # fmt: skip


# ---------------------------------------------------------------------------------------------- runner
def _check_seeds(seeds: Sequence[int]) -> list[int]:
    seeds = list(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"seeds must be a non-empty list of non-negative ints, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must not repeat, got {seeds}")
    return seeds


@dataclass
class _PairData:
    """The tensors and recipe of one data seed."""

    data_seed: int
    data: dict[str, torch.Tensor]
    counts: list[int]
    factory: Callable[[], nn.Module]
    config: TrainConfig
    transform: Callable[[torch.Tensor], torch.Tensor] | None
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None
    drw_start_epoch: int
    description: str


def _named_pair_data(
    dataset: str, data_seed: int, device: torch.device, model_factory, config, epochs, spec_args: dict, announce: bool
) -> _PairData:
    try:
        spec = DATASETS[dataset](seed=data_seed, epochs=epochs, device=device, **spec_args)
    except ValueError as err:
        raise ExperimentConfigError(f"dataset {dataset!r}: {err}") from err
    if announce:
        spec.train.announce()
    transform = spec.transform

    def tensors(s: ImageSet) -> torch.Tensor:
        return s.images.to(device) if transform is not None else s.normalized(device)

    data = {
        "x_train": tensors(spec.train), "y_train": spec.train.labels.to(device),
        "x_val": tensors(spec.val), "y_val": spec.val.labels.to(device),
        "x_test": tensors(spec.test), "y_test": spec.test.labels.to(device),
    }  # fmt: skip
    cfg = config or spec.config
    start = spec.drw_start_epoch
    if epochs is not None and cfg.epochs != epochs:
        cfg = replace(cfg, epochs=epochs)
    if config is not None or epochs is not None:
        start = drw_start(cfg.epochs)
    return _PairData(data_seed, data, list(spec.counts), model_factory or spec.model_factory, cfg, transform,
                     spec.augment, start, spec.description)  # fmt: skip


def tensors_spec(
    data: Sequence[torch.Tensor],
    imbalance_ratio: float,
    profile: str,
    seed: int,
    n_max: int | None = None,
    val_per_class: int = 100,
) -> tuple[dict[str, torch.Tensor], list[int]]:
    """Split user tensors ``(X_train, y_train, X_test, y_test)`` into long-tailed train, val and test.

    ``seed`` is the data seed of the long-tailed draw and of the balanced validation draw.
    Returns ``({"x_train", "y_train", "x_val", "y_val", "x_test", "y_test"}, counts)``.
    """
    if len(data) != 4:
        raise ValueError(f"dataset as tensors must be (X_train, y_train, X_test, y_test), got {len(data)} items")
    x_tr, y_tr, x_te, y_te = data
    for name, t in zip(("X_train", "y_train", "X_test", "y_test"), data, strict=True):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    for name, y in (("y_train", y_tr), ("y_test", y_te)):
        if y.dtype != torch.int64 or y.dim() != 1:
            raise TypeError(f"{name} must be a 1-D int64 tensor of class indices, got {y.dtype} {tuple(y.shape)}")
    if x_te.shape[0] != y_te.shape[0]:
        raise ValueError(f"X_test has {x_te.shape[0]} rows but y_test has {y_te.shape[0]}")
    if not torch.is_floating_point(x_tr) or not torch.is_floating_point(x_te):
        raise TypeError("X_train and X_test must be floating point (normalised features or images)")
    num_classes = int(max(int(y_tr.max()), int(y_te.max()))) + 1
    train_idx, val_idx = make_imbalanced_tensors(
        x_tr, y_tr, imbalance_ratio, profile, n_max=n_max, val_per_class=val_per_class, seed=seed,
        num_classes=num_classes,
    )
    parts = {
        "x_train": x_tr[train_idx],
        "y_train": y_tr[train_idx],
        "x_val": x_tr[val_idx],
        "y_val": y_tr[val_idx],
        "x_test": x_te,
        "y_test": y_te,
    }
    counts = torch.bincount(parts["y_train"].cpu(), minlength=num_classes).tolist()
    return parts, counts


def _tensor_pair_data(
    tensors: Sequence[torch.Tensor], data_seed: int, device: torch.device, model_factory, config, epochs,
    imbalance_ratio: float, profile: str, n_max: int | None, val_per_class: int | None,
) -> _PairData:  # fmt: skip
    cfg = config or TrainConfig(epochs=epochs or 10, lr=3e-3, optimizer="adamw", weight_decay=1e-4)
    if epochs is not None and cfg.epochs != epochs:
        cfg = replace(cfg, epochs=epochs)
    try:
        data, counts = tensors_spec(tensors, imbalance_ratio, profile, data_seed, n_max, val_per_class or 100)
    except ValueError as err:
        raise ExperimentConfigError(f"dataset as tensors: {err}") from err
    data = {k: v.to(device) for k, v in data.items()}
    return _PairData(data_seed, data, counts, model_factory, cfg, None, None, drw_start(cfg.epochs),
                     f"user tensors, {profile} {imbalance_ratio:g}, data seed {data_seed}")  # fmt: skip


def _record(
    method: str, seed: int, data_seed: int, test_logits, val_logits, pair: _PairData, history, seconds, ips, diverged,
) -> RunRecord:  # fmt: skip
    data, counts = pair.data, pair.counts
    y_test, y_val = data["y_test"].cpu(), data["y_val"].cpu()
    finite = bool(torch.isfinite(test_logits).all() and torch.isfinite(val_logits).all())
    if finite:
        metrics = classification_report(test_logits, y_test, counts)
        metrics.update({f"val_{k}": v for k, v in classification_report(val_logits, y_val, counts).items()})
    else:  # a diverged model: its scores are undefined, not zero
        keys = classification_report(torch.eye(len(counts)), torch.arange(len(counts)), counts)
        metrics = {k: math.nan for k in keys} | {f"val_{k}": math.nan for k in keys}
    return RunRecord(
        method=method, seed=seed, metrics=metrics, history=history, test_logits=test_logits,
        test_targets=y_test, counts=list(counts), seconds=seconds, images_per_second=ips,
        diverged=bool(diverged or not finite), data_seed=data_seed,
        extra={"val_logits": val_logits, "config": pair.config.to_dict(), "drw_start_epoch": pair.drw_start_epoch,
               "groups": describe_groups(counts)},
    )  # fmt: skip


def _train_one(method: Method, seed: int, pair: _PairData, device: torch.device) -> tuple[RunRecord, nn.Module]:
    counts_t = torch.tensor(pair.counts, dtype=torch.float64)
    torch.manual_seed(seed)
    model = pair.factory()
    if method.normed_head:
        use_normed_head(model)
    if method.init_model is not None:
        method.init_model(model, counts_t)
    loss_fn, drw = method.make_loss(counts_t, pair.drw_start_epoch, device)
    loss_fn = loss_fn.to(device)
    sampling = tuple(method.sampling(counts_t).tolist()) if method.sampling is not None else None
    run_cfg = replace(pair.config, seed=seed, balanced_sampling=method.balanced_sampling, sampling_weights=sampling)
    data = pair.data
    result = train(
        model, loss_fn, data["x_train"], data["y_train"], run_cfg,
        x_val=data["x_val"], y_val=data["y_val"], transform=pair.transform, augment=pair.augment,
        on_epoch_start=(lambda e, d=drw, f=loss_fn: d(f, e)) if drw is not None else None,
        show_progress=False,
    )  # fmt: skip
    scale = method.logit_scale
    test_logits = scale * predict_logits(model, data["x_test"], transform=pair.transform).cpu()
    val_logits = scale * predict_logits(model, data["x_val"], transform=pair.transform).cpu()
    record = _record(method.name, seed, pair.data_seed, test_logits, val_logits, pair, result.history,
                     result.seconds, result.images_per_second, result.diverged)  # fmt: skip
    record.extra["config"] = run_cfg.to_dict()
    return record, model


def _derive(method: Method, inp: PosthocInput, pair: _PairData) -> RunRecord:
    import time

    start = time.perf_counter()
    base = inp.base
    if base.diverged:
        nan = torch.full_like(base.test_logits, math.nan)
        test, val, extra = nan, torch.full_like(base.extra["val_logits"], math.nan), {}
    else:
        test, val, extra = method.posthoc(inp)
    record = _record(method.name, base.seed, pair.data_seed, test, val, pair, base.history, 0.0, math.nan,
                     base.diverged)  # fmt: skip
    record.extra.update(extra, config=base.extra["config"], posthoc_seconds=time.perf_counter() - start)
    return record


def _row(rec: RunRecord, name: str, profile: str, imbalance_ratio: float, epochs: int) -> dict:
    return {
        "dataset": name, "profile": profile, "imbalance_ratio": float(imbalance_ratio), "method": rec.method,
        "seed": rec.seed, "data_seed": rec.data_seed, "epochs": epochs, **rec.metrics, "seconds": rec.seconds,
        "posthoc_seconds": rec.extra.get("posthoc_seconds", 0.0), "images_per_second": rec.images_per_second,
        "diverged": rec.diverged, "tau": float(rec.extra.get("tau", math.nan)),
    }  # fmt: skip


def run_experiment(
    dataset: str | Sequence[torch.Tensor] = "mnist",
    model_factory: Callable[[], nn.Module] | None = None,
    methods: str | Sequence[str] = ("ce", "focal_g2", "la_loss"),
    seeds: Sequence[int] = (0, 1, 2),
    imbalance_ratio: float = 100,
    profile: str = "exp",
    epochs: int | None = None,
    *,
    config: TrainConfig | None = None,
    data_seed: int | None = None,
    protocol: str | None = None,
    device: torch.device | str | None = None,
    n_max: int | None = None,
    val_per_class: int | None = None,
    runs: list[RunRecord] | None = None,
    show_progress: bool = True,
    spec_kwargs: dict | None = None,
    skip: Collection[tuple[str, int, int]] = (),
    on_result: Callable[[list[dict], list[RunRecord]], object] | None = None,
) -> pd.DataFrame:
    """Train every method with every seed on one long-tailed setting; return one row per run.

    Seeds and pairing: for each ``seed`` the long-tailed subset and its balanced validation set are
    drawn with data seed ``seed`` (or the fixed ``data_seed`` when given), and the model is trained
    with training seed ``seed``. All methods of one seed see the same data and start from the same
    initialisation: their runs are paired by ``(seed, data_seed)`` (:func:`paired_table`).

    Post-hoc and decoupled methods (``posthoc_la``, ``crt``, ``tau_norm``) re-use the cross-entropy
    model of their pair (trained once even if ``"ce"`` itself is not requested). A trained method and
    the methods derived from it form one *group*, finished and reported together.

    Args:
        dataset: a name in :data:`DATASETS` (``"mnist"``, ``"cifar10"``, ``"cifar100"``), or user
            tensors ``(X_train, y_train, X_test, y_test)`` (float features or images, int64 labels),
            made long-tailed with :func:`helpers.imbalance.make_imbalanced_tensors`.
        model_factory: builds a fresh model; required for user tensors, optional (overrides the
            dataset's) for a named dataset.
        methods: names from :data:`METHODS` (a list or a comma-separated string).
        seeds: the pairs' seeds (training seed, and data seed unless ``data_seed`` is given).
        imbalance_ratio, profile: the long-tailed profile.
        epochs: training epochs (default: the dataset's recipe; 10 for user tensors).
        config: a full :class:`helpers.train.TrainConfig` (overrides the dataset's; ``epochs``
            still overrides its epochs when given).
        data_seed: None (default) pairs data seed ``i`` with training seed ``i``; an int keeps the
            same drawn subset for every seed (training seeds vary alone).
        protocol: passed to the dataset builder (e.g. the CIFAR protocols).
        device: compute device (default :func:`helpers.runtime.pick_device`).
        n_max: head-class size (default: the dataset's).
        val_per_class: validation examples per class (default: the dataset's; 100 for tensors).
        runs: if a list is given, one :class:`RunRecord` per run (curves, test logits) is appended.
        show_progress: one progress bar over the trainings.
        spec_kwargs: extra keyword arguments for the dataset builder (e.g. MNIST's ``recipe``).
        skip: keys ``(method, seed, data_seed)`` of runs already done (e.g. recorded in a results
            file); a group whose requested runs are all in ``skip`` is not trained, and its runs are
            not in the returned table.
        on_result: called after each finished group with its rows and records (the CLI records them
            in the results file there).

    Returns:
        A tidy :class:`pandas.DataFrame`, rows ordered by seed then by ``methods``: columns
        ``dataset, profile, imbalance_ratio, method, seed, data_seed, epochs``, the test metrics
        (:data:`METRICS`, with ``head_recall``/``tail_recall`` aliases), their ``val_`` versions,
        ``seconds`` (backbone training; 0 for derived methods), ``posthoc_seconds``,
        ``images_per_second``, ``diverged`` and ``tau`` (the post-hoc knob, NaN if none).

    Raises:
        ValueError / TypeError: on unknown methods or datasets, bad seeds, or malformed tensors;
        ExperimentConfigError (a ValueError): when the dataset cannot be built with these arguments.
    """
    names = check_methods(methods)
    seeds = _check_seeds(seeds)
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    if config is not None and not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if data_seed is not None and (isinstance(data_seed, bool) or not isinstance(data_seed, int) or data_seed < 0):
        raise ValueError(f"data_seed must be None (paired with the seeds) or a non-negative int, got {data_seed!r}")
    device = torch.device(device) if device is not None else pick_device()
    if isinstance(dataset, str):
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")
        name = dataset
        spec_args = dict(spec_kwargs or {}, imbalance_ratio=imbalance_ratio, profile=profile, protocol=protocol)
        if n_max is not None:
            spec_args["n_max"] = n_max
        if val_per_class is not None:
            spec_args["val_per_class"] = val_per_class
    elif model_factory is None:
        raise ValueError("model_factory is required when dataset is given as tensors")
    else:
        name = "tensors"

    trained = [m for m in names if METHODS[m].posthoc_of is None]
    derived: dict[str, list[str]] = {}
    for m in names:
        base = METHODS[m].posthoc_of
        if base is not None:
            derived.setdefault(base, []).append(m)
            if base not in trained:
                trained.append(base)
    done = set(skip)

    def data_seed_of(seed: int) -> int:
        return seed if data_seed is None else data_seed

    def todo(method: str, seed: int) -> bool:
        members = ([method] if method in names else []) + derived.get(method, [])
        return any((m, seed, data_seed_of(seed)) not in done for m in members)

    jobs = [(seed, m) for seed in seeds for m in trained if todo(m, seed)]
    quiet = {} if show_progress else {"disable": True}
    bar = progress(total=len(jobs), desc=f"{name} {profile}{imbalance_ratio:g}", **quiet)
    rows: list[dict] = []
    records: list[RunRecord] = []
    pair: _PairData | None = None
    try:
        for seed, method_name in jobs:
            ds = data_seed_of(seed)
            if pair is None or pair.data_seed != ds:
                pair = None  # free the previous data first
                if isinstance(dataset, str):
                    pair = _named_pair_data(dataset, ds, device, model_factory, config, epochs, spec_args,
                                            announce=not rows)  # fmt: skip
                else:
                    pair = _tensor_pair_data(dataset, ds, device, model_factory, config, epochs, imbalance_ratio,
                                             profile, n_max, val_per_class)  # fmt: skip
            record, model = _train_one(METHODS[method_name], seed, pair, device)
            group = [record] if method_name in names else []
            inp = PosthocInput(model, record, pair.data, pair.transform, pair.counts, seed, pair.config.channels_last)
            group += [_derive(METHODS[d], inp, pair) for d in derived.get(method_name, [])]
            del model, inp
            group_rows = [_row(r, name, profile, imbalance_ratio, pair.config.epochs) for r in group]
            rows.extend(group_rows)
            records.extend(group)
            if on_result is not None:
                on_result(group_rows, group)
            bar.update(1)
    finally:
        bar.close()
    order = {m: i for i, m in enumerate(names)}
    rows.sort(key=lambda r: (seeds.index(r["seed"]), order[r["method"]]))
    if runs is not None:
        runs.extend(sorted(records, key=lambda r: (seeds.index(r.seed), order[r.method])))
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------- comparisons
def summarize(table: pd.DataFrame, metrics: Sequence[str] = ("accuracy", "balanced_accuracy", "few_recall",
              "worst_class_recall"), percent: bool = True) -> pd.DataFrame:  # fmt: skip
    """Mean ± std over the runs (seed pairs) of ``metrics`` per method (rows in the table's method order), as strings.

    With ``percent`` the values are shown in percent with one decimal: ``"97.3 ± 0.4"``. The std is the
    spread of single runs; for comparisons between methods use :func:`paired_table`.
    """
    missing = [m for m in metrics if m not in table.columns]
    if missing:
        raise ValueError(f"metrics {missing} are not columns of the table")
    order = list(dict.fromkeys(table["method"]))
    scale = 100.0 if percent else 1.0
    grouped = table.groupby("method", sort=False)[list(metrics)]
    mean, std = grouped.mean().loc[order] * scale, grouped.std(ddof=1).loc[order].fillna(0.0) * scale
    fmt = "{:.1f} ± {:.1f}" if percent else "{:.3f} ± {:.3f}"
    out = pd.DataFrame(
        {m: [fmt.format(a, b) for a, b in zip(mean[m], std[m], strict=True)] for m in metrics}, index=order
    )
    out.index.name = "method"
    return out


#: The verdict when fewer than two pairs of runs exist (no interval can be computed).
ONE_PAIR_VERDICT = "cannot be judged from a single pair of runs"


def _by_pair(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """``column`` as a (seed, data_seed) x method frame."""
    if column not in table.columns:
        raise ValueError(f"{column!r} is not a column of the table; have {sorted(table.columns)}")
    frame = table if "data_seed" in table.columns else table.assign(data_seed=0)
    if frame.duplicated(["method", "seed", "data_seed"]).any():
        raise ValueError("the table has several runs of one method for the same (seed, data_seed): "
                         "pass one setting (dataset, profile, imbalance ratio) at a time")  # fmt: skip
    return frame.pivot(index=["seed", "data_seed"], columns="method", values=column)


def val_best_set(
    table: pd.DataFrame,
    metric: str = "balanced_accuracy",
    methods: Sequence[str] | None = None,
    level: float = 0.95,
    higher_is_better: bool = True,
) -> list[str]:
    """Methods that cannot be told apart from the best on the VALIDATION ``metric`` (``val_<metric>``).

    The best method by mean validation score is always in the set; another joins it unless its paired
    ``level`` t-interval against the best (over the ``(seed, data_seed)`` pairs,
    :func:`helpers.stats.indistinguishable_from_best`) lies wholly on the worse side of zero. A method
    with a diverged (NaN) run is not a contender. With fewer than two pairs nothing can be separated
    and every contender is returned. A one-element result is a clear winner, chosen without the test set.
    """
    wide = _by_pair(table, f"val_{metric}")
    methods = list(methods) if methods is not None else list(dict.fromkeys(table["method"]))
    contenders = [m for m in methods if m in wide.columns and wide[m].notna().all()]
    if len(wide) < 2 or len(contenders) < 2:
        return contenders
    return indistinguishable_from_best({m: wide[m].to_numpy() for m in contenders}, level, higher_is_better)


def paired_stats(
    table: pd.DataFrame,
    baseline: str = "ce",
    metric: str = "balanced_accuracy",
    methods: Sequence[str] | None = None,
    level: float = 0.95,
    quick: bool | None = None,
    higher_is_better: bool = True,
) -> pd.DataFrame:
    """Per method: mean and std of ``metric`` (test and validation), and the paired difference against ``baseline``.

    Runs are paired by ``(seed, data_seed)``: with the default paired seeds, every pair has its own
    drawn subset and its own initialisation, so the interval covers both sources of variance. For each
    method the difference ``method - baseline`` per pair gives a mean and a Student-t ``level``
    interval over the pairs (:func:`helpers.stats.paired_difference`), and
    :func:`helpers.stats.verdict` turns it into "improves", "hurts" or "cannot be told apart from"
    (:data:`helpers.stats.QUICK_VERDICT` in quick mode, :data:`ONE_PAIR_VERDICT` with one pair).
    Pairs where either run diverged (NaN) are left out of that method's difference.

    Returns:
        One row per method (index ``method``) with columns ``n_pairs``, ``mean``, ``std``,
        ``val_mean``, ``val_std``, ``diff``, ``diff_low``, ``diff_high``, ``verdict``,
        ``val_diff``, ``val_diff_low``, ``val_diff_high``, ``val_verdict``, ``val_tied_best``
        (:func:`val_best_set`), ``many_recall``, ``medium_recall``, ``few_recall`` (means, if in the
        table) and ``diverged`` (number of diverged runs). Values are fractions, as in the table.
    """
    quick = quick_mode() if quick is None else quick
    methods = list(methods) if methods is not None else list(dict.fromkeys(table["method"]))
    if baseline not in methods:
        raise ValueError(f"baseline {baseline!r} is not among the methods {methods}")
    missing = [m for m in methods if m not in set(table["method"])]
    if missing:
        raise ValueError(f"methods {missing} have no runs in the table")
    test, val = _by_pair(table, metric), _by_pair(table, f"val_{metric}")
    best = set(val_best_set(table, metric, methods, level, higher_is_better))
    groups = [g for g in ("many_recall", "medium_recall", "few_recall") if g in table.columns]
    diverged = table.groupby("method")["diverged"].sum() if "diverged" in table.columns else None

    def compare(wide: pd.DataFrame, m: str) -> tuple[float, float, float, str]:
        if m == baseline:
            return math.nan, math.nan, math.nan, "baseline"
        both = wide[[m, baseline]].dropna()
        if len(both) < 2:
            d = float((both[m] - both[baseline]).mean()) if len(both) else math.nan
            return d, math.nan, math.nan, QUICK_VERDICT if quick else ONE_PAIR_VERDICT
        diff = paired_difference(both[m].to_numpy(), both[baseline].to_numpy(), level)
        return diff.mean, diff.low, diff.high, verdict(diff, quick=quick, higher_is_better=higher_is_better)

    rows = []
    for m in methods:
        d, lo, hi, word = compare(test, m)
        vd, vlo, vhi, vword = compare(val, m)
        row = {
            "method": m, "n_pairs": int(test[m].notna().sum()), "mean": test[m].mean(), "std": test[m].std(ddof=1),
            "val_mean": val[m].mean(), "val_std": val[m].std(ddof=1), "diff": d, "diff_low": lo, "diff_high": hi,
            "verdict": word, "val_diff": vd, "val_diff_low": vlo, "val_diff_high": vhi, "val_verdict": vword,
            "val_tied_best": m in best,
        }  # fmt: skip
        for g in groups:
            row[g] = table.loc[table["method"] == m, g].mean()
        row["diverged"] = int(diverged.get(m, 0)) if diverged is not None else 0
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")


def paired_table(
    table: pd.DataFrame,
    baseline: str = "ce",
    metric: str = "balanced_accuracy",
    methods: Sequence[str] | None = None,
    level: float = 0.95,
    quick: bool | None = None,
    percent: bool = True,
    higher_is_better: bool = True,
) -> pd.DataFrame:
    """:func:`paired_stats` formatted for the page: one row per method, strings in percent (points for differences).

    Columns: ``<metric> (test)`` ``"mean ± std"``; ``vs <baseline>, 95% CI`` ``"+1.2 [+0.4, +2.0]"``
    (paired, in points); ``verdict`` (the word :func:`helpers.stats.verdict` gives); ``val <metric>``
    ``"mean ± std"``; ``val: tied with best`` ("yes" for the methods :func:`val_best_set` cannot separate
    from the best on validation); ``many / medium / few recall (test)``; ``pairs`` (runs used) and
    ``diverged``. With one pair the std and the interval are blank.
    """
    stats = paired_stats(table, baseline, metric, methods, level, quick, higher_is_better)
    scale = 100.0 if percent else 1.0
    digits = 1 if percent else 3

    def spread(mean: float, std: float) -> str:
        return f"{mean * scale:.{digits}f}" + ("" if math.isnan(std) else f" ± {std * scale:.{digits}f}")

    def interval(d: float, lo: float, hi: float) -> str:
        if math.isnan(d):
            return "-"
        text = f"{d * scale:+.{digits}f}"
        return text if math.isnan(lo) else f"{text} [{lo * scale:+.{digits}f}, {hi * scale:+.{digits}f}]"

    pct = f"{int(round(level * 100))}% CI"
    out = pd.DataFrame(index=stats.index)
    out[f"{metric} (test)"] = [spread(a, b) for a, b in zip(stats["mean"], stats["std"], strict=True)]
    out[f"vs {baseline}, {pct}"] = [interval(*v) for v in stats[["diff", "diff_low", "diff_high"]].to_numpy()]
    out["verdict"] = stats["verdict"]
    out[f"val {metric}"] = [spread(a, b) for a, b in zip(stats["val_mean"], stats["val_std"], strict=True)]
    out["val: tied with best"] = ["yes" if t else "" for t in stats["val_tied_best"]]
    if {"many_recall", "medium_recall", "few_recall"} <= set(stats.columns):
        out["many / medium / few recall (test)"] = [
            " / ".join("-" if math.isnan(v) else f"{v * scale:.{digits}f}" for v in vals)
            for vals in stats[["many_recall", "medium_recall", "few_recall"]].to_numpy()
        ]
    out["pairs"] = stats["n_pairs"]
    out["diverged"] = stats["diverged"]
    return out


# ----------------------------------------------------------------------------------------------- plots
def _mean_over_seeds(runs: Sequence[RunRecord], method: str, fn: Callable[[RunRecord], torch.Tensor]) -> torch.Tensor:
    values = [fn(r) for r in runs if r.method == method]
    if not values:
        raise ValueError(f"no runs of method {method!r}; have {sorted({r.method for r in runs})}")
    return torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in values]).mean(0)



def per_class_recall_of(run: RunRecord) -> torch.Tensor:
    """Test recall of each class for one run, ``float64`` ``(C,)``."""
    from helpers.metrics import per_class_recall

    return per_class_recall(run.test_logits, run.test_targets, run.test_logits.shape[1])


def plot_per_class_recall(ax, runs: Sequence[RunRecord], methods: Sequence[str], title: str = "") -> None:
    """Test recall per class (mean over seeds) for each method, classes ordered by training count."""
    counts = runs[0].counts
    order = sorted(range(len(counts)), key=lambda c: -counts[c])
    for method in methods:
        recall = _mean_over_seeds(runs, method, per_class_recall_of)
        ax.plot(range(len(order)), 100 * recall[order], marker="o", label=method)
    ax.set_xticks(range(len(order)), [f"{c}\n({counts[c]})" for c in order], fontsize=8)
    ax.set_xlabel("class (training examples), head to tail")
    ax.set_ylabel("test recall (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def plot_confusion(ax, run: RunRecord, class_names: Sequence[str] | None = None, title: str = "") -> None:
    """Row-normalised test confusion matrix of one run (rows: true class; entries in %)."""
    from helpers.metrics import confusion_matrix

    cm = confusion_matrix(run.test_logits, run.test_targets, run.test_logits.shape[1]).double()
    cm = 100 * cm / cm.sum(1, keepdim=True).clamp(min=1)
    image = ax.imshow(cm, cmap="Blues", vmin=0, vmax=100)
    names = list(class_names) if class_names is not None else [str(c) for c in range(cm.shape[0])]
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title or f"{run.method} (seed {run.seed})")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j] >= 1:
                ax.text(j, i, f"{cm[i, j]:.0f}", ha="center", va="center", fontsize=6,
                        color="white" if cm[i, j] > 60 else "black")
    return image


def plot_curves(axes, runs: Sequence[RunRecord], methods: Sequence[str],
                keys: Sequence[str] = ("train_loss", "val_balanced_accuracy")) -> None:
    """Per-epoch curves (mean over seeds) of ``keys`` from the runs' histories, one axis per key."""
    labels = {
        "train_loss": "training loss (the method's own loss)",
        "val_balanced_accuracy": "validation balanced accuracy",
        "val_accuracy": "validation accuracy",
        "val_loss": "validation cross-entropy (nats)",
        "val_worst_class_recall": "validation worst-class recall",
    }
    for ax, key in zip(axes, keys, strict=True):
        for method in methods:
            curve = _mean_over_seeds(runs, method, lambda r, k=key: torch.tensor(r.history[k]))
            ax.plot(range(1, len(curve) + 1), curve, marker=".", label=method)
        ax.set_xlabel("epoch")
        ax.set_ylabel(labels.get(key, key))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)


def reliability(run: RunRecord, n_bins: int = 10) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reliability diagram data of one run: mean confidence, accuracy and count per confidence bin."""
    probs = run.test_logits.softmax(1)
    confidence, pred = probs.max(1)
    correct = (pred == run.test_targets).double()
    bins = torch.clamp((confidence * n_bins).ceil().long() - 1, 0, n_bins - 1)
    size = torch.bincount(bins, minlength=n_bins).double()
    conf = torch.bincount(bins, weights=confidence.double(), minlength=n_bins) / size
    acc = torch.bincount(bins, weights=correct, minlength=n_bins) / size
    return conf, acc, size


def plot_reliability(ax, runs: Sequence[RunRecord], methods: Sequence[str], seed: int = 0, n_bins: int = 10) -> None:
    """Reliability diagram (accuracy against confidence, test set) for one seed (pair) of each method."""
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
    for method in methods:
        run = next(r for r in runs if r.method == method and r.seed == seed)
        conf, acc, size = reliability(run, n_bins)
        keep = size > 0
        ece = run.metrics["ece"]
        ax.plot(conf[keep], acc[keep], marker="o", label=f"{method} (ECE {100 * ece:.1f}%)")
    ax.set_xlabel("confidence of the predicted class")
    ax.set_ylabel("accuracy in the confidence bin")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)



def plot_paired_differences(
    ax, table: pd.DataFrame, baseline: str = "ce", metric: str = "balanced_accuracy",
    methods: Sequence[str] | None = None, level: float = 0.95, title: str = "",
) -> pd.DataFrame:  # fmt: skip
    """Forest plot: each method's paired difference to ``baseline`` (points) with its ``level`` t-interval.

    An interval that crosses the dotted zero line cannot be told apart from the baseline. Returns the
    :func:`paired_stats` it drew. Methods with fewer than two pairs are drawn as a point without bars.
    """
    stats = paired_stats(table, baseline, metric, methods, level).drop(index=baseline)
    y = range(len(stats))
    mean = 100 * stats["diff"].to_numpy()
    low = 100 * stats["diff_low"].fillna(stats["diff"]).to_numpy()
    high = 100 * stats["diff_high"].fillna(stats["diff"]).to_numpy()
    ax.errorbar(mean, list(y), xerr=[mean - low, high - mean], fmt="o", capsize=3,
                label=f"mean difference, {int(round(100 * level))}% t-interval over seed pairs")  # fmt: skip
    ax.axvline(0, color="grey", linestyle=":", lw=1)
    ax.set_yticks(list(y), list(stats.index))
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric.replace('_', ' ')} minus {baseline}'s (percentage points, test set)")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=8)
    return stats


# ------------------------------------------------------------------------------------------------- CLI
def provenance(device: torch.device | str) -> dict[str, str]:
    """Date (UTC, ISO 8601), torch and Python versions, device, platform and git commit of this run."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "device": str(device),
        "platform": platform.platform(),
        "git_commit": commit,
    }


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip() != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated non-negative integers, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated non-negative integers, got {text!r}")
    return values


def _number(cast: Callable[[str], float], minimum: float, what: str) -> Callable[[str], float]:
    """An argparse ``type``: ``cast(text)``, finite and ``>= minimum``, else a message naming ``what``."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value) or value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_positive_float = _number(float, 1.0, "a number >= 1 (n_max / n_min)")
_positive_int = _number(int, 1, "a positive integer")


_learning_rate = _number(float, 1e-12, "a positive learning rate")


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser (every flag documented in ``--help``)."""
    method_help = "; ".join(f"{m.name}: {m.description}" for m in METHODS.values())
    protocols = "; ".join(f"{d}: {', '.join(p)}" for d, p in DATASET_PROTOCOLS.items())
    parser = argparse.ArgumentParser(
        prog="python -m helpers.experiments",
        description="Train long-tail methods on a long-tailed dataset over several seed pairs and record every "
        "finished run (metrics, per-epoch curves, provenance) in a JSON file as it completes; rerun the same "
        "command to resume an interrupted experiment.",
    )
    parser.add_argument("--dataset", default="mnist", choices=sorted(DATASETS), help="dataset (default: mnist)")
    parser.add_argument(
        "--imbalance", type=_positive_float, default=100.0,
        help="imbalance ratio n_max / n_min of the training set, >= 1 (default: 100)",
    )
    parser.add_argument(
        "--profile", default="exp", choices=PROFILES, help="long-tailed profile: exp(onential) or step (default: exp)"
    )
    parser.add_argument(
        "--methods", default="ce,la_loss", help=f"comma-separated methods (default: ce,la_loss). {method_help}"
    )
    parser.add_argument(
        "--seeds", type=_int_list, default=[0, 1, 2],
        help="comma-separated seeds; seed i draws the long-tailed subset with data seed i and trains with "
        "training seed i (default: 0,1,2)",
    )
    parser.add_argument(
        "--epochs", type=_positive_int, default=None, help="training epochs (default: the dataset's recipe)"
    )
    parser.add_argument(
        "--protocol", default=None, help=f"training protocol of the dataset ({protocols}; default: the dataset's)"
    )
    parser.add_argument(
        "--data-seed", type=_non_negative_int, default=None,
        help="keep the long-tailed subset and validation draw fixed at this data seed for every seed "
        "(default: paired, data seed = seed)",
    )
    parser.add_argument("--n-max", type=_positive_int, default=None, help="head-class size (default: the dataset's)")
    parser.add_argument(
        "--recipe", default=None, choices=MNIST_RECIPES,
        help="MNIST only: training recipe, adamw (default) or the papers' plain SGD with momentum, without "
        "(sgd) or with (sgd_warmup) a linear warm-up",
    )
    parser.add_argument("--lr", type=_learning_rate, default=None, help="MNIST only: base learning rate of the recipe")
    parser.add_argument(
        "--device", default=None, help="compute device, e.g. cpu or cuda (default: CUDA, then MPS, then CPU)"
    )
    parser.add_argument(
        "--out", required=True,
        help="JSON results file; each finished run is recorded as it completes, and an existing file of the same "
        "arguments is resumed",
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite an existing --out file that holds different arguments"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (argument errors exit with status 2 and a message)."""
    from helpers.datasets import DataUnavailableError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        methods = check_methods(args.methods)
    except ValueError as err:
        parser.error(f"--methods: {err}")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds: seeds must not repeat, got {args.seeds}")
    allowed = DATASET_PROTOCOLS.get(args.dataset)
    if args.protocol is not None and allowed is not None and args.protocol not in allowed:
        parser.error(
            f"--protocol: dataset {args.dataset!r} has the protocols {', '.join(allowed)}; got {args.protocol!r}"
        )
    spec_kwargs = {}
    for flag, key in (("--recipe", "recipe"), ("--lr", "lr")):
        value = getattr(args, key)
        if value is not None:
            if args.dataset != "mnist":
                parser.error(f"{flag}: only the mnist dataset has recipes; {args.dataset!r} takes --protocol")
            spec_kwargs[key] = value
    out = Path(args.out)
    if out.parent and not out.parent.exists():
        parser.error(f"--out: folder {str(out.parent)!r} does not exist")
    try:
        device = pick_device(args.device)
    except (ValueError, RuntimeError) as err:
        parser.error(f"--device: {err}")
    config = {k: v for k, v in vars(args).items() if k not in ("out", "force", "no_progress")} | {"methods": methods}
    try:
        store = ResultsStore(out, config, force=args.force, provenance=provenance(device))
    except ValueError as err:  # ResultsConflictError included
        parser.error(f"--out: {err}")
    done = store.done()
    if done:
        print(f"resuming {out}: {len(done)} run(s) already recorded, only the missing ones will run")
    try:
        run_experiment(
            args.dataset, methods=methods, seeds=args.seeds, imbalance_ratio=args.imbalance, profile=args.profile,
            epochs=args.epochs, data_seed=args.data_seed, protocol=args.protocol, device=device, n_max=args.n_max,
            show_progress=not args.no_progress, spec_kwargs=spec_kwargs, skip=done, on_result=store.add,
        )  # fmt: skip
    except ExperimentConfigError as err:
        parser.error(str(err))
    except DataUnavailableError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 1
    store.finish()
    table = store.table()
    if store.payload["train_counts"] is not None:
        print(describe_groups(store.payload["train_counts"]))
    if table["seed"].nunique() >= 2 and "ce" in set(table["method"]):
        print(paired_table(table, "ce", methods=methods).to_string())
    else:
        print(summarize(table, ["accuracy", "balanced_accuracy", "few_recall", "worst_class_recall"]).to_string())
    print(f"wrote {out}")
    return 0


__all__ += ["ONE_PAIR_VERDICT", "ResultsConflictError", "plot_paired_differences", "provenance"]


if __name__ == "__main__":
    sys.exit(main())
