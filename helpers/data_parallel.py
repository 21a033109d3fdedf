r"""Real data-parallel training steps on the CPU: worker processes joined by gloo (chapter 8).

Chapter 8's data-parallel lessons run on real ``torch.distributed`` processes instead of a simulation.
:func:`run_workers` starts ``world_size`` processes (``spawn``, so it works from a notebook), joins them
in a ``gloo`` process group through a file store in a temporary directory (no fixed port that could
collide), points gloo at the loopback interface unless ``GLOO_SOCKET_IFNAME`` is set, and returns what
each worker returned, in rank order. The workers below are ordinary functions of this module because
a spawned process can only run a function it can import.

Each worker wraps its model in ``DistributedDataParallel`` (DDP), which *averages* the gradients of the
:math:`W` workers with an all-reduce during ``backward()``:

* :func:`accumulation_worker` -- a padded language-model step in micro-batches with ``DDP.no_sync()``,
  normalised by each worker's own token count (``'mean'``) or by the step's global count
  (:func:`helpers.accumulation.step_cross_entropy`).
* :func:`info_nce_worker` -- an InfoNCE step whose negatives are the local batch only, or the batch of
  every worker gathered by ``dist.all_gather`` (no gradient through the other workers' embeddings) or
  by ``torch.distributed.nn.functional.all_gather`` (differentiable).
"""

from __future__ import annotations

import contextlib
import copy
import os
import socket
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from helpers.accumulation import mean_denominator, step_cross_entropy

__all__ = ["GATHERS", "NORMALISATIONS", "accumulation_worker", "flat_grad", "info_nce_worker", "run_workers"]

GATHERS = ("local", "all_gather", "differentiable")
NORMALISATIONS = ("worker", "step")


def _loopback_interface() -> str | None:
    """The name of the loopback network interface (``lo`` on Linux, ``lo0`` on macOS), if any."""
    try:
        names = [name for _, name in socket.if_nameindex()]
    except (AttributeError, OSError):
        return None
    return next((name for name in names if name.startswith("lo")), None)


def _entry(rank: int, worker: Callable[..., Any], world_size: int, root: str, args: tuple) -> None:
    """Body of each spawned process: join the group, run ``worker(*args)``, save its result."""
    torch.set_num_threads(1)
    loopback = _loopback_interface()
    if loopback is not None and "GLOO_SOCKET_IFNAME" not in os.environ:
        os.environ["GLOO_SOCKET_IFNAME"] = loopback  # this process only: gloo talks over loopback
    dist.init_process_group(
        "gloo",
        init_method=Path(root, "store").as_uri(),
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=120),
    )
    torch.save(worker(*args), Path(root, f"rank{rank}.pt"))
    dist.barrier()  # every rank has saved its result before any of them leaves the group
    # Leave without tearing the group down: on torch 2.5.1 `destroy_process_group` (and the group's
    # destructor at interpreter exit) could block forever once the peer had left, seen in CI with both
    # results already saved. The process ends here, so there is nothing the teardown would free.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_workers(worker: Callable[..., Any], world_size: int, *args: Any, timeout: float = 600.0) -> list[Any]:
    r"""Run ``worker(*args)`` in ``world_size`` processes of one gloo process group; return their results.

    Args:
        worker: a function importable by name (defined in a module, not in a notebook); inside it,
            ``dist.get_rank()`` and ``dist.get_world_size()`` say which worker it is. It returns
            tensors, numbers, or lists/dicts of them.
        world_size: the number of processes, at least 1.
        *args: passed to every worker (pickled: tensors and ``nn.Module``\ s are fine).
        timeout: seconds the workers may take in all; past it they are killed and ``TimeoutError`` is
            raised (a hung worker never stalls the caller).

    Returns:
        The workers' results, indexed by rank.
    """
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a positive int, got {world_size!r}")
    with tempfile.TemporaryDirectory(prefix="lossbook-ddp-") as root:
        context = mp.start_processes(
            _entry, args=(worker, world_size, root, args), nprocs=world_size, start_method="spawn", join=False
        )
        deadline = time.monotonic() + timeout
        while not context.join(timeout=1.0):  # raises, with the worker's traceback, if a worker failed
            if time.monotonic() > deadline:
                for process in context.processes:
                    process.kill()
                raise TimeoutError(f"the {world_size} gloo workers did not finish within timeout={timeout} s")
        return [torch.load(Path(root, f"rank{r}.pt"), weights_only=True) for r in range(world_size)]


def flat_grad(module: nn.Module) -> Tensor:
    """Every parameter's ``.grad`` of ``module``, concatenated into one vector (zeros where None)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in module.parameters()])


def accumulation_worker(
    model: nn.Module,
    tokens: Tensor,
    targets: Tensor,
    rows: Sequence[Sequence[int]],
    micro_batches: int,
    normalisations: Sequence[str] = NORMALISATIONS,
) -> dict[str, dict[str, Any]]:
    """One accumulated DDP step of a token-level language model on this worker's rows, per normalisation.

    Worker ``r`` takes the sequences ``rows[r]`` of ``tokens`` ``(B, L)`` and ``targets`` ``(B, L)``
    (padding = -100), splits them into ``micro_batches`` micro-batches and backpropagates each inside
    ``DDP.no_sync()`` except the last, whose ``backward()`` all-reduces the accumulated gradients.
    ``model`` maps tokens ``(b, L)`` to logits ``(b, L, V)``; each normalisation starts from a fresh copy.

    ``'worker'`` divides each micro-batch's summed loss by this worker's own token count (each worker's
    ``'mean'``, correctly accumulated); ``'step'`` uses :func:`helpers.accumulation.step_cross_entropy`
    with the global count, all-reduced before any forward pass.

    Returns:
        For each normalisation, ``{"grad_local", "grad", "logged", "step_loss"}``: the flat gradient after
        the first micro-batch (inside ``no_sync``: this worker's alone) and after the step (averaged over
        the workers), the sum of the loss values this worker backpropagated (what it would log), and that
        sum averaged over the workers by one more all-reduce.
    """
    for normalise in normalisations:
        if normalise not in NORMALISATIONS:
            raise ValueError(f"normalisations must be among {NORMALISATIONS}, got {normalise!r}")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    mine = torch.as_tensor(rows[rank])
    local_tokens = mean_denominator(targets[mine])
    step_tokens = local_tokens.clone()
    dist.all_reduce(step_tokens)  # one integer per worker: the step's global token count
    results = {}
    for normalise in normalisations:
        replica = copy.deepcopy(model)
        ddp = DistributedDataParallel(replica)
        logged = torch.zeros((), dtype=torch.float64)
        grad_local = torch.empty(0)
        micro = mine.chunk(micro_batches)
        for j, m in enumerate(micro):
            with ddp.no_sync() if j < len(micro) - 1 else contextlib.nullcontext():
                logits, target = ddp(tokens[m]).flatten(0, 1), targets[m].flatten()
                if normalise == "step":
                    loss = step_cross_entropy(logits, target, step_tokens, world_size=world_size)
                else:
                    loss = F.cross_entropy(logits, target, reduction="sum") / local_tokens
                loss.backward()
            logged += loss.detach().double()
            if j == 0:
                grad_local = flat_grad(replica).clone()
        step_loss = logged.clone()
        dist.all_reduce(step_loss)
        results[normalise] = {
            "grad_local": grad_local,
            "grad": flat_grad(replica),
            "logged": logged.item(),
            "step_loss": step_loss.item() / world_size,
        }
    return results


def info_nce_worker(
    encoder: nn.Module, view_a: Tensor, view_b: Tensor, tau: float, gathers: Sequence[str] = GATHERS
) -> dict[str, dict[str, Any]]:
    r"""One DDP step of InfoNCE per way of collecting negatives, each worker holding ``N / W`` of the pairs.

    Worker ``r`` encodes its rows of ``view_a`` and ``view_b`` ``(N, D_in)`` into unit vectors
    :math:`u_i, v_i` and scores each of its anchors :math:`u_i` against candidates :math:`v_j` with
    logits :math:`u_i \cdot v_j / \tau` (cross-entropy, the positive being its own partner):

    * ``'local'``: this worker's ``N / W`` partners only (fewer negatives: a different loss);
    * ``'all_gather'``: all ``N``, collected by ``dist.all_gather``, whose outputs carry no gradient, so
      this worker's own slot is put back as the local tensor (the usual pattern): the gradient through
      the other workers' candidates is lost;
    * ``'differentiable'``: all ``N``, collected by ``torch.distributed.nn.functional.all_gather``, whose
      backward sends each worker the gradient of every worker's loss with respect to its embeddings.

    Returns:
        For each gather, ``{"grad", "loss", "others_require_grad", "warning"}``: the flat encoder gradient
        averaged over workers, this worker's loss, whether the other workers' candidates carry a gradient
        here, and the text of a ``FutureWarning`` the gather gave ("" if none; recent torch releases
        deprecate ``torch.distributed.nn.functional``).
    """
    for gather in gathers:
        if gather not in GATHERS:
            raise ValueError(f"gathers must be among {GATHERS}, got {gather!r}")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    if view_a.shape[0] % world_size:
        raise ValueError(f"view_a has {view_a.shape[0]} rows, not divisible by world_size={world_size}")
    n = view_a.shape[0] // world_size
    mine = slice(rank * n, (rank + 1) * n)
    results = {}
    for gather in gathers:
        replica = copy.deepcopy(encoder)
        ddp = DistributedDataParallel(replica)
        both = F.normalize(ddp(torch.cat([view_a[mine], view_b[mine]])), dim=1)  # one forward per step
        u, v = both[:n], both[n:]
        warning = ""
        if gather == "local":
            parts, positive = [v], torch.arange(n)
        elif gather == "all_gather":
            parts, positive = [torch.empty_like(v) for _ in range(world_size)], rank * n + torch.arange(n)
            dist.all_gather(parts, v)
        else:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", FutureWarning)
                parts = list(dist_fn.all_gather(v))
            warning = "; ".join(str(w.message) for w in caught if issubclass(w.category, FutureWarning))
            positive = rank * n + torch.arange(n)
        others_require_grad = gather != "local" and all(p.requires_grad for r, p in enumerate(parts) if r != rank)
        if gather == "all_gather":
            parts[rank] = v  # keeps the gradient of this worker's own candidates only
        loss = F.cross_entropy(u @ torch.cat(parts).T / tau, positive)
        loss.backward()
        results[gather] = {
            "grad": flat_grad(replica),
            "loss": loss.item(),
            "others_require_grad": others_require_grad,
            "warning": warning,
        }
    return results
