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
    target[torch.arange(length) >= lengths.unsqueeze(1)] = -100  # padding after each sequence's end
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
    d = mean_denominator(target, weight=weight)  # all-reduced count of the whole step
    leaf2 = logits.clone().requires_grad_()
    worker_losses = []
    for worker in range(world_size):
        rows = slice(worker * 4, (worker + 1) * 4)
        worker_losses.append(
            sum(
                step_cross_entropy(z, y, d, weight=weight, world_size=world_size)
                for z, y in zip(leaf2[rows].chunk(k), target[rows].chunk(k), strict=True)
            )
        )
    averaged = sum(worker_losses) / world_size  # what DDP's gradient averaging amounts to
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
    with pytest.raises(ValueError, match="class >= 2"):
        mean_denominator(torch.tensor([0, 4]), weight=torch.ones(2))
    with pytest.raises(ValueError, match="finite and non-negative"):
        mean_denominator(torch.tensor([0, 1]), weight=torch.tensor([1.0, -1.0]))
    with pytest.raises(TypeError, match="floating-point"):
        mean_denominator(torch.tensor([0, 1]), weight=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"shape \(5,\)"):
        step_cross_entropy(logits, target, 3, weight=torch.ones(4, dtype=D64))
    with pytest.raises(ValueError, match="denominator must be a positive"):
        step_cross_entropy(logits, target, 0)
    with pytest.raises(ValueError, match="denominator must be positive"):
        step_cross_entropy(logits, target, torch.tensor(0))
    with pytest.raises(ValueError, match="denominator must be a scalar"):
        step_cross_entropy(logits, target, torch.tensor([3, 4]))
    with pytest.raises(ValueError, match="world_size"):
        step_cross_entropy(logits, target, 3, world_size=0)
    with pytest.raises(ValueError, match="target must have shape"):
        step_cross_entropy(logits, target[:, :3], 3)


def test_dtype_follows_the_input():
    logits, target = _padded_batch()
    out = step_cross_entropy(logits.float(), target, mean_denominator(target))
    assert out.dtype == torch.float32 and out.dim() == 0


def test_float16_logits_with_a_count_above_float16_max():
    """A token count D > 65,504 is inf in float16: dividing by it made the loss and gradients 0."""
    dtype = torch.float16
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 3, (70_000,), generator=g)
    # confident logits: the summed loss (about 1,000) is representable in float16, the count is not
    logits = torch.randn(70_000, 3, generator=g) * 0.1 + 5 * F.one_hot(target, 3)
    d = mean_denominator(target)
    assert d.item() == 70_000
    low = logits.to(dtype).requires_grad_()
    out = step_cross_entropy(low, target, d)
    summed = F.cross_entropy(low.detach(), target, reduction="sum")  # about 1,000: representable
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), summed.double() / 70_000, rtol=1e-3, atol=0)
    (grad,) = torch.autograd.grad(out, low)
    assert grad.abs().sum() > 0


def test_float64_stays_float64():
    logits, target = _padded_batch()
    out = step_cross_entropy(logits, target, mean_denominator(target))
    assert out.dtype == D64


def _step_loss(logits, target, weight=None):
    """A whole step in two micro-batches: the pattern the no-sync tests run."""
    d = mean_denominator(target.chunk(2), weight=weight)
    return sum(
        step_cross_entropy(z, y, d, weight=weight, world_size=2)
        for z, y in zip(logits.chunk(2), target.chunk(2), strict=True)
    )


@pytest.mark.parametrize("weighted", [False, True])
def test_no_value_is_read_on_the_meta_device(weighted):
    """Meta tensors have no values: any host read (float(), int(), bool(), a boolean mask) raises."""
    logits, target = _padded_batch()
    weight = torch.rand(5, dtype=D64, device="meta") if weighted else None
    out = _step_loss(logits.to("meta"), target.to("meta"), weight)
    assert out.device.type == "meta" and out.shape == ()


@pytest.mark.parametrize("weighted", [False, True])
def test_compiles_as_one_graph(weighted):
    """fullgraph=True fails on a host sync (graph break), so this proves the functions never sync."""
    torch._dynamo.reset()
    logits, target = _padded_batch(seed=3)
    weight = torch.tensor([0.5, 1.0, 2.0, 3.0, 0.25], dtype=D64) if weighted else None
    compiled = torch.compile(_step_loss, fullgraph=True, backend="eager")
    assert torch.allclose(compiled(logits, target, weight), 2 * F.cross_entropy(logits, target, weight=weight))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_no_host_sync_on_cuda():
    logits, target = _padded_batch()
    logits, target = logits.cuda(), target.cuda()
    weight = torch.rand(5, dtype=D64, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = _step_loss(logits, target, weight)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.allclose(out, 2 * F.cross_entropy(logits, target, weight=weight))
