"""Runtime settings shared by every chapter: quick mode, synthetic data, device and seeds.

Environment variables (all optional):

``LOSSBOOK_QUICK=1``
    Shrink data and epochs so that the whole notebook suite runs in CI time. Experiment
    notebooks print which mode ran (:func:`mode_banner`).
``LOSSBOOK_ALLOW_SYNTHETIC=1``
    Allow the synthetic CIFAR-10 stand-in when the real data cannot be found or downloaded.
``LOSSBOOK_PROGRESS=0``
    Hide progress bars (the book build does; CI does automatically).
``LOSSBOOK_DEVICE``
    Force a device (``cpu``, ``cuda``, ``cuda:1``, ``mps``) instead of the automatic choice.

Nothing here keeps global state: every function reads the environment when it is called.
"""

from __future__ import annotations

import os
import random
from typing import TypeVar

import numpy as np
import torch

QUICK_ENV = "LOSSBOOK_QUICK"
SYNTHETIC_ENV = "LOSSBOOK_ALLOW_SYNTHETIC"
DEVICE_ENV = "LOSSBOOK_DEVICE"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}

T = TypeVar("T")


def env_flag(name: str) -> bool:
    """Read a boolean environment variable (``1/true/yes/on`` or ``0/false/no/off``/unset).

    Raises:
        ValueError: if the variable holds anything else, so that a typo such as
            ``LOSSBOOK_QUICK=ture`` fails loudly instead of silently meaning "off".
    """
    value = os.environ.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"environment variable {name}={value!r}: expected one of 1/0, true/false, yes/no, on/off")


def quick_mode() -> bool:
    """True when ``LOSSBOOK_QUICK`` is set: chapters shrink data and epochs for CI."""
    return env_flag(QUICK_ENV)


def synthetic_allowed() -> bool:
    """True when ``LOSSBOOK_ALLOW_SYNTHETIC`` permits the synthetic CIFAR-10 stand-in."""
    return env_flag(SYNTHETIC_ENV)


def in_ci() -> bool:
    """True when running under a CI system (the conventional ``CI`` variable is set and not false)."""
    return os.environ.get("CI", "").strip().lower() not in _FALSE


def by_mode(full: T, quick: T) -> T:
    """Return ``quick`` in quick mode and ``full`` otherwise.

    Example: ``epochs = by_mode(full=8, quick=1)``.
    """
    return quick if quick_mode() else full


def mode_banner() -> str:
    """One line saying which mode runs, for the top of every experiment notebook."""
    if quick_mode():
        return (
            f"Mode: QUICK ({QUICK_ENV}=1): data and epochs are shrunk so the suite runs in CI time. "
            "Numbers below only show that the code runs; they are not the book's results."
        )
    return f"Mode: FULL ({QUICK_ENV} unset): the budgets the chapter's prose describes."


def pick_device(prefer: str | None = None) -> torch.device:
    """Choose the compute device: ``prefer`` or ``LOSSBOOK_DEVICE`` if given, else CUDA, MPS, CPU.

    Raises:
        ValueError: if the requested device is not available on this machine.
    """
    requested = prefer or os.environ.get(DEVICE_ENV, "").strip()
    if requested:
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={requested!r} requested but CUDA is not available")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"device={requested!r} requested but MPS is not available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and all GPUs); return a CPU generator seeded with ``seed``.

    Returning a generator lets callers draw data-order randomness from a source that model
    initialisation does not consume, which keeps runs comparable when the model changes.

    Raises:
        ValueError: if ``seed`` is not a non-negative integer.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 -- seeding the legacy global RNG is the point here
    torch.manual_seed(seed)  # also seeds every CUDA device
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


PROGRESS_ENV = "LOSSBOOK_PROGRESS"


def progress_enabled() -> bool:
    """Progress bars are on unless ``LOSSBOOK_PROGRESS=0`` or under CI.

    The book build sets ``LOSSBOOK_PROGRESS=0``: a published page shows results, not bars.
    """
    if in_ci():
        return False
    return os.environ.get(PROGRESS_ENV, "1").strip().lower() not in _FALSE


def progress(iterable=None, **kwargs):
    """A ``tqdm.auto`` progress bar (widget in Jupyter, text in a terminal), quiet when disabled.

    Accepts every :class:`tqdm.tqdm` keyword (``total``, ``desc``, ``leave``...).
    """
    from tqdm.auto import tqdm

    kwargs.setdefault("disable", not progress_enabled())
    return tqdm(iterable, **kwargs)
