"""Decoupling (Kang et al. 2020): last-layer features, tau-normalisation, cRT, and their registry entries."""

import pytest
import torch
from torch import nn

from helpers import longtail_runner as lt_runner
from helpers.decoupling import (
    TAU_GRID,
    choose_tau,
    classifier_retraining,
    last_linear,
    penultimate_features,
    tau_normalized_logits,
)
from helpers.metrics import balanced_accuracy
from helpers.train import TrainConfig


def mlp():
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


def test_penultimate_features_are_the_input_of_the_last_linear():
    torch.manual_seed(0)
    model = mlp()
    x = torch.randn(50, 6)
    features = penultimate_features(model, x, batch_size=16)
    assert torch.allclose(features, torch.relu(model[0](x)))
    assert last_linear(model) is model[2] and model.training  # mode restored
    with pytest.raises(ValueError, match="last nn.Linear"):
        last_linear(nn.Conv2d(1, 2, 3))


def test_tau_normalisation_divides_each_class_weight_by_its_norm_to_the_tau():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(7, 5, generator=g)
    weight = torch.randn(3, 5, generator=g) * torch.tensor([[4.0], [1.0], [0.2]])
    assert torch.allclose(tau_normalized_logits(features, weight, 0.0), features @ weight.T)
    unit = tau_normalized_logits(features, weight, 1.0)
    manual = torch.stack([features @ (w / w.norm()) for w in weight], 1)
    assert torch.allclose(unit, manual, atol=1e-6)
    half = tau_normalized_logits(features, weight, 0.5)
    assert torch.allclose(half, torch.stack([features @ (w / w.norm() ** 0.5) for w in weight], 1), atol=1e-6)
    with pytest.raises(ValueError, match="same D"):
        tau_normalized_logits(features, weight[:, :4], 1.0)


def test_choose_tau_fixes_a_head_biased_classifier_on_validation():
    # Two well-separated classes; the head class's weight is 10x longer, so tau = 0 predicts the head everywhere.
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(2).repeat_interleave(100)
    features = torch.nn.functional.one_hot(labels, 2).float() + 0.1 * torch.randn(200, 2, generator=g)
    weight = torch.tensor([[10.0, 3.0], [0.0, 1.0]])
    assert balanced_accuracy(tau_normalized_logits(features, weight, 0.0), labels) < 0.6
    tau, scores = choose_tau(features, labels, weight)
    assert set(scores) == set(TAU_GRID) and scores[tau] == max(scores.values()) > 0.95 and tau > 0
    assert tau == min(t for t, s in scores.items() if s == scores[tau])  # the smallest tau among ties


def test_crt_trains_a_fresh_classifier_with_class_balanced_draws():
    g = torch.Generator().manual_seed(0)
    counts = [300, 30, 3]
    labels = torch.arange(3).repeat_interleave(torch.tensor(counts))
    centers = torch.tensor([[2.0, 0.0], [0.0, 2.0], [-2.0, -2.0]])
    features = centers[labels] + 0.5 * torch.randn(len(labels), 2, generator=g)
    config = TrainConfig(epochs=5, batch_size=32, lr=5e-2, optimizer="adamw", weight_decay=0.0)
    head = classifier_retraining(features, labels, 3, seed=1, config=config)
    again = classifier_retraining(features, labels, 3, seed=1, config=config)
    assert isinstance(head, nn.Linear) and torch.equal(head.weight, again.weight)  # seeded
    with torch.no_grad():
        assert balanced_accuracy(head(features), labels) > 0.95
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        classifier_retraining(features[:, 0], labels, 3)


def test_decoupled_methods_reuse_one_cross_entropy_model_per_pair(monkeypatch):
    from test_experiments import TINY, blob_tensors, count_trainings

    trained = count_trainings(monkeypatch)
    runs = []
    table = lt_runner.run_experiment(
        blob_tensors(), mlp, methods=["crt", "tau_norm", "posthoc_la"], seeds=[0, 1], imbalance_ratio=10,
        config=TINY, val_per_class=10, runs=runs, show_progress=False,
    )  # fmt: skip
    assert trained == [("ce", 0), ("ce", 1)]  # CE trained once per pair, not requested, not reported
    assert list(table["method"]) == ["crt", "tau_norm", "posthoc_la"] * 2
    assert (table["seconds"] == 0).all() and table["balanced_accuracy"].between(0, 1).all()
    taus = table.set_index("method")["tau"]
    assert taus.loc["tau_norm"].between(0, 2).all() and (taus.loc["posthoc_la"] == 1.0).all()
    assert taus.loc["crt"].isna().all() and (table.loc[table.method == "crt", "posthoc_seconds"] > 0).all()
    tau_run = next(r for r in runs if r.method == "tau_norm")
    assert tau_run.extra["tau"] in TAU_GRID and len(tau_run.extra["tau_val_balanced_accuracy"]) == len(TAU_GRID)


def test_crossfitted_tau_score_is_not_optimistic_where_the_in_sample_score_is():
    """Features carry no information about the labels: every tau has expected balanced accuracy 1/C.

    Choosing tau on the validation set and scoring the same set is biased upwards (the maximum of 21
    noisy scores); the cross-fitted score (choose on one half, score the other, swap) is not.
    """
    from helpers.decoupling import crossfit_tau_logits

    g = torch.Generator().manual_seed(0)
    classes, per_class, reps = 5, 20, 150
    in_sample, crossfit = [], []
    for rep in range(reps):
        weight = torch.randn(classes, 8, generator=g) * torch.linspace(0.2, 3.0, classes)[:, None]
        feats = torch.randn(classes * per_class, 8, generator=g).abs()
        labels = torch.arange(classes).repeat_interleave(per_class)
        tau, scores = choose_tau(feats, labels, weight)
        in_sample.append(scores[tau])
        logits, taus = crossfit_tau_logits(feats, labels, weight, seed=rep)
        assert all(t in TAU_GRID for t in taus) and logits.shape == (len(labels), classes)
        crossfit.append(balanced_accuracy(logits, labels))
    chance, se = 1 / classes, torch.tensor(crossfit).std().item() / reps**0.5
    se_in = torch.tensor(in_sample).std().item() / reps**0.5
    assert sum(in_sample) / reps > chance + 5 * se_in  # optimistic, far beyond Monte-Carlo error
    assert abs(sum(crossfit) / reps - chance) < 3 * se + 0.005  # unbiased within Monte-Carlo error


def test_crossfit_checks_shapes():
    from helpers.decoupling import crossfit_tau_logits

    with pytest.raises(ValueError, match="val_labels"):
        crossfit_tau_logits(torch.randn(4, 3), torch.zeros(3, dtype=torch.long), torch.randn(2, 3))


def test_crt_counts_epochs_as_kangs_class_aware_sampler():
    """10 class-aware epochs of C * max_count draws become ceil(10 * C * max_count / N) passes of N draws."""
    from helpers import decoupling

    seen = []
    original = decoupling.train

    def spy(head, loss, x, y, cfg, **kw):
        seen.append(cfg)
        return original(head, loss, x, y, cfg, **kw)

    labels = torch.tensor([0] * 40 + [1] * 8 + [2] * 2)
    feats = torch.randn(50, 4)
    try:
        decoupling.train = spy
        classifier_retraining(feats, labels, 3)
        classifier_retraining(feats, labels, 3, class_aware_epochs=False)
    finally:
        decoupling.train = original
    assert seen[0].epochs == 24 and seen[1].epochs == 10  # ceil(10 * 3 * 40 / 50)
    assert (seen[0].optimizer, seen[0].lr, seen[0].batch_size, seen[0].schedule) == ("sgd", 0.2, 512, "cosine")


def test_norm_count_correlation_reads_head_heavy_norms():
    from helpers.decoupling import norm_count_correlation

    weight = torch.randn(5, 3)
    weight = weight / weight.norm(dim=1, keepdim=True) * torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0])[:, None]
    assert norm_count_correlation(weight, [500, 200, 80, 30, 10]) == pytest.approx(1.0)
    assert norm_count_correlation(weight, [10, 30, 80, 200, 500]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="weight"):
        norm_count_correlation(weight, [1, 2])
