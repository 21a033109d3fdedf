"""helpers.accumulation: a whole step's mean cross-entropy from micro-batches and workers."""

import pytest
import torch
import torch.nn.functional as F

from helpers.accumulation import mean_denominator, step_cross_entropy

D64 = torch.float64


def _padded_batch(seed=0, batch=6, length=7, vocab=5):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, vocab, length, generator=g, dtype=D64)
    target = torch.randint(0, vocab, (batch, length), generator=g)
    lengths = torch.randint(1, length + 1, (batch,), generator=g)
    target[torch.arange(length) >= lengths.unsqueeze(1)] = -100   # padding after each sequence's end
    return logits, target


@pytest.mark.parametrize("weight", [None, torch.tensor([0.5, 1.0, 2.0, 3.0, 0.25], dtype=D64)])
def test_denominator_is_what_mean_divides_by(weight):
    logits, target = _padded_batch()
    d = mean_denominator(target, weight=weight)
    summed = F.cross_entropy(logits, target, weight=weight, reduction="sum")
    assert torch.allclose(summed / d, F.cross_entropy(logits, target, weight=weight))
    if weight is None:
        assert d.dtype == torch.int64 and int(d) == int((target != -100).sum())


def test_denominator_sums_over_micro_batches():
    _, target = _padded_batch()
    assert int(mean_denominator(target.chunk(3))) == int(mean_denominator(target))


@pytest.mark.parametrize("weight", [None, torch.tensor([0.5, 1.0, 2.0, 3.0, 0.25], dtype=D64)])
def test_micro_batches_and_workers_reproduce_the_big_batch(weight):
    logits, target = _padded_batch(seed=1, batch=8)
    leaf = logits.clone().requires_grad_()
    big = F.cross_entropy(leaf, target, weight=weight)
    (g_big,) = torch.autograd.grad(big, leaf)

    world_size, k = 2, 2
    d = mean_denominator(target, weight=weight)           # all-reduced count of the whole step
    leaf2 = logits.clone().requires_grad_()
    worker_losses = []
    for worker in range(world_size):
        rows = slice(worker * 4, (worker + 1) * 4)
        worker_losses.append(sum(
            step_cross_entropy(z, y, d, weight=weight, world_size=world_size)
            for z, y in zip(leaf2[rows].chunk(k), target[rows].chunk(k), strict=True)
        ))
    averaged = sum(worker_losses) / world_size             # what DDP's gradient averaging amounts to
    (g_step,) = torch.autograd.grad(averaged, leaf2)
    assert torch.allclose(averaged, big)
    assert torch.allclose(g_step, g_big)


def test_per_micro_batch_mean_is_not_the_token_mean():
    logits, target = _padded_batch(seed=2, batch=8)
    naive = sum(F.cross_entropy(z, y) for z, y in zip(logits.chunk(4), target.chunk(4), strict=True)) / 4
    assert not torch.isclose(naive, F.cross_entropy(logits, target))


def test_validation_messages():
    logits, target = _padded_batch()
    with pytest.raises(TypeError, match="int64"):
        mean_denominator(target.float())
    with pytest.raises(ValueError, match="at least one"):
        mean_denominator([])
    with pytest.raises(ValueError, match="neither a class"):
        mean_denominator(torch.tensor([-3, 1]))
    with pytest.raises(ValueError, match="weight has 2 classes"):
        mean_denominator(torch.tensor([0, 4]), weight=torch.ones(2))
    with pytest.raises(ValueError, match="denominator must be a positive"):
        step_cross_entropy(logits, target, 0)
    with pytest.raises(ValueError, match="world_size"):
        step_cross_entropy(logits, target, 3, world_size=0)
    with pytest.raises(ValueError, match="target must have shape"):
        step_cross_entropy(logits, target[:, :3], 3)


def test_dtype_follows_the_input():
    logits, target = _padded_batch()
    out = step_cross_entropy(logits.float(), target, mean_denominator(target))
    assert out.dtype == torch.float32 and out.dim() == 0
