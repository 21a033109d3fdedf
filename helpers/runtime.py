"""Runtime settings shared by every chapter: quick mode, synthetic data, device and seeds.

Environment variables (all optional):

``LOSSBOOK_QUICK=1``
    Shrink data and epochs so that the whole notebook suite runs in CI time. Experiment
    notebooks print which mode ran (:func:`mode_banner`). ``LOSSBOOK_QUICK=0`` forces full mode.
    Unset, quick mode switches itself on where memory is small (:func:`small_memory`): a Binder
    session (about 2 GB) cannot hold the full-mode CIFAR-10 chapter.
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
import textwrap
import warnings
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


MEMORY_LIMIT_ENV = "MEM_LIMIT"  # bytes; set by JupyterHub's spawners, so on mybinder.org
SMALL_MEMORY_BYTES = 4 * 2**30  # below this limit, quick mode is the default
_CGROUP_LIMIT_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def _parse_bytes(text: str) -> int | None:
    """``"2147483648"``, ``"2G"``, ``"2Gi"``, ``"512M"`` -> bytes; ``"max"``, ``""`` or junk -> None."""
    text = text.strip().lower().removesuffix("b").removesuffix("i")
    unit = text[-1:] if text[-1:] in _UNITS else ""
    number = text[: len(text) - len(unit)].strip()
    try:
        value = float(number) * _UNITS[unit]
    except ValueError:
        return None
    return int(value) if value > 0 else None


def memory_limit_bytes() -> int | None:
    """The memory this process may use when something caps it, else None.

    The smallest of ``MEM_LIMIT`` (what Binder and other JupyterHubs set for a session) and the
    cgroup limit (v2 ``memory.max``, v1 ``memory.limit_in_bytes``). An unlimited cgroup reports
    ``max`` or a number near 2**63: both mean "no limit".
    """
    limits = []
    env = _parse_bytes(os.environ.get(MEMORY_LIMIT_ENV, ""))
    if env is not None:
        limits.append(env)
    for path in _CGROUP_LIMIT_FILES:
        try:
            with open(path) as f:
                value = _parse_bytes(f.read())
        except OSError:
            continue
        if value is not None and value < 2**60:
            limits.append(value)
    return min(limits) if limits else None


def small_memory() -> bool:
    """True when :func:`memory_limit_bytes` is below ``SMALL_MEMORY_BYTES`` (4 GiB), e.g. on Binder."""
    limit = memory_limit_bytes()
    return limit is not None and limit < SMALL_MEMORY_BYTES


def quick_mode_source() -> str:
    """Why the mode is what it is: ``"env"`` (``LOSSBOOK_QUICK`` set), ``"memory"`` (unset, small memory)
    or ``"default"`` (unset: full mode)."""
    if os.environ.get(QUICK_ENV, "").strip():
        return "env"
    return "memory" if small_memory() else "default"


def quick_mode() -> bool:
    """True in quick mode: chapters shrink data and epochs.

    ``LOSSBOOK_QUICK`` decides when it is set (``1`` on, ``0`` off). Unset, quick mode is on only when
    this session's memory is capped below 4 GiB (:func:`small_memory`, e.g. Binder's 2 GB), where
    full mode would be killed for memory; a warning says so once per session.
    """
    source = quick_mode_source()
    if source == "env":
        return env_flag(QUICK_ENV)
    if source == "memory":
        limit = memory_limit_bytes() or 0
        warnings.warn(
            f"QUICK mode switched on automatically: this session's memory is limited to {limit / 2**30:.1f} GiB "
            f"(below {SMALL_MEMORY_BYTES / 2**30:.0f} GiB, e.g. Binder). Set {QUICK_ENV}=0 for the full budgets.",
            UserWarning,
            stacklevel=1,  # one location, so Python shows it once per session
        )
        return True
    return False


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
    """Which mode runs, for the top of every experiment notebook, wrapped to the page's 88 columns."""
    return textwrap.fill(_mode_sentence(), 88, break_on_hyphens=False)


def _mode_sentence() -> str:
    """The mode sentence of :func:`mode_banner`, on one line."""
    if quick_mode():
        if quick_mode_source() == "memory":
            limit = (memory_limit_bytes() or 0) / 2**30
            why = f"automatic: memory limited to {limit:.1f} GiB, e.g. Binder; {QUICK_ENV}=0 forces full mode"
        else:
            why = f"{QUICK_ENV}=1"
        return (
            f"Mode: QUICK ({why}): data and epochs are shrunk so the suite runs in CI time. "
            "Numbers below only show that the code runs; they are not the book's results."
        )
    state = "=0" if quick_mode_source() == "env" else " unset"
    return f"Mode: FULL ({QUICK_ENV}{state}): the budgets the chapter's prose describes."


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
