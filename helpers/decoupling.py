r"""Decoupling representation and classifier (Kang et al., ICLR 2020) on a model trained with cross-entropy.

Kang et al. {cite}`kang2020decoupling` train the network once with plain cross-entropy and instance-balanced
sampling, keep its features, and re-balance only the classifier. Two of their methods need no new
training of the backbone:

* **cRT** (classifier re-training, :func:`classifier_retraining`): freeze the features, re-initialise the
  last linear layer and train it alone with *class-balanced* sampling (every class equally likely per
  draw), with Kang et al.'s optimizer, schedule and epoch length (:data:`CRT_CONFIG`). The features
  are computed once and the new layer is trained on them, which makes cRT cost seconds; every
  difference from Kang et al.'s code is listed in :data:`CRT_DIFFERENCES`.
* **τ-normalisation** (:func:`tau_normalized_logits`): divide each class's weight vector by a power
  of its norm, :math:`\tilde w_c = w_c / \lVert w_c \rVert^{\tau}`, and score
  :math:`z_c = \tilde w_c^\top f(x)` (the bias is dropped, as in the authors' evaluation code).
  :math:`\tau = 0` keeps the weights (bias-free), :math:`\tau = 1` gives every class a unit-norm weight.
  Kang et al.'s reasoning: head classes learn larger norms under instance-balanced SGD training, and
  shrinking them evens out the classes' scores. The premise is a property of the optimizer: with
  Adam's per-coordinate adaptive step the norms need not track the class sizes. At chapter 4's
  MNIST budget AdamW's decoupled decay is tiny: over the run it multiplies the weights by
  :math:`\prod_t (1 - \eta_t \lambda)` (about 0.99997 for learning rate 3e-3, weight decay 1e-4 and
  195 steps), so removing it is a weak control that can hardly change the norms; chapter 4 trains its
  AdamW models again without the decay, prints that factor and reports the correlations of both
  (:func:`norm_count_correlation` measures them).
  :math:`\tau` is chosen on the balanced validation set (:func:`choose_tau`). The validation score of
  the chosen :math:`\tau` is then optimistic (the maximum of 21 noisy scores), so the validation
  logits used to *rank* τ-norm against other methods are cross-fitted (:func:`crossfit_tau_logits`):
  τ is chosen on one half of the validation set and applied to the other, then the halves swap.

``f(x)`` is the input of the model's last :class:`torch.nn.Linear` (:func:`penultimate_features`),
captured with a forward hook, so any model whose classifier is its last ``nn.Linear`` works
(:class:`helpers.models.MnistNet`, :class:`helpers.cifar.ResNet32`, :class:`helpers.cifar.FastNet`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from helpers.metrics import balanced_accuracy
from helpers.train import TrainConfig, predict_logits, train

__all__ = [
    "CRT_ADAMW_CONFIG",
    "CRT_CONFIG",
    "CRT_DIFFERENCES",
    "TAU_GRID",
    "choose_tau",
    "classifier_retraining",
    "crossfit_tau_logits",
    "norm_count_correlation",
    "last_linear",
    "penultimate_features",
    "tau_normalized_logits",
]

#: The cRT recipe on frozen features, Kang et al.'s (``config/ImageNet_LT/cls_crt.yaml``): SGD with
#: momentum 0.9, learning rate 0.2, weight decay 5e-4, cosine decay, batches of 512, 10 epochs of
#: class-aware sampling. Kang et al.'s ``ClassAwareSampler`` epoch is ``C * max_count`` draws, not
#: ``N``: :func:`classifier_retraining` converts the 10 epochs into as many draws.
CRT_CONFIG = TrainConfig(
    epochs=10, batch_size=512, lr=0.2, optimizer="sgd", momentum=0.9, weight_decay=5e-4, schedule="cosine",
    balanced_sampling=True,
)
#: The book's earlier cRT recipe (AdamW at 1e-2, batches of 256, epochs of ``N`` draws), kept for comparison.
CRT_ADAMW_CONFIG = TrainConfig(
    epochs=10, batch_size=256, lr=1e-2, optimizer="adamw", weight_decay=5e-4, schedule="cosine",
    balanced_sampling=True,
)
#: How the book's cRT differs from Kang et al.'s, for the pages that report it.
CRT_DIFFERENCES = (
    "features computed once by the frozen network, without augmentation (Kang et al. re-run the frozen "
    "backbone on augmented images; the MNIST runs use no augmentation, so there it changes nothing)",
    "class-balanced draws with replacement (each draw: a class with probability 1/C, then a uniform example "
    "of it) instead of Kang et al.'s ClassAwareSampler, which cycles over the classes in shuffled order and "
    "takes 4 consecutive images of a class per visit; the number of draws per epoch is theirs (C x largest "
    "class)",
)


#: The τ values tried on the validation set: 0, 0.1, ..., 2.0.
TAU_GRID = tuple(round(0.1 * k, 1) for k in range(21))


def last_linear(model: nn.Module) -> nn.Linear:
    """The model's last :class:`nn.Linear` (its classifier), or ``ValueError`` if it has none."""
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    if last is None:
        raise ValueError(
            "decoupling needs a model whose classifier is its last nn.Linear; this model has none "
            "(a cosine head such as NormedLinear is not one)"
        )
    return last


@torch.no_grad()
def penultimate_features(
    model: nn.Module,
    x: torch.Tensor,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 1024,
    channels_last: bool = False,
) -> torch.Tensor:
    """Inputs of the model's last ``nn.Linear`` for ``x`` (eval mode), ``float32`` ``(N, D)`` on ``x``'s device."""
    head = last_linear(model)
    captured: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda module, args: captured.append(args[0].detach().float()))
    try:
        predict_logits(model, x, batch_size=batch_size, transform=transform, channels_last=channels_last)
    finally:
        hook.remove()
    return torch.cat(captured)


def classifier_retraining(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    seed: int = 0,
    config: TrainConfig = CRT_CONFIG,
    class_aware_epochs: bool = True,
) -> nn.Linear:
    """cRT: a fresh ``nn.Linear(D, num_classes)`` trained on frozen ``features`` with class-balanced sampling.

    Args:
        features: ``(N, D)`` floating features of the training set (:func:`penultimate_features`).
        labels: ``(N,)`` int64 labels, on the same device.
        num_classes: output width.
        seed: seeds the initialisation and the draws.
        config: the recipe (default :data:`CRT_CONFIG`, Kang et al.'s); class-balanced sampling is forced on.
        class_aware_epochs: count an epoch as Kang et al.'s class-aware sampler does, ``C * max_count``
            draws: the run takes ``ceil(config.epochs * C * max_count / N)`` passes of ``N`` draws.
            False: an epoch is ``N`` draws.

    Returns:
        The trained linear layer (on ``features``' device).
    """
    if not torch.is_floating_point(features) or features.dim() != 2:
        raise ValueError(f"features must be a floating tensor of shape (N, D), got {tuple(features.shape)}")
    if labels.shape != (features.shape[0],):
        raise ValueError(f"labels must have shape ({features.shape[0]},), got {tuple(labels.shape)}")
    epochs = config.epochs
    if class_aware_epochs:
        max_count = int(torch.bincount(labels.cpu(), minlength=num_classes).max())
        epochs = math.ceil(config.epochs * num_classes * max_count / features.shape[0])
    torch.manual_seed(seed)
    head = nn.Linear(features.shape[1], num_classes).to(features.device)
    cfg = TrainConfig(**{**config.to_dict(), "seed": seed, "balanced_sampling": True, "epochs": epochs,
                         "milestones": tuple(config.milestones)})  # fmt: skip
    train(head, nn.CrossEntropyLoss(), features, labels, cfg, show_progress=False)
    return head.eval()


def tau_normalized_logits(features: torch.Tensor, weight: torch.Tensor, tau: float) -> torch.Tensor:
    r"""Logits :math:`z_{ic} = f_i^\top w_c / \lVert w_c \rVert^{\tau}` for features ``(N, D)``, weight ``(C, D)``."""
    if weight.dim() != 2 or features.dim() != 2 or weight.shape[1] != features.shape[1]:
        raise ValueError(
            "need features (N, D) and weight (C, D) with the same D, got "
            f"{tuple(features.shape)} and {tuple(weight.shape)}"
        )
    if not tau >= 0:
        raise ValueError(f"tau must be >= 0, got {tau!r}")
    w = weight.detach().to(features.dtype)
    return features @ (w / w.norm(dim=1, keepdim=True).pow(tau)).T


def choose_tau(
    val_features: torch.Tensor, val_labels: torch.Tensor, weight: torch.Tensor, grid: Sequence[float] = TAU_GRID
) -> tuple[float, dict[float, float]]:
    """The τ of ``grid`` with the highest validation balanced accuracy (the smallest on a tie), and every score."""
    if not len(grid):
        raise ValueError("grid must hold at least one tau")
    labels = val_labels.to(val_features.device)
    scores = {float(t): balanced_accuracy(tau_normalized_logits(val_features, weight, float(t)), labels) for t in grid}
    best = max(scores.values())
    return min(t for t, s in scores.items() if s == best), scores


def _stratified_halves(labels: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint index sets that split every class of ``labels`` in half (at random, seeded)."""
    g = torch.Generator().manual_seed(seed)
    first, second = [], []
    cpu = labels.cpu()
    for c in torch.unique(cpu):
        idx = torch.nonzero(cpu == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        first.append(idx[: len(idx) // 2])
        second.append(idx[len(idx) // 2 :])
    return torch.cat(first).sort().values, torch.cat(second).sort().values


def crossfit_tau_logits(
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    weight: torch.Tensor,
    grid: Sequence[float] = TAU_GRID,
    seed: int = 0,
) -> tuple[torch.Tensor, tuple[float, float]]:
    """Cross-fitted τ-normalised validation logits: each half scored with the τ chosen on the other half.

    The validation set is split into two class-stratified halves A and B (seeded). τ_A is chosen on A
    (:func:`choose_tau`) and applied to B, τ_B is chosen on B and applied to A. No validation example
    is scored with a τ that saw it, so the balanced accuracy of the returned logits is an honest
    (not optimistic) estimate of "choose τ on validation, apply it to new data".

    Returns:
        ``(logits (N_val, C), (tau_A, tau_B))``, logits in ``val_features``' dtype and device.
    """
    if val_features.dim() != 2 or val_labels.shape != (val_features.shape[0],):
        raise ValueError(
            f"need val_features (N, D) and val_labels (N,), got {tuple(val_features.shape)} and "
            f"{tuple(val_labels.shape)}"
        )
    a, b = _stratified_halves(val_labels, seed)
    if len(a) == 0 or len(b) == 0:
        raise ValueError("cross-fitting needs at least two validation examples of some class")
    labels = val_labels.to(val_features.device)
    a_dev, b_dev = a.to(val_features.device), b.to(val_features.device)
    tau_a, _ = choose_tau(val_features[a_dev], labels[a_dev], weight, grid)
    tau_b, _ = choose_tau(val_features[b_dev], labels[b_dev], weight, grid)
    out = torch.empty(val_features.shape[0], weight.shape[0], dtype=val_features.dtype, device=val_features.device)
    out[b_dev] = tau_normalized_logits(val_features[b_dev], weight, tau_a)
    out[a_dev] = tau_normalized_logits(val_features[a_dev], weight, tau_b)
    return out, (tau_a, tau_b)


def norm_count_correlation(weight: torch.Tensor, counts: Sequence[int]) -> float:
    """Spearman rank correlation between the classifier's row norms ``||w_c||`` and the class counts.

    Near +1: head classes have the larger norms, the situation τ-normalisation corrects. Ties in the
    counts (a step profile) get average ranks.
    """
    from scipy.stats import spearmanr

    if weight.dim() != 2 or weight.shape[0] != len(counts):
        raise ValueError(f"weight must be (C, D) with C = len(counts) = {len(counts)}, got {tuple(weight.shape)}")
    norms = weight.detach().double().norm(dim=1).cpu().numpy()
    return float(spearmanr(norms, list(counts))[0])
