"""The datasets of the long-tail experiments: the MNIST-LT recipe and spec, the registry, user tensors.

* :func:`mnist_spec` -- long-tailed real MNIST with :class:`helpers.models.MnistNet` and a training
  recipe from :func:`mnist_config` (the book's AdamW recipe, or the papers' SGD);
* :data:`DATASETS` -- name -> builder of a :class:`helpers.longtail_types.DatasetSpec` (``mnist``,
  ``cifar10``, ``cifar100``; the CIFAR builders live in :mod:`helpers.cifar`), and the protocols each
  accepts (:data:`DATASET_PROTOCOLS`);
* :func:`tensors_spec` -- user tensors made long-tailed, with a balanced validation split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from helpers.cifar import PROTOCOLS, cifar10_spec, cifar100_spec
from helpers.datasets import load_mnist
from helpers.imbalance import make_imbalanced, make_imbalanced_tensors
from helpers.longtail_types import DatasetSpec, drw_start
from helpers.models import MnistNet
from helpers.runtime import quick_mode
from helpers.train import TrainConfig

__all__ = [
    "DATASETS", "DATASET_PROTOCOLS", "ExperimentConfigError", "MNIST_IMAGES_PER_RUN", "MNIST_N_MAX",
    "MNIST_RECIPES", "MNIST_SGD_LR", "mnist_config", "mnist_epochs", "mnist_spec", "tensors_spec",
]  # fmt: skip


class ExperimentConfigError(ValueError):
    """The experiment's arguments cannot build its data (e.g. an imbalance that empties a class)."""


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
    """An MNIST training recipe; ``"adamw"`` (default) was chosen by hand for plain cross-entropy (no recorded search).

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
