"""Unit tests for helpers.train and the models in helpers.models (tiny, CPU-only, a few seconds)."""

import math

import pytest
import torch
from torch import nn

from helpers.models import MnistNet, NormedLinear, SmallCNN, use_normed_head
from helpers.train import TrainConfig, _epoch_indices, lr_at, predict_logits, train


def blobs(n_per_class=40, num_classes=3, dim=8, seed=0):
    """Separable Gaussian blobs: features (N, dim) float32, labels (N,) int64."""
    g = torch.Generator().manual_seed(seed)
    centers = 3 * torch.randn(num_classes, dim, generator=g)
    y = torch.arange(num_classes).repeat_interleave(n_per_class)
    x = centers[y] + torch.randn(len(y), dim, generator=g)
    return x, y


def mlp(dim=8, num_classes=3):
    return nn.Sequential(nn.Linear(dim, 16), nn.ReLU(), nn.Linear(16, num_classes))


def run(seed, config_kwargs=None, **train_kwargs):
    x, y = blobs()
    torch.manual_seed(seed)
    model = mlp()
    config = TrainConfig(epochs=3, batch_size=16, lr=0.05, seed=seed, **(config_kwargs or {}))
    return train(model, nn.CrossEntropyLoss(), x, y, config, x_val=x, y_val=y, show_progress=False, **train_kwargs)


def test_same_seed_same_curves_and_weights():
    a, b = run(0), run(0)
    assert a.history["train_loss"] == b.history["train_loss"]
    assert a.history["val_balanced_accuracy"] == b.history["val_balanced_accuracy"]
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)
    c = run(1)
    assert c.history["train_loss"] != a.history["train_loss"]


def test_history_has_one_entry_per_epoch_and_learns():
    result = run(0)
    for key in ("epoch", "train_loss", "lr", "seconds", "val_loss", "val_accuracy", "val_worst_class_recall"):
        assert len(result.history[key]) == 3, key
    assert result.history["epoch"] == [1, 2, 3]
    assert result.history["train_loss"][-1] < result.history["train_loss"][0]
    assert result.history["val_accuracy"][-1] > 0.9
    assert result.images_per_second > 0 and result.seconds > 0 and not result.diverged


def test_cuda_flags_are_harmless_on_cpu():
    plain = run(0)
    flagged = run(0, {"amp": True, "compile": True})  # both ignored off CUDA
    assert flagged.history["train_loss"] == plain.history["train_loss"]
    x = torch.randn(64, 1, 28, 28)
    y = torch.arange(64) % 10
    config = TrainConfig(epochs=1, batch_size=32, lr=1e-3, optimizer="adamw", channels_last=True, amp=True)
    result = train(MnistNet(), nn.CrossEntropyLoss(), x, y, config, show_progress=False)
    assert math.isfinite(result.history["train_loss"][0])


def test_warmup_then_cosine():
    config = TrainConfig(epochs=4, lr=1.0, warmup_epochs=1, schedule="cosine")
    lrs = [lr_at(config, s, 10) for s in range(40)]
    assert lrs[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[25] == pytest.approx(0.5)  # halfway through the 30 cosine steps
    assert lrs[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 29 / 30)))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))


def test_step_and_constant_schedules():
    config = TrainConfig(epochs=6, lr=0.1, schedule="step", milestones=(2, 4), gamma=0.1)
    assert [lr_at(config, e * 5, 5) for e in range(6)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    constant = TrainConfig(epochs=2, lr=0.3, schedule="constant")
    assert {lr_at(constant, s, 7) for s in range(14)} == {0.3}


def test_trainer_applies_the_schedule():
    result = run(0, {"schedule": "step", "milestones": (1, 2), "gamma": 0.5})
    assert result.history["lr"] == pytest.approx([0.05, 0.025, 0.0125])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"optimizer": "adam"}, "optimizer"),
        ({"schedule": "linear"}, "schedule"),
        ({"schedule": "step"}, "milestones"),
        ({"milestones": (3, 2), "schedule": "step"}, "milestones"),
        ({"warmup_epochs": 5, "epochs": 5}, "warmup_epochs"),
        ({"epochs": 0}, "epochs"),
        ({"lr": -1.0}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"seed": -1}, "seed"),
        ({"gamma": 0.0}, "gamma"),
    ],
)
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_bad_data_gives_clear_errors():
    x, y = blobs()
    config = TrainConfig(epochs=1)
    with pytest.raises(TypeError, match="y_train"):
        train(mlp(), nn.CrossEntropyLoss(), x, y.float(), config, show_progress=False)
    with pytest.raises(ValueError, match="examples"):
        train(mlp(), nn.CrossEntropyLoss(), x, y[:-1], config, show_progress=False)
    with pytest.raises(ValueError, match="transform"):
        train(mlp(), nn.CrossEntropyLoss(), x.to(torch.uint8), y, config, show_progress=False)
    with pytest.raises(ValueError, match="x_val and y_val"):
        train(mlp(), nn.CrossEntropyLoss(), x, y, config, x_val=x, show_progress=False)


def test_transform_augment_and_epoch_callback():
    images = torch.randint(0, 256, (48, 1, 28, 28), dtype=torch.uint8)
    labels = torch.arange(48) % 10
    seen_epochs, generators = [], []

    def transform(batch):
        assert batch.dtype == torch.uint8
        return batch.float().div(255)

    def augment(batch, generator):
        generators.append(generator)
        assert batch.dtype == torch.float32
        return batch.flip(3)

    config = TrainConfig(epochs=2, batch_size=16, lr=1e-3, optimizer="adamw")
    train(
        MnistNet(), nn.CrossEntropyLoss(), images, labels, config, x_val=images, y_val=labels,
        transform=transform, augment=augment, on_epoch_start=seen_epochs.append, show_progress=False,
    )
    assert seen_epochs == [0, 1]
    assert len(generators) == 6 and all(isinstance(g, torch.Generator) for g in generators)


def test_balanced_sampling_equalises_classes():
    y = torch.tensor([0] * 900 + [1] * 90 + [2] * 10)
    idx = _epoch_indices(y, True, torch.Generator().manual_seed(0), 3)
    share = torch.bincount(y[idx], minlength=3).double() / len(idx)
    assert len(idx) == len(y)
    assert share.tolist() == pytest.approx([1 / 3] * 3, abs=0.05)
    plain = _epoch_indices(y, False, torch.Generator().manual_seed(0), 3)
    assert torch.equal(plain.sort().values, torch.arange(len(y)))


def test_divergence_is_reported_and_stops_training():
    x, y = blobs()
    nan_loss = lambda logits, target: logits.sum() * float("nan")
    result = train(mlp(), nan_loss, x, y, TrainConfig(epochs=4, batch_size=32), show_progress=False)
    assert result.diverged and len(result.history["train_loss"]) == 1


def test_predict_logits_shape_and_mode():
    model = mlp()
    model.train()
    x, _ = blobs()
    logits = predict_logits(model, x, batch_size=7)
    assert logits.shape == (len(x), 3) and logits.dtype == torch.float32
    assert model.training
    model.eval()
    assert torch.allclose(logits, model(x), atol=1e-6)


def test_models_and_normed_head():
    assert SmallCNN(1, 10)(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert MnistNet()(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert MnistNet(hidden=0, widths=(4, 8))(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    model = use_normed_head(MnistNet())
    assert isinstance(model.classifier, NormedLinear)
    out = model(torch.randn(5, 1, 28, 28))
    assert out.shape == (5, 10) and out.abs().max() <= 1 + 1e-5  # cosines
    with pytest.raises(ValueError, match="nn.Linear"):
        use_normed_head(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match="image_size"):
        MnistNet(image_size=30)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_make_optimizer_fused_on_cpu_and_same_update_as_default(optimizer):
    """The fused CPU update is the default one, computed in one kernel: same parameters after steps."""
    from helpers.train import make_optimizer

    torch.manual_seed(0)
    models = [nn.Linear(5, 3), nn.Linear(5, 3)]
    models[1].load_state_dict(models[0].state_dict())
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    opts = [
        make_optimizer(m, TrainConfig(optimizer=optimizer, lr=0.05, weight_decay=1e-3, fused=f))
        for m, f in zip(models, (True, False), strict=True)
    ]
    assert opts[0].defaults.get("fused") is True
    assert not opts[1].defaults.get("fused")
    for _ in range(5):
        for m, opt in zip(models, opts, strict=True):
            opt.zero_grad()
            nn.functional.cross_entropy(m(x), y).backward()
            opt.step()
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
