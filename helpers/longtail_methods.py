"""The long-tail methods compared in chapters 4, 5 and 7: a registry of how each one trains.

A :class:`Method` says how one long-tail method trains: its loss, its sampling, its last layer and, for
post-hoc and decoupled methods, how it derives its logits from a trained base model
(:class:`PosthocInput`). :data:`METHODS` holds them by name; :func:`check_methods` validates names.

Every method's hyperparameters come from its paper, never from the test set: logit adjustment
``tau = 1`` (Menon et al.), focal ``gamma`` in {1, 2} (Lin et al.), class-balanced ``beta = 0.9999``
(Cui et al.), LDAM maximum margin 0.5 with scale 30 and a cosine (normalised) last layer, deferred
re-weighting from 80% of the optimizer steps with class-balanced weights (Cao et al.). Post-hoc and
decoupled methods (``posthoc_la``, ``crt``, ``tau_norm``; Menon et al., Kang et al.) re-use the trained
cross-entropy model of the same pair: they cost no backbone training.

Import order of the long-tail modules (each imports only those before it):
``longtail_methods <- longtail_data <- longtail_runner <- longtail_tables <- longtail_plots <- experiments``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from helpers.class_balanced import ClassBalancedSigmoidFocalLoss, effective_number_sampling, init_prior_bias
from helpers.decoupling import (
    choose_tau,
    classifier_retraining,
    crossfit_tau_logits,
    last_linear,
    norm_count_correlation,
    penultimate_features,
    tau_normalized_logits,
)
from helpers.longtail_types import RunRecord
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
from helpers.metrics import balanced_accuracy

__all__ = [
    "CB_BETA", "CB_FOCAL_GAMMA", "LA_TAU", "LDAM_MAX_MARGIN", "LDAM_SCALE", "METHODS", "Method", "Posthoc",
    "PosthocInput", "DISPLAY_NAMES", "check_methods", "display_name",
]  # fmt: skip

#: Paper values shared by several methods.
CB_BETA = 0.9999
LA_TAU = 1.0
LDAM_MAX_MARGIN = 0.5
LDAM_SCALE = 30.0
CB_FOCAL_GAMMA = 1.0
LossBuild = tuple[nn.Module, "DeferredReweighting | None"]

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
        make_loss: ``(class_counts (C,) float64, drw_start, device) -> (loss_fn, drw or None)``;
            ``drw_start`` is the optimizer step where DRW starts (the runner calls ``drw`` with the
            step before each step).
        balanced_sampling: train with class-balanced resampling (every class equally likely per draw).
        sampling: ``class_counts -> per-class weight of each example`` for resampling with
            replacement (:attr:`helpers.train.TrainConfig.sampling_weights`), or None.
        normed_head: replace the model's last linear layer by a cosine classifier (LDAM's setting).
        init_model: ``(model, class_counts)`` called on the fresh model before training (e.g. the
            prior bias of Cui et al.'s sigmoid losses), or None.
        posthoc_of: name of the method whose trained model this one re-uses (no backbone training
            of its own); ``posthoc`` computes its logits.
        posthoc: see :data:`Posthoc`.
        softmax_probabilities: the softmax of the logits is the model's probability (False for a
            model trained with per-class sigmoids: its ECE and NLL are not reported).
        decay_last_bias: False exempts the last layer's bias from weight decay (Cui et al.'s
            sigmoid/focal setting).
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
    decay_last_bias: bool = True
    softmax_probabilities: bool = True


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
    return test.float().cpu(), val.float().cpu(), {"norm_spearman": norm_count_correlation(head.weight, inp.counts)}


def _tau_norm(inp: PosthocInput) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Test logits with τ chosen on the whole validation set; validation logits cross-fitted (honest score)."""
    weight = last_linear(inp.model).weight
    scale = float(getattr(inp.model, "logit_scale", 1.0))
    val_features, test_features = inp.features("val"), inp.features("test")
    tau, scores = choose_tau(val_features, inp.data["y_val"], weight)
    test = scale * tau_normalized_logits(test_features, weight, tau)
    val, halves = crossfit_tau_logits(val_features, inp.data["y_val"], weight, seed=inp.seed)
    # tau-normalisation drops the bias: the base model scored without its bias and with tau = 0
    # separates that effect from the normalisation's
    bias_free = balanced_accuracy(scale * tau_normalized_logits(test_features, weight, 0.0), inp.data["y_test"])
    extra = {"tau": tau, "tau_val_balanced_accuracy": scores, "tau_halves": halves,
             "norm_spearman": norm_count_correlation(weight, inp.counts),
             "bias_free_balanced_accuracy": bias_free}  # fmt: skip
    return test.float().cpu(), (scale * val).float().cpu(), extra


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
            f"cross-entropy, class-balanced weights (beta={CB_BETA}), weighted mean over the batch as in "
            "Cao et al.'s CB RW (Cui et al.'s code divides by the batch size instead)",
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
            f"(beta={CB_BETA}), sum over classes / number of positives, last bias -log(C-1), not weight-decayed",
            "cui2019classbalanced",
            lambda c, s, d: (ClassBalancedSigmoidFocalLoss(c, beta=CB_BETA, gamma=CB_FOCAL_GAMMA), None),
            init_model=lambda model, counts: init_prior_bias(model),
            decay_last_bias=False,
            softmax_probabilities=False,
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
            "cross-entropy model, classifier re-trained on frozen features with class-balanced sampling "
            "(cRT; Kang et al.'s SGD recipe and class-aware epoch length)",
            "kang2020decoupling",
            _ce,
            posthoc_of="ce",
            posthoc=_crt,
        ),
        Method(
            "tau_norm",
            "cross-entropy model, classifier weights divided by norm^tau, tau chosen on validation (tau-norm); "
            "its validation score is cross-fitted (tau chosen on the other half)",
            "kang2020decoupling",
            _ce,
            posthoc_of="ce",
            posthoc=_tau_norm,
        ),
    ]


#: Registry of the compared methods, name -> :class:`Method`.
METHODS: dict[str, Method] = {m.name: m for m in _method_list()}


#: Names for readers (tables, figures), by registry id.
DISPLAY_NAMES: dict[str, str] = {
    "ce": "cross-entropy (CE)",
    "ce_inv": "CE, inverse-frequency weights",
    "ce_cb": "CE, class-balanced weights (CB RW)",
    "resample": "CE, class-balanced resampling",
    "cb_resample": "CE, effective-number resampling (CB RS)",
    "focal_g1": "focal loss, gamma 1",
    "focal_g2": "focal loss, gamma 2",
    "cb_focal": "softmax focal, CB weights",
    "cb_focal_sigmoid": "CB focal (sigmoid, Cui et al.)",
    "ldam": "LDAM",
    "ldam_drw": "LDAM-DRW",
    "ce_drw": "CE-DRW",
    "la_loss": "logit-adjusted loss",
    "balanced_softmax": "balanced softmax",
    "posthoc_la": "post-hoc logit adjustment",
    "crt": "cRT (classifier re-training)",
    "tau_norm": "tau-normalisation",
}


def display_name(method: str) -> str:
    """The reader-facing name of a registry id (the id itself if it has none)."""
    return DISPLAY_NAMES.get(method, method)


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
