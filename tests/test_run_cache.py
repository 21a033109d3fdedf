"""Unit tests for helpers.run_cache: shared settings, the cache, paired seeds, the sealed test set."""

import pytest
import torch
from torch import nn

from helpers.datasets import ImageSet
from helpers.longtail_methods import CB_BETA
from helpers.longtail_types import DatasetSpec
from helpers.losses import FocalLoss, LDAMLoss, LogitAdjustedLoss
from helpers.models import NormedLinear
from helpers.run_cache import KINDS, RunCache, build_setting, canonical_setting
from helpers.train import TrainConfig

EPOCHS = 3
COUNTS = [40, 12, 4]


def _images(n_per_class, seed, name):
    g = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.full((n,), c, dtype=torch.int64) for c, n in enumerate(n_per_class)])
    images = (torch.rand(len(labels), 1, 4, 4, generator=g) * 60).to(torch.uint8)
    images[:, 0, 0, :] += (labels * 60).to(torch.uint8)[:, None]  # learnable: the first row encodes the class
    return ImageSet(images, labels, ("a", "b", "c"), name, (0.3,), (0.3,))


def tiny_spec(seed):
    """A 3-class long-tailed toy set; the data seed changes which images are drawn."""
    return DatasetSpec(
        train=_images(COUNTS, seed, f"toy-train-{seed}"),
        val=_images([5, 5, 5], 100 + seed, f"toy-val-{seed}"),
        test=_images([7, 7, 7], 1000, "toy-test"),
        counts=list(COUNTS),
        model_factory=lambda: nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)),
        config=TrainConfig(epochs=EPOCHS, batch_size=16, lr=0.05, optimizer="adamw", weight_decay=1e-4),
        transform=None, augment=None, drw_start_epoch=2, description="toy",
    )


def test_settings_that_train_plain_cross_entropy_share_one_run():
    for kind in ("focal", "cb", "la"):
        assert canonical_setting(kind, 0, EPOCHS) == ("ce", None)
        assert canonical_setting(kind, 0.0, EPOCHS) == ("ce", None)
    assert canonical_setting("drw", EPOCHS, EPOCHS) == ("ce", None)
    assert canonical_setting("drw", EPOCHS + 4, EPOCHS) == ("ce", None)
    assert canonical_setting("drw", 0, EPOCHS, cb_beta=0.999) == ("cb", 0.999)
    assert canonical_setting("drw", 2, EPOCHS) == ("drw", 2)
    assert canonical_setting("focal", 2, EPOCHS) == canonical_setting("focal", 2.0, EPOCHS) == ("focal", 2.0)
    assert canonical_setting("ldam", 0, EPOCHS) == ("ldam", 0.0)  # margin 0 still has the cosine head


def test_the_shared_settings_are_really_the_same_loss():
    """gamma = 0, beta = 0 and tau = 0 give cross-entropy's value, the reason they share a run."""
    torch.manual_seed(0)
    logits, target = torch.randn(9, 3), torch.randint(0, 3, (9,))
    ce = nn.functional.cross_entropy(logits, target)
    counts = torch.tensor(COUNTS, dtype=torch.float64)
    for kind in ("focal", "cb", "la"):
        _, loss, drw = build_setting(kind, 0.0, lambda: nn.Linear(2, 3), counts)
        assert drw is None
        torch.testing.assert_close(loss(logits, target), ce)


def test_build_setting_builds_each_kind():
    counts = torch.tensor(COUNTS, dtype=torch.float64)
    factory = tiny_spec(0).model_factory
    expected = {"ce": nn.CrossEntropyLoss, "focal": FocalLoss, "cb": nn.CrossEntropyLoss,
                "la": LogitAdjustedLoss, "ldam": LDAMLoss, "drw": nn.CrossEntropyLoss}
    values = {"ce": None, "focal": 2.0, "cb": 0.99, "la": 1.0, "ldam": 0.5, "drw": 2}
    assert set(expected) == set(KINDS)
    for kind, cls in expected.items():
        model, loss, drw = build_setting(kind, values[kind], factory, counts)
        assert isinstance(loss, cls)
        assert isinstance(model[-1], NormedLinear) == (kind == "ldam")
        assert (drw is not None) == (kind == "drw")
    _, cb, _ = build_setting("cb", 0.99, factory, counts)
    assert cb.weight[2] > cb.weight[1] > cb.weight[0]  # rarer class, larger weight
    _, loss, drw = build_setting("drw", 2, factory, counts)
    drw(loss, 1)
    assert loss.weight is None
    drw(loss, 2)
    _, cb_default, _ = build_setting("cb", CB_BETA, factory, counts)  # DRW's weights: beta = CB_BETA
    torch.testing.assert_close(loss.weight, cb_default.weight.to(loss.weight.dtype))


@pytest.mark.parametrize(
    "kind, value, match",
    [("bce", 1.0, "kind"), ("ce", 1.0, "no knob"), ("focal", -1.0, ">= 0"), ("cb", 1.0, r"\[0, 1\)"),
     ("drw", 1.5, "whole number"), ("la", float("nan"), "finite"), ("focal", None, "finite")],
)
def test_bad_settings_raise(kind, value, match):
    with pytest.raises(ValueError, match=match):
        canonical_setting(kind, value, EPOCHS)


def test_the_cache_trains_each_distinct_setting_once_per_seed():
    made = []

    def make_spec(seed):
        made.append(seed)
        return tiny_spec(seed)

    cache = RunCache(make_spec)
    ce = cache.fit("ce", None, 0)
    assert len(cache) == 1 and 0 <= ce <= 1
    for kind in ("focal", "cb", "la"):  # the same run: no training
        assert cache.fit(kind, 0, 0) == ce
    assert cache.fit("drw", EPOCHS, 0) == ce
    assert len(cache) == 1
    cache.fit("focal", 2, 0)
    cache.fit("focal", 2.0, 0)
    assert len(cache) == 2
    cache.fit("ce", None, 0, lr=0.01)  # another learning rate is another run
    cache.fit("ce", None, 0, weight_decay=0.0)
    assert len(cache) == 4
    cache.fit("ce", None, 1)  # another seed: another data draw and another initialisation
    assert len(cache) == 5 and made == [0, 1]
    assert cache.keys[0] == cache.key("la", 0, 0) and cache.key("ce", None, 0).lr == 0.05
    assert cache.seconds > 0 and cache.cpu_seconds >= 0


def test_runs_are_reproducible_and_seeds_pair_data_and_training():
    first, again = RunCache(tiny_spec), RunCache(tiny_spec)
    torch.testing.assert_close(first.val_logits("la", 1.0, 0), again.val_logits("la", 1.0, 0))
    assert not torch.equal(first.val_logits("la", 1.0, 1), first.val_logits("la", 1.0, 0))
    assert not torch.equal(first.spec(0).train.images, first.spec(1).train.images)  # data seed follows the seed
    assert torch.equal(first.val_labels(1), tiny_spec(1).val.labels)


def test_the_test_set_is_read_only_for_trained_runs():
    cache = RunCache(tiny_spec)
    with pytest.raises(KeyError, match="fit"):
        cache.test_logits("focal", 1.0, 0)
    assert len(cache) == 0  # asking for test logits never trains
    cache.fit("focal", 1.0, 0)
    logits = cache.test_logits("focal", 1.0, 0)
    assert logits.shape == (21, 3)
    assert cache.test_logits("focal", 1.0, 0) is logits  # computed once
    assert torch.equal(cache.test_labels(0), tiny_spec(0).test.labels)


def test_cache_validation():
    with pytest.raises(TypeError, match="make_spec"):
        RunCache(tiny_spec(0))
    with pytest.raises(TypeError, match="DatasetSpec"):
        RunCache(lambda s: "mnist").spec(0)
    with pytest.raises(ValueError, match="seed"):
        RunCache(tiny_spec).spec(-1)
    with pytest.raises(ValueError, match="no spec"):
        _ = RunCache(tiny_spec).epochs

    def uneven(seed):
        spec = tiny_spec(seed)
        if seed:
            spec.config = TrainConfig(epochs=EPOCHS + 1)
        return spec

    cache = RunCache(uneven)
    cache.spec(0)
    with pytest.raises(ValueError, match="epochs"):
        cache.spec(1)
