"""Where the data lives, and MNIST / CIFAR-10 as in-memory tensors.

The data root is, in order of precedence:

1. the ``LOSSBOOK_DATA`` environment variable;
2. ``data/`` at the repository root, when the code runs from a clone of the book
   (found by walking up from the working directory, or from this package, to the folder
   that holds ``_config.yml`` and ``helpers/``);
3. a per-user cache folder (``$XDG_CACHE_HOME/lossbook`` or ``~/.cache/lossbook``), e.g. on Colab.

Datasets are read with :mod:`torchvision.datasets` (downloaded into the root when missing and the
machine is online) and returned as :class:`ImageSet`: one ``uint8`` tensor of shape
``(N, C, H, W)`` and one ``int64`` label tensor. Holding the whole set as a tensor lets the
trainers batch by indexing, with no per-sample Python and no PIL.

CIFAR-10 has a synthetic stand-in (:func:`synthetic_cifar10`) that is used only when
``LOSSBOOK_ALLOW_SYNTHETIC=1`` and the real data is unavailable; it is flagged on the returned
set and announced loudly, because its numbers say nothing about CIFAR-10.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from helpers.runtime import SYNTHETIC_ENV, synthetic_allowed

DATA_ENV = "LOSSBOOK_DATA"

MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
MNIST_CLASSES = tuple(str(d) for d in range(10))

SYNTHETIC_BANNER = "\n".join(
    [
        "!" * 78,
        "!!  SYNTHETIC STAND-IN, NOT CIFAR-10.  Real CIFAR-10 was not available, and",
        f"!!  {SYNTHETIC_ENV}=1 allowed a generated substitute (32x32 RGB, 10 classes).",
        "!!  Every number computed from it shows only that the code runs; none of them",
        "!!  is a CIFAR-10 result. Set LOSSBOOK_DATA to a folder with cifar-10-batches-py/.",
        "!" * 78,
    ]
)


class DataUnavailableError(RuntimeError):
    """A dataset is neither on disk nor downloadable. The message says what to do."""


def find_repo_root(start: Path | None = None) -> Path | None:
    """Return the book's repository root above ``start`` (default: cwd, then this package), or None."""
    candidates = [Path(start) if start is not None else Path.cwd(), Path(__file__).resolve().parent]
    for candidate in candidates:
        for folder in [candidate.resolve(), *candidate.resolve().parents]:
            if (folder / "_config.yml").is_file() and (folder / "helpers" / "__init__.py").is_file():
                return folder
    return None


def data_root() -> Path:
    """The folder datasets are read from and downloaded into (see the module docstring)."""
    env = os.environ.get(DATA_ENV, "").strip()
    if env:
        return Path(env).expanduser().resolve()
    repo = find_repo_root()
    if repo is not None:
        return repo / "data"
    cache = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(cache) / "lossbook"


@dataclass(frozen=True)
class ImageSet:
    """A labelled image dataset held in memory.

    Attributes:
        images: ``uint8`` tensor of shape ``(N, C, H, W)``.
        labels: ``int64`` tensor of shape ``(N,)`` with values in ``[0, len(classes))``.
        classes: class names, index = label.
        name: e.g. ``"MNIST-train"``.
        mean, std: per-channel statistics used by :meth:`normalized`.
        synthetic: True for the generated CIFAR-10 stand-in.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    synthetic: bool = False

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"images must be a uint8 tensor of shape (N, C, H, W), got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"labels must be an int64 tensor of shape ({self.images.shape[0]},), got "
                f"{self.labels.dtype} {tuple(self.labels.shape)}"
            )
        if len(self.mean) != self.images.shape[1] or len(self.std) != self.images.shape[1]:
            raise ValueError(f"mean and std need one entry per channel ({self.images.shape[1]})")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_counts(self) -> torch.Tensor:
        """Number of examples of each class, ``int64`` of shape ``(num_classes,)``."""
        return torch.bincount(self.labels, minlength=self.num_classes)

    def subset(self, index: torch.Tensor, name: str | None = None) -> ImageSet:
        """The examples at ``index`` (a 1-D index or boolean mask), as a new set."""
        return replace(self, images=self.images[index], labels=self.labels[index], name=name or self.name)

    def normalized(self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Images as ``dtype`` on ``device``, scaled to [0, 1] and standardised per channel."""
        x = self.images.to(device=device).to(dtype).div_(255)
        mean = torch.tensor(self.mean, dtype=dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=dtype, device=x.device).view(1, -1, 1, 1)
        return x.sub_(mean).div_(std)

    def banner(self) -> str:
        """The loud synthetic-data banner for a stand-in set, else an empty string."""
        return SYNTHETIC_BANNER if self.synthetic else ""

    def announce(self) -> None:
        """Print :meth:`banner` (if any). Call it in every cell that uses a possibly synthetic set."""
        if self.synthetic:
            print(self.banner())


def _unavailable(dataset: str, root: Path, expected: str, reason: BaseException) -> DataUnavailableError:
    return DataUnavailableError(
        f"{dataset} is not in {root} and could not be downloaded "
        f"({type(reason).__name__}: {str(reason).strip().splitlines()[0] if str(reason).strip() else 'no detail'}). "
        f"Set {DATA_ENV} to a folder that contains {expected} (the layout torchvision.datasets reads), "
        f"or run once with internet access so torchvision can download it there."
    )


def load_mnist(train: bool = True, root: str | Path | None = None, download: bool = True) -> ImageSet:
    """Real MNIST through :class:`torchvision.datasets.MNIST`, as an :class:`ImageSet`.

    Returns images of shape ``(N, 1, 28, 28)`` (60,000 train or 10,000 test).

    Raises:
        DataUnavailableError: if the files are missing and cannot be downloaded.
    """
    from torchvision.datasets import MNIST

    root = Path(root) if root is not None else data_root()
    try:
        ds = MNIST(str(root), train=train, download=False)
    except RuntimeError as missing:
        if not download:
            raise _unavailable("MNIST", root, "MNIST/raw/", missing) from None
        try:
            ds = MNIST(str(root), train=train, download=True)
        except Exception as err:  # network errors come in many types; all mean "not available"
            raise _unavailable("MNIST", root, "MNIST/raw/", err) from None
    return ImageSet(
        images=ds.data.unsqueeze(1).contiguous(),
        labels=ds.targets.to(torch.int64),
        classes=MNIST_CLASSES,
        name=f"MNIST-{'train' if train else 'test'}",
        mean=MNIST_MEAN,
        std=MNIST_STD,
    )


def load_cifar10(
    train: bool = True,
    root: str | Path | None = None,
    download: bool = True,
    allow_synthetic: bool | None = None,
) -> ImageSet:
    """Real CIFAR-10 through :class:`torchvision.datasets.CIFAR10`, as an :class:`ImageSet`.

    Returns images of shape ``(N, 3, 32, 32)`` (50,000 train or 10,000 test). If the data is
    neither on disk nor downloadable and ``allow_synthetic`` (default: ``LOSSBOOK_ALLOW_SYNTHETIC``)
    is true, returns :func:`synthetic_cifar10` instead, with ``synthetic=True``, and prints
    the banner and raises a :class:`UserWarning` so nobody mistakes it for CIFAR-10.

    Raises:
        DataUnavailableError: if the data is unavailable and synthetic data is not allowed.
    """
    from torchvision.datasets import CIFAR10

    root = Path(root) if root is not None else data_root()
    allow = synthetic_allowed() if allow_synthetic is None else allow_synthetic
    try:
        ds = CIFAR10(str(root), train=train, download=False)
    except RuntimeError as missing:
        error: BaseException = missing
        ds = None
        if download:
            try:
                ds = CIFAR10(str(root), train=train, download=True)
            except Exception as err:  # network errors come in many types; all mean "not available"
                error = err
        if ds is None:
            unavailable = _unavailable("CIFAR-10", root, "cifar-10-batches-py/", error)
            if not allow:
                raise DataUnavailableError(
                    f"{unavailable} ({SYNTHETIC_ENV}=1 would allow a synthetic stand-in instead.)"
                ) from None
            warnings.warn(f"{unavailable} Using the SYNTHETIC stand-in ({SYNTHETIC_ENV}=1).", stacklevel=2)
            fake = synthetic_cifar10(train=train)
            fake.announce()
            return fake
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    return ImageSet(
        images=images,
        labels=torch.as_tensor(ds.targets, dtype=torch.int64),
        classes=tuple(ds.classes),
        name=f"CIFAR10-{'train' if train else 'test'}",
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
    )


def synthetic_cifar10(train: bool = True, per_class: int | None = None, seed: int = 0) -> ImageSet:
    """A generated 32x32 RGB, 10-class stand-in for CIFAR-10 (NOT CIFAR-10).

    Class ``k`` is a sinusoidal grating at angle ``k * 18`` degrees with a class-specific
    frequency and colour, plus a random phase, a random colour jitter and pixel noise, so a small
    CNN can learn it but not perfectly. Deterministic for a given ``seed`` and split.

    Args:
        train: 5,000 images per class for train, 1,000 for test (CIFAR-10's sizes) unless
            ``per_class`` says otherwise.
        per_class: images per class.
        seed: generator seed; train and test use different streams.
    """
    n = per_class if per_class is not None else (5000 if train else 1000)
    if n <= 0:
        raise ValueError(f"per_class must be positive, got {n}")
    g = torch.Generator().manual_seed(2 * seed + (0 if train else 1))
    labels = torch.arange(10).repeat_interleave(n)
    labels = labels[torch.randperm(labels.numel(), generator=g)]
    k = labels.to(torch.float32).view(-1, 1, 1)
    angle = k * (math.pi / 10)
    freq = (2.0 + (k % 3) * 1.5) * (2 * math.pi / 32)
    coords = torch.arange(32, dtype=torch.float32)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    phase = torch.rand(labels.numel(), 1, 1, generator=g) * 2 * math.pi
    wave = torch.sin(freq * (xx * torch.cos(angle) + yy * torch.sin(angle)) + phase)  # (N, 32, 32)
    palette = torch.rand(10, 3, generator=torch.Generator().manual_seed(1234)) * 0.6 + 0.2
    colour = palette[labels] + 0.15 * torch.randn(labels.numel(), 3, generator=g)  # (N, 3)
    img = colour.view(-1, 3, 1, 1) * (0.5 + 0.35 * wave.unsqueeze(1))
    img = img + 0.12 * torch.randn(img.shape, generator=g)
    images = (img.clamp(0, 1) * 255).round().to(torch.uint8)
    return ImageSet(
        images=images,
        labels=labels,
        classes=CIFAR10_CLASSES,
        name=f"SYNTHETIC-CIFAR10-{'train' if train else 'test'}",
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
        synthetic=True,
    )
