"""Sections that need a newer torch than the book's floor say so and step aside.

The book supports every torch from the lower bound in ``pyproject.toml`` to the newest release
(CI runs the chapters on the floor, on Colab's published versions and on the newest). A section
built on a newer API guards itself with :func:`requires_torch`::

    if requires_torch("2.13", "nn.LinearCrossEntropyLoss"):
        ...  # the section's code

On an older torch the guard prints one sentence naming the feature, the version that brought it
and the running version, and returns ``False``: no failure and no silent skip.

Versions compare as release numbers: ``2.12.0.dev20260101+cpu`` counts as 2.12, so a nightly
build or a local build of a release passes the guard of that release.
"""

from __future__ import annotations

import re

import torch

__all__ = ["torch_release", "torch_at_least", "requires_torch"]

_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")


def _release(version: str) -> tuple[int, int, int]:
    """``"2.12.1+cu130"`` -> ``(2, 12, 1)``; ``ValueError`` for a string that is not a version."""
    if not isinstance(version, str):
        raise TypeError(f"version must be a str like '2.12', got {type(version).__name__}")
    match = _VERSION.match(version.strip())
    if match is None:
        raise ValueError(f"version must look like '2.12' or '2.12.1', got {version!r}")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def torch_release() -> tuple[int, int, int]:
    """The running torch's release as ``(major, minor, patch)``, local and dev suffixes dropped."""
    return _release(str(torch.__version__))


def torch_at_least(version: str) -> bool:
    """``True`` when the running torch's release is ``version`` or newer (``"2.12"``, ``"2.4.1"``)."""
    return torch_release() >= _release(version)


def requires_torch(version: str, feature: str) -> bool:
    """Guard for a section that needs torch ``version`` or newer.

    Args:
        version: the first torch release that has ``feature`` (``"2.13"``).
        feature: what the section uses, as a reader would search for it
            (``"nn.LinearCrossEntropyLoss"``, ``"the weight= argument of F.mse_loss"``).

    Returns:
        ``True`` when the running torch has it. Otherwise prints one sentence, such as
        ``"Skipped: nn.LinearCrossEntropyLoss is new in torch 2.13; this kernel runs torch 2.11.0."``,
        and returns ``False``.
    """
    if not isinstance(feature, str) or not feature:
        raise ValueError(f"feature must be a non-empty string, got {feature!r}")
    if torch_at_least(version):
        return True
    print(f"Skipped: {feature} is new in torch {version}; this kernel runs torch {torch.__version__}.")
    return False
