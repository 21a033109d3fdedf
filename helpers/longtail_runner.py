"""The runner of the long-tail experiments: train every method on every seed pair, one row per run.

One *run* trains one model with one method (:mod:`helpers.longtail_methods`) on a long-tailed training
set (:mod:`helpers.longtail_data`), then scores it on the untouched, balanced test set with
:func:`helpers.metrics.classification_report`. :func:`run_experiment` loops over methods x seeds and
returns one row per run. A run's seed fixes both its *data seed* (which images the long-tailed draw
keeps, and which left-out images form the balanced validation set) and its *training seed*
(initialisation, batch order, resampling, augmentation): pair ``i`` uses data seed ``i`` and training
seed ``i``, so the spread over seeds covers both sources of variance (``data_seed=k`` keeps the data
fixed instead). Runs of different methods with the same ``(seed, data_seed)`` are *paired*
(:mod:`helpers.longtail_tables` compares them).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace

import pandas as pd
import torch
from torch import nn

from helpers.datasets import ImageSet
from helpers.imbalance import PROFILES
from helpers.longtail_data import DATASETS, ExperimentConfigError, tensors_spec
from helpers.longtail_methods import METHODS, Method, PosthocInput, check_methods
from helpers.longtail_types import RunRecord, drw_start, drw_start_step
from helpers.metrics import classification_report, describe_groups
from helpers.models import use_normed_head
from helpers.runtime import pick_device, progress
from helpers.train import TrainConfig, predict_logits, train

__all__ = ["METRICS", "run_experiment"]

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
    data_source: str = "real"  # "real", "synthetic" (the CIFAR stand-in) or "user tensors"


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
                     spec.augment, start, spec.description,
                     "synthetic" if spec.train.synthetic else "real")  # fmt: skip


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
                     f"user tensors, {profile} {imbalance_ratio:g}, data seed {data_seed}", "user tensors")  # fmt: skip


def _record(
    method: str, seed: int, data_seed: int, test_logits, val_logits, pair: _PairData, history, seconds, ips, diverged,
) -> RunRecord:  # fmt: skip
    data, counts = pair.data, pair.counts
    y_test, y_val = data["y_test"].cpu(), data["y_val"].cpu()
    finite = bool(torch.isfinite(test_logits).all() and torch.isfinite(val_logits).all())
    if finite:
        metrics = classification_report(test_logits, y_test, counts)
        metrics.update({f"val_{k}": v for k, v in classification_report(val_logits, y_val, counts).items()})
        if method in METHODS and not METHODS[method].softmax_probabilities:
            # a sigmoid-trained model: softmax(logits) are not its probabilities, so no calibration numbers
            metrics.update({k: math.nan for k in ("ece", "nll", "val_ece", "val_nll")})
    else:  # a diverged model: its scores are undefined, not zero
        keys = classification_report(torch.eye(len(counts)), torch.arange(len(counts)), counts)
        metrics = {k: math.nan for k in keys} | {f"val_{k}": math.nan for k in keys}
    return RunRecord(
        method=method, seed=seed, metrics=metrics, history=history, test_logits=test_logits,
        test_targets=y_test, counts=list(counts), seconds=seconds, images_per_second=ips,
        diverged=bool(diverged or not finite), data_seed=data_seed,
        extra={"val_logits": val_logits, "config": pair.config.to_dict(), "drw_start_epoch": pair.drw_start_epoch,
               "groups": describe_groups(counts), "data_source": pair.data_source},
    )  # fmt: skip


def _train_one(method: Method, seed: int, pair: _PairData, device: torch.device) -> tuple[RunRecord, nn.Module]:
    counts_t = torch.tensor(pair.counts, dtype=torch.float64)
    torch.manual_seed(seed)
    model = pair.factory()
    if method.normed_head:
        use_normed_head(model)
    if method.init_model is not None:
        method.init_model(model, counts_t)
    data = pair.data
    steps_per_epoch = math.ceil(data["x_train"].shape[0] / pair.config.batch_size)
    start_step = drw_start_step(pair.config.epochs, steps_per_epoch)
    loss_fn, drw = method.make_loss(counts_t, start_step, device)
    loss_fn = loss_fn.to(device)
    sampling = tuple(method.sampling(counts_t).tolist()) if method.sampling is not None else None
    run_cfg = replace(pair.config, seed=seed, balanced_sampling=method.balanced_sampling, sampling_weights=sampling,
                      decay_last_bias=pair.config.decay_last_bias and method.decay_last_bias)  # fmt: skip
    scale = method.logit_scale
    result = train(
        model, loss_fn, data["x_train"], data["y_train"], run_cfg,
        x_val=data["x_val"], y_val=data["y_val"], transform=pair.transform, augment=pair.augment,
        on_step_start=(lambda s, d=drw, f=loss_fn: d(f, s)) if drw is not None else None,
        ce_scale=scale, show_progress=False,
    )  # fmt: skip
    test_logits = scale * predict_logits(model, data["x_test"], transform=pair.transform).cpu()
    val_logits = scale * predict_logits(model, data["x_val"], transform=pair.transform).cpu()
    record = _record(method.name, seed, pair.data_seed, test_logits, val_logits, pair, result.history,
                     result.seconds, result.images_per_second, result.diverged)  # fmt: skip
    record.extra["config"] = run_cfg.to_dict()
    if drw is not None:
        total = pair.config.epochs * steps_per_epoch
        record.extra.update(drw_start_step=start_step, drw_fraction=start_step / total)
    return record, model


def _derive(method: Method, inp: PosthocInput, pair: _PairData) -> RunRecord:
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
        "norm_spearman": float(rec.extra.get("norm_spearman", math.nan)),
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
        ``images_per_second``, ``diverged``, ``tau`` (the post-hoc knob, NaN if none) and
        ``norm_spearman`` (decoupled methods: Spearman correlation of classifier norms and class counts).

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
