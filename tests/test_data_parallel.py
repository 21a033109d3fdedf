"""helpers.data_parallel: real 2-process gloo runs reproduce the single-process big batch."""

import time

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from helpers.data_parallel import accumulation_worker, info_nce_worker, run_workers

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")

ROWS = [[0, 1, 4, 5], [2, 3, 6, 7]]


def _grad(loss, module):
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(module.parameters()))])


def _rel(g, ref):
    return ((g - ref).norm() / ref.norm()).item()


@pytest.fixture(scope="module")
def lm_step():
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([32, 31, 4, 2, 17, 20, 9, 12])
    tokens = torch.randint(0, 50, (8, 32), generator=g)
    targets = torch.randint(0, 50, (8, 32), generator=g)
    targets[torch.arange(32) >= lengths[:, None]] = -100
    torch.manual_seed(1)
    lm = nn.Sequential(nn.Embedding(50, 16), nn.Linear(16, 50))
    big = F.cross_entropy(lm(tokens).flatten(0, 1), targets.flatten())
    results = run_workers(accumulation_worker, 2, lm, tokens, targets, ROWS, 2)
    return big, _grad(big, lm), results


def test_step_count_reproduces_the_big_batch_and_worker_means_do_not(lm_step):
    big, ref, results = lm_step
    for r in results:
        assert _rel(r["step"]["grad"], ref) < 1e-5
        assert _rel(r["worker"]["grad"], ref) > 0.1
        assert r["step"]["step_loss"] == pytest.approx(big.item(), rel=1e-5)
    # each worker logs W times its own share, not the step's loss; DDP syncs only outside no_sync
    assert all(abs(r["step"]["logged"] - big.item()) > 0.1 for r in results)
    assert not torch.allclose(results[0]["step"]["grad_local"], results[1]["step"]["grad_local"])
    assert torch.equal(results[0]["step"]["grad"], results[1]["step"]["grad"])


@pytest.fixture(scope="module")
def info_nce_step():
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(2)
    encoder = nn.Linear(6, 8)
    a = torch.randn(8, 6, generator=g)
    b = a + 0.3 * torch.randn(8, 6, generator=g)
    both = F.normalize(encoder(torch.cat([a, b])), dim=1)
    loss = F.cross_entropy(both[:8] @ both[8:].T / 0.1, torch.arange(8))
    return _grad(loss, encoder), run_workers(info_nce_worker, 2, encoder, a, b, 0.1)


def test_only_the_differentiable_gather_gives_the_big_batch_gradient(info_nce_step):
    ref, results = info_nce_step
    for r in results:
        assert _rel(r["differentiable"]["grad"], ref) < 1e-5
        assert _rel(r["all_gather"]["grad"], ref) > 0.05
        assert _rel(r["local"]["grad"], ref) > 0.05
        assert r["differentiable"]["others_require_grad"] and not r["all_gather"]["others_require_grad"]
        assert r["all_gather"]["loss"] == pytest.approx(r["differentiable"]["loss"])


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="world_size"):
        run_workers(dist.get_rank, 0)


def test_a_hung_worker_is_killed_and_reported_instead_of_stalling_the_caller():
    """A worker that never returns (here: sleeps an hour) ends in TimeoutError after ``timeout`` seconds."""
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="did not finish"):
        run_workers(time.sleep, 2, 3600, timeout=8)
    assert time.monotonic() - start < 60
