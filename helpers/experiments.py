"""Long-tailed experiments: the methods, the datasets, a runner that returns a tidy table, and a CLI.

One *run* trains one model with one method and one training seed on a long-tailed training set
(:mod:`helpers.imbalance`), then scores it on the untouched, balanced test set with
:func:`helpers.metrics.classification_report`. :func:`run_experiment` loops over methods x seeds and
returns one row per run. The long-tailed subset and its balanced validation set are drawn once,
with ``data_seed``; the training seeds change the initialisation, the batch order and the resampling.

Every method's hyperparameters come from its paper (see :data:`METHODS`), never from the test set:
logit adjustment ``tau = 1`` (Menon et al.), focal ``gamma`` in {1, 2} (Lin et al.), class-balanced
``beta = 0.9999`` (Cui et al.), LDAM maximum margin 0.5 with scale 30 and a cosine (normalised)
last layer, deferred re-weighting from 80% of the epochs with class-balanced weights (Cao et al.).

Command line (``python -m helpers.experiments --help`` documents every flag)::

    python -m helpers.experiments --dataset mnist --imbalance 100 --profile exp \\
        --methods ce,focal_g2,ldam_drw --seeds 0,1,2 --epochs 6 --out results.json

writes the configuration, one metrics record per run, the per-epoch curves and provenance (date,
torch version, device, git commit) as JSON.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import math
import platform
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from helpers.datasets import ImageSet, load_mnist
from helpers.imbalance import PROFILES, make_imbalanced, make_imbalanced_tensors
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
from helpers.metrics import classification_report
from helpers.models import MnistNet, use_normed_head
from helpers.runtime import pick_device, progress, quick_mode
from helpers.train import TrainConfig, predict_logits, train

#: Paper values shared by several methods.
CB_BETA = 0.9999
LA_TAU = 1.0
LDAM_MAX_MARGIN = 0.5
LDAM_SCALE = 30.0
DRW_FRACTION = 0.8

#: Metrics reported for every run (keys of :func:`helpers.metrics.classification_report`).
METRICS = (
    "accuracy",
    "balanced_accuracy",
    "worst_class_recall",
    "macro_f1",
    "head_recall",
    "medium_recall",
    "tail_recall",
    "ece",
    "nll",
)

LossBuild = tuple[nn.Module, "DeferredReweighting | None"]


# --------------------------------------------------------------------------------------------- methods
@dataclass(frozen=True)
class Method:
    """How one long-tail method trains: its loss, sampling, last layer, and post-hoc correction.

    Attributes:
        name: registry key (``--methods`` in the CLI).
        description: one line for tables and ``--help``.
        cite: bibliography key of its paper (``book/references.bib``), or "".
        make_loss: ``(class_counts (C,) float64, drw_start_epoch, device) -> (loss_fn, drw or None)``.
        balanced_sampling: train with class-balanced resampling.
        normed_head: replace the model's last linear layer by a cosine classifier (LDAM's setting).
        posthoc_of: name of the method whose trained model this one re-uses, adjusting its test
            logits post hoc (no training of its own).
        logit_scale: factor applied to the model's outputs before scoring, so that probabilities
            (calibration, NLL) are the ones the loss trained: LDAM's scale ``s`` for its cosine
            logits in [-1, 1]. Predictions (argmax) do not change.
    """

    name: str
    description: str
    cite: str
    make_loss: Callable[[torch.Tensor, int, torch.device], LossBuild]
    balanced_sampling: bool = False
    normed_head: bool = False
    posthoc_of: str | None = None
    logit_scale: float = 1.0


def _ce(counts, start, device):
    return nn.CrossEntropyLoss(), None


def _drw(loss: nn.Module, counts: torch.Tensor, start: int, device: torch.device) -> LossBuild:
    return loss, DeferredReweighting(class_balanced_weights(counts, CB_BETA).to(device), start)


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
            f"cross-entropy, class-balanced weights (beta={CB_BETA})",
            "cui2019classbalanced",
            lambda c, s, d: (nn.CrossEntropyLoss(weight=cb(c)), None),
        ),
        Method("resample", "cross-entropy, class-balanced resampling", "", _ce, balanced_sampling=True),
        Method("focal_g1", "focal loss, gamma=1", "lin2017focal", lambda c, s, d: (FocalLoss(gamma=1.0), None)),
        Method("focal_g2", "focal loss, gamma=2", "lin2017focal", lambda c, s, d: (FocalLoss(gamma=2.0), None)),
        Method(
            "cb_focal",
            f"class-balanced focal loss, gamma=1, beta={CB_BETA}",
            "cui2019classbalanced",
            lambda c, s, d: (FocalLoss(gamma=1.0, alpha=cb(c)), None),
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
@dataclass
class DatasetSpec:
    """Everything a dataset contributes to an experiment.

    Attributes:
        train: the long-tailed training set.
        val: balanced validation set (training images left out by the subsampling).
        test: the balanced test set.
        counts: training examples per class.
        model_factory: builds a fresh, untrained model.
        config: the training recipe (seed is replaced per run).
        transform: maps a uint8 batch to a normalised float batch on the device; None means
            :func:`run_experiment` normalises the whole set once with :meth:`ImageSet.normalized`.
        augment: batch augmentation ``(batch, generator) -> batch`` or None.
        drw_start_epoch: first epoch (from 0) of deferred re-weighting.
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


#: Head-class size of the MNIST long-tailed sets (quick mode: 300): large enough to learn, small
#: enough for the chapter's time budget.
MNIST_N_MAX = 2000
#: Training budget of one MNIST run, in images seen (quick mode: one epoch): the number of epochs is
#: this divided by the training-set size, so a smaller long-tailed set is passed over more often and
#: every setting gets about the same number of optimizer steps.
MNIST_IMAGES_PER_RUN = 25_000


def drw_start(epochs: int) -> int:
    """Epoch (from 0) where DRW starts: 80% of training, as Cao et al. (epoch 160 of 200)."""
    return min(epochs - 1, int(round(DRW_FRACTION * epochs)))


def mnist_epochs(n_train: int, images: int = MNIST_IMAGES_PER_RUN) -> int:
    """Epochs that show about ``images`` training images (at least 2; 1 in quick mode)."""
    if quick_mode():
        return 1
    return max(2, round(images / n_train))


def mnist_config(epochs: int, seed: int = 0) -> TrainConfig:
    """The MNIST training recipe (fixed for plain cross-entropy on the balanced validation split).

    AdamW, learning rate 3e-3 with a warm-up of half an epoch (of the whole run when it has one
    epoch) and cosine decay, weight decay 1e-4, batches of 128 in ``channels_last``.
    """
    return TrainConfig(
        epochs=epochs,
        batch_size=128,
        lr=3e-3,
        optimizer="adamw",
        weight_decay=1e-4,
        warmup_epochs=min(0.5, epochs / 2),
        schedule="cosine",
        channels_last=True,
        seed=seed,
    )


def mnist_spec(
    imbalance_ratio: float = 100,
    profile: str = "exp",
    seed: int = 0,
    epochs: int | None = None,
    protocol: str | None = None,
    device: torch.device | str | None = None,
    n_max: int | None = None,
    val_per_class: int | None = None,
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
    config = mnist_config(epochs if epochs is not None else mnist_epochs(len(split.train)))
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
            f"head class {n_max}), MnistNet, {config.epochs} epochs"
        ),
    )


def _cifar10_spec(**kwargs) -> DatasetSpec:
    return importlib.import_module("helpers.cifar").cifar10_spec(**kwargs)


#: Registry of dataset builders, name -> ``builder(imbalance_ratio, profile, seed, epochs, protocol, device)``.
DATASETS: dict[str, Callable[..., DatasetSpec]] = {"mnist": mnist_spec, "cifar10": _cifar10_spec}


# ---------------------------------------------------------------------------------------------- runner
@dataclass
class RunRecord:
    """The raw result of one run, for plots.

    Attributes:
        method, seed: which run.
        metrics: test metrics (:data:`METRICS`), plus ``val_*`` versions on the validation set.
        history: per-epoch curves from :func:`helpers.train.train` (empty for post-hoc methods).
        test_logits: ``(N_test, C)`` float32 on the CPU.
        test_targets: ``(N_test,)`` int64 on the CPU.
        counts: training examples per class.
        seconds: training time; images_per_second: training throughput.
        diverged: the training loss became non-finite.
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


def _check_seeds(seeds: Sequence[int]) -> list[int]:
    seeds = list(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"seeds must be a non-empty list of non-negative ints, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must not repeat, got {seeds}")
    return seeds


def tensors_spec(
    data: Sequence[torch.Tensor],
    imbalance_ratio: float,
    profile: str,
    seed: int,
    n_max: int | None = None,
    val_per_class: int = 100,
) -> tuple[dict[str, torch.Tensor], list[int]]:
    """Split user tensors ``(X_train, y_train, X_test, y_test)`` into long-tailed train, val and test.

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
    data_seed: int = 0,
    protocol: str | None = None,
    device: torch.device | str | None = None,
    n_max: int | None = None,
    val_per_class: int | None = None,
    runs: list[RunRecord] | None = None,
    show_progress: bool = True,
    spec_kwargs: dict | None = None,
) -> pd.DataFrame:
    """Train every method with every seed on one long-tailed setting; return one row per run.

    Args:
        dataset: a name in :data:`DATASETS` (``"mnist"``, ``"cifar10"``), or user tensors
            ``(X_train, y_train, X_test, y_test)`` (float features or images, int64 labels), which
            are made long-tailed with :func:`helpers.imbalance.make_imbalanced_tensors`.
        model_factory: builds a fresh model; required for user tensors, optional (overrides the
            dataset's) for a named dataset.
        methods: names from :data:`METHODS` (a list or a comma-separated string).
        seeds: training seeds (initialisation, batch order, resampling).
        imbalance_ratio, profile: the long-tailed profile.
        epochs: training epochs (default: the dataset's recipe; 10 for user tensors).
        config: a full :class:`helpers.train.TrainConfig` (overrides the dataset's; ``epochs``
            still overrides its epochs when given).
        data_seed: seed of the subsampling and the validation draw (fixed across training seeds).
        protocol: passed to the dataset builder (e.g. CIFAR-10's protocols).
        device: compute device (default :func:`helpers.runtime.pick_device`).
        n_max: head-class size (default: the dataset's).
        val_per_class: validation examples per class (default: the dataset's; 100 for tensors).
        runs: if a list is given, one :class:`RunRecord` per run (curves, test logits) is appended.
        show_progress: one progress bar over the runs.
        spec_kwargs: extra keyword arguments for the dataset builder.

    Returns:
        A tidy :class:`pandas.DataFrame`: columns ``dataset, profile, imbalance_ratio, method,
        seed, epochs``, the test metrics :data:`METRICS`, their ``val_`` versions, ``seconds``,
        ``images_per_second`` and ``diverged``.

    Raises:
        ValueError / TypeError: on unknown methods or datasets, bad seeds, or malformed tensors.
    """
    names = check_methods(methods)
    seeds = _check_seeds(seeds)
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    if config is not None and not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    device = torch.device(device) if device is not None else pick_device()

    if isinstance(dataset, str):
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")
        kwargs = dict(spec_kwargs or {})
        if n_max is not None:
            kwargs["n_max"] = n_max
        if val_per_class is not None:
            kwargs["val_per_class"] = val_per_class
        spec = DATASETS[dataset](
            imbalance_ratio=imbalance_ratio, profile=profile, seed=data_seed, epochs=epochs,
            protocol=protocol, device=device, **kwargs,
        )
        spec.train.announce()
        factory = model_factory or spec.model_factory
        cfg = config or spec.config
        transform, augment = spec.transform, spec.augment

        def tensors(s: ImageSet) -> torch.Tensor:
            return s.images.to(device) if transform is not None else s.normalized(device)

        data = {
            "x_train": tensors(spec.train), "y_train": spec.train.labels.to(device),
            "x_val": tensors(spec.val), "y_val": spec.val.labels.to(device),
            "x_test": tensors(spec.test), "y_test": spec.test.labels.to(device),
        }
        counts, name = list(spec.counts), dataset
        start = spec.drw_start_epoch
    else:
        if model_factory is None:
            raise ValueError("model_factory is required when dataset is given as tensors")
        cfg = config or TrainConfig(epochs=epochs or 10, lr=3e-3, optimizer="adamw", weight_decay=1e-4)
        data, counts = tensors_spec(dataset, imbalance_ratio, profile, data_seed, n_max, val_per_class or 100)
        data = {k: v.to(device) for k, v in data.items()}
        factory, transform, augment, name = model_factory, None, None, "tensors"
        start = None
    if epochs is not None and cfg.epochs != epochs:
        cfg = replace(cfg, epochs=epochs)
    if start is None or config is not None or epochs is not None:
        start = drw_start(cfg.epochs)
    counts_t = torch.tensor(counts, dtype=torch.float64)

    trained = [m for m in names if METHODS[m].posthoc_of is None]
    for m in names:  # a post-hoc method needs its base model trained
        base = METHODS[m].posthoc_of
        if base is not None and base not in trained:
            trained.append(base)
    jobs = [(m, s) for s in seeds for m in trained]
    records: dict[tuple[str, int], RunRecord] = {}
    bar = progress(jobs, desc=f"{name} {profile}{imbalance_ratio:g}") if show_progress else jobs
    for method_name, seed in bar:
        method = METHODS[method_name]
        torch.manual_seed(seed)
        model = factory()
        if method.normed_head:
            use_normed_head(model)
        loss_fn, drw = method.make_loss(counts_t, start, device)
        loss_fn = loss_fn.to(device)
        run_cfg = replace(cfg, seed=seed, balanced_sampling=method.balanced_sampling)
        result = train(
            model, loss_fn, data["x_train"], data["y_train"], run_cfg,
            x_val=data["x_val"], y_val=data["y_val"], transform=transform, augment=augment,
            on_epoch_start=(lambda e, d=drw, f=loss_fn: d(f, e)) if drw is not None else None,
            show_progress=False,
        )
        test_logits = method.logit_scale * predict_logits(model, data["x_test"], transform=transform).cpu()
        val_logits = method.logit_scale * predict_logits(model, data["x_val"], transform=transform).cpu()
        records[(method_name, seed)] = _record(
            method_name, seed, test_logits, val_logits, data, counts, result.history,
            result.seconds, result.images_per_second, result.diverged,
        )
        records[(method_name, seed)].extra.update(config=run_cfg.to_dict(), drw_start_epoch=start)
    for m in names:
        base = METHODS[m].posthoc_of
        if base is None:
            continue
        for seed in seeds:
            b = records[(base, seed)]
            adjusted = posthoc_logit_adjustment(b.test_logits, counts, tau=LA_TAU)
            val_adjusted = posthoc_logit_adjustment(b.extra["val_logits"], counts, tau=LA_TAU)
            records[(m, seed)] = _record(
                m, seed, adjusted, val_adjusted, data, counts, b.history, 0.0, math.nan, b.diverged
            )
            records[(m, seed)].extra.update(config=b.extra["config"], drw_start_epoch=start)

    rows = []
    for seed in seeds:
        for m in names:
            rec = records[(m, seed)]
            rows.append(
                {
                    "dataset": name, "profile": profile, "imbalance_ratio": float(imbalance_ratio),
                    "method": m, "seed": seed, "epochs": cfg.epochs, **rec.metrics,
                    "seconds": rec.seconds, "images_per_second": rec.images_per_second, "diverged": rec.diverged,
                }
            )
            if runs is not None:
                runs.append(rec)
    return pd.DataFrame(rows)


def _record(method, seed, test_logits, val_logits, data, counts, history, seconds, ips, diverged) -> RunRecord:
    y_test, y_val = data["y_test"].cpu(), data["y_val"].cpu()
    finite = torch.isfinite(test_logits).all() and torch.isfinite(val_logits).all()
    if finite:
        metrics = classification_report(test_logits, y_test, counts)
        metrics.update({f"val_{k}": v for k, v in classification_report(val_logits, y_val, counts).items()})
    else:  # a diverged model: its scores are undefined, not zero
        metrics = {k: math.nan for k in METRICS} | {f"val_{k}": math.nan for k in METRICS}
    return RunRecord(
        method=method, seed=seed, metrics=metrics, history=history, test_logits=test_logits,
        test_targets=y_test, counts=list(counts), seconds=seconds, images_per_second=ips,
        diverged=bool(diverged), extra={"val_logits": val_logits},
    )


def summarize(table: pd.DataFrame, metrics: Sequence[str] = ("accuracy", "balanced_accuracy", "tail_recall",
              "worst_class_recall"), percent: bool = True) -> pd.DataFrame:
    """Mean ± std over seeds of ``metrics`` per method (rows in the table's method order), as strings.

    With ``percent`` the values are shown in percent with one decimal: ``"97.3 ± 0.4"``.
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
    """Reliability diagram (accuracy against confidence, test set) for one seed of each method."""
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


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser (every flag documented in ``--help``)."""
    method_help = "; ".join(f"{m.name}: {m.description}" for m in METHODS.values())
    parser = argparse.ArgumentParser(
        prog="python -m helpers.experiments",
        description="Train long-tail methods on a long-tailed dataset over several seeds and write the "
        "results (config, per-run metrics, per-epoch curves, provenance) as JSON.",
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
        "--seeds", type=_int_list, default=[0, 1, 2], help="comma-separated training seeds (default: 0,1,2)"
    )
    parser.add_argument(
        "--epochs", type=_positive_int, default=None, help="training epochs (default: the dataset's recipe)"
    )
    parser.add_argument(
        "--protocol", default=None,
        help="training protocol passed to the dataset builder (cifar10: e.g. paper, gpu-fast, cpu, quick; "
        "mnist: default)",
    )
    parser.add_argument(
        "--data-seed", type=int, default=0, help="seed of the long-tailed subsampling and validation draw (default: 0)"
    )
    parser.add_argument("--n-max", type=_positive_int, default=None, help="head-class size (default: the dataset's)")
    parser.add_argument(
        "--device", default=None, help="compute device, e.g. cpu or cuda (default: CUDA, then MPS, then CPU)"
    )
    parser.add_argument("--out", required=True, help="path of the JSON file to write")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (argument errors exit with status 2 and a message)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        methods = check_methods(args.methods)
    except ValueError as err:
        parser.error(f"--methods: {err}")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds: seeds must not repeat, got {args.seeds}")
    out = Path(args.out)
    if out.parent and not out.parent.exists():
        parser.error(f"--out: folder {str(out.parent)!r} does not exist")
    try:
        device = pick_device(args.device)
    except (ValueError, RuntimeError) as err:
        parser.error(f"--device: {err}")
    runs: list[RunRecord] = []
    table = run_experiment(
        args.dataset, methods=methods, seeds=args.seeds, imbalance_ratio=args.imbalance, profile=args.profile,
        epochs=args.epochs, data_seed=args.data_seed, protocol=args.protocol, device=device, n_max=args.n_max,
        runs=runs, show_progress=not args.no_progress,
    )
    payload = {
        "config": {k: v for k, v in vars(args).items() if k != "out"} | {"methods": methods},
        "train_counts": runs[0].counts,
        "train_config": runs[0].extra.get("config"),
        "drw_start_epoch": runs[0].extra.get("drw_start_epoch"),
        "runs": json.loads(table.to_json(orient="records")),
        "curves": [{"method": r.method, "seed": r.seed, "history": r.history} for r in runs],
        "provenance": provenance(device),
    }
    out.write_text(json.dumps(payload, indent=1))
    cols = ["accuracy", "balanced_accuracy", "tail_recall", "worst_class_recall"]
    print(summarize(table, cols).to_string())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
