"""Where the data lives, and MNIST / CIFAR-10 / CIFAR-100 as in-memory tensors.

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

CIFAR-10 and CIFAR-100 have a synthetic stand-in (:func:`synthetic_cifar`) that is used only when
``LOSSBOOK_ALLOW_SYNTHETIC=1`` and the real data is unavailable; it is flagged on the returned
set and announced loudly, because its numbers say nothing about CIFAR.

Errors tell the truth: data that is absent and cannot be downloaded raises
:class:`DataUnavailableError` (saying where to put it); a file that is on disk but damaged
(truncated, or not the release's bytes) raises :class:`DataCorruptError`, naming the file and saying
to delete it so that it is downloaded again. A damaged real file is never silently replaced by the
synthetic stand-in.
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
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)

#: The torchvision folder of each CIFAR release, by the label used in messages.
CIFAR_FOLDERS = {"CIFAR-10": "cifar-10-batches-py", "CIFAR-100": "cifar-100-python"}


def synthetic_banner(dataset: str = "CIFAR-10") -> str:
    """The loud banner printed wherever the synthetic stand-in for ``dataset`` is used."""
    classes = 100 if dataset == "CIFAR-100" else 10
    folder = CIFAR_FOLDERS.get(dataset, "the dataset's folder")
    return "\n".join(
        [
            "!" * 78,
            f"!!  SYNTHETIC STAND-IN, NOT {dataset}.  Real {dataset} was not available, and",
            f"!!  {SYNTHETIC_ENV}=1 allowed a generated substitute (32x32 RGB, {classes} classes).",
            "!!  Every number computed from it shows only that the code runs; none of them",
            f"!!  is a {dataset} result. Set LOSSBOOK_DATA to a folder with {folder}/.",
            "!" * 78,
        ]
    )


SYNTHETIC_BANNER = synthetic_banner("CIFAR-10")


class DataUnavailableError(RuntimeError):
    """A dataset is neither on disk nor downloadable. The message says what to do."""


class DataCorruptError(DataUnavailableError):
    """A dataset file is on disk but damaged (truncated, or not the release's bytes). The message names it."""


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
        if not self.synthetic:
            return ""
        return synthetic_banner("CIFAR-100" if "CIFAR100" in self.name else "CIFAR-10")

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


def _corrupt(dataset: str, damaged: list[tuple[Path, str]], remedy: str) -> DataCorruptError:
    files = "; ".join(f"{path} ({why})" for path, why in damaged)
    first = damaged[0][0]
    return DataCorruptError(
        f"{dataset} is in {first.parent} but damaged: {files}. Delete the damaged file(s) "
        f"(e.g. rm {first}) and run again to download them, or copy intact ones there; {remedy}"
    )


def _idx_damage(path: Path) -> str | None:
    """Why the IDX file at ``path`` (MNIST's format) is damaged, or None if its size matches its header."""
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.read(4)
        if len(header) < 4 or header[:2] != b"\x00\x00" or not 1 <= header[3] <= 4:
            return f"not an IDX file: bad header, {size} bytes"
        dims = f.read(4 * header[3])
    if len(dims) < 4 * header[3]:
        return f"truncated inside its header ({size} bytes)"
    shape = [int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(header[3])]
    itemsize = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}.get(header[2], 1)
    expected = 4 + 4 * len(shape) + itemsize * math.prod(shape)
    if size != expected:
        return f"{size:,} bytes where its header promises {expected:,}: truncated" if size < expected else (
            f"{size:,} bytes where its header promises {expected:,}"
        )
    return None


def mnist_damaged_files(root: str | Path, train: bool = True) -> list[tuple[Path, str]]:
    """The MNIST files of one split under ``root/MNIST/raw/`` that are present but damaged, with the reason.

    A missing split (no file at all) is not damage and gives ``[]``; a split with some files missing and
    others present lists the missing ones too. Each file's size is checked against its IDX header.
    """
    prefix = "train" if train else "t10k"
    folder = Path(root) / "MNIST" / "raw"
    paths = [folder / f"{prefix}-images-idx3-ubyte", folder / f"{prefix}-labels-idx1-ubyte"]
    if not any(p.is_file() for p in paths):
        return []
    return [(p, why) for p in paths if (why := _idx_damage(p)) is not None]


def cifar_damaged_files(root: str | Path, dataset_class: type) -> list[tuple[Path, str]]:
    """Files of a torchvision CIFAR release under ``root`` that are present but fail the md5 check, or are missing.

    ``dataset_class`` is :class:`torchvision.datasets.CIFAR10` or ``CIFAR100``; its ``train_list``,
    ``test_list`` and ``meta`` give the expected files and md5 sums. An absent folder gives ``[]``.
    """
    from torchvision.datasets.utils import check_integrity

    folder = Path(root) / dataset_class.base_folder
    if not folder.is_dir():
        return []
    expected = [*dataset_class.train_list, *dataset_class.test_list,
                [dataset_class.meta["filename"], dataset_class.meta["md5"]]]  # fmt: skip
    damaged = []
    for name, md5 in expected:
        path = folder / name
        if not path.is_file():
            damaged.append((path, "missing"))
        elif not check_integrity(str(path), md5):
            damaged.append((path, f"md5 differs from the release's, {path.stat().st_size:,} bytes"))
    present = sum(1 for path, why in damaged if why != "missing")
    return damaged if present or len(damaged) < len(expected) else []


def load_mnist(train: bool = True, root: str | Path | None = None, download: bool = True) -> ImageSet:
    """Real MNIST through :class:`torchvision.datasets.MNIST`, as an :class:`ImageSet`.

    Returns images of shape ``(N, 1, 28, 28)`` (60,000 train or 10,000 test).

    Raises:
        DataCorruptError: if a file of the split is on disk but damaged (e.g. truncated); the message
            names the file and says to delete it so that it is downloaded again.
        DataUnavailableError: if the files are missing and cannot be downloaded.
    """
    from torchvision.datasets import MNIST

    root = Path(root) if root is not None else data_root()
    remedy = f"or set {DATA_ENV} to a folder with intact MNIST/raw/ files."
    try:
        ds = MNIST(str(root), train=train, download=False)
    except Exception as missing:  # torchvision raises RuntimeError when missing, other errors when damaged
        damaged = mnist_damaged_files(root, train)
        if damaged:
            raise _corrupt("MNIST", damaged, remedy) from None
        if not download:
            raise _unavailable("MNIST", root, "MNIST/raw/", missing) from None
        try:
            ds = MNIST(str(root), train=train, download=True)
        except Exception as err:  # network errors come in many types; all mean "not available"
            damaged = mnist_damaged_files(root, train)
            if damaged:
                raise _corrupt("MNIST", damaged, remedy) from None
            raise _unavailable("MNIST", root, "MNIST/raw/", err) from None
    return ImageSet(
        images=ds.data.unsqueeze(1).contiguous(),
        labels=ds.targets.to(torch.int64),
        classes=MNIST_CLASSES,
        name=f"MNIST-{'train' if train else 'test'}",
        mean=MNIST_MEAN,
        std=MNIST_STD,
    )


def _load_cifar(
    label: str, train: bool, root: str | Path | None, download: bool, allow_synthetic: bool | None
) -> ImageSet:
    """CIFAR-10 or CIFAR-100 (``label``) through torchvision, with the errors and fallback of :func:`load_cifar10`."""
    from torchvision.datasets import CIFAR10, CIFAR100

    ten = label == "CIFAR-10"
    cls, mean, std, num_classes = (
        (CIFAR10, CIFAR10_MEAN, CIFAR10_STD, 10) if ten else (CIFAR100, CIFAR100_MEAN, CIFAR100_STD, 100)
    )
    root = Path(root) if root is not None else data_root()
    allow = synthetic_allowed() if allow_synthetic is None else allow_synthetic
    folder = f"{cls.base_folder}/"
    remedy = (f"deleting the whole {folder} folder (and {cls.filename}, if it is there) makes torchvision download "
              f"and extract the release again.")  # fmt: skip
    try:
        ds = cls(str(root), train=train, download=False)
    except RuntimeError as missing:
        damaged = cifar_damaged_files(root, cls)
        if damaged:
            raise _corrupt(label, damaged, remedy) from None
        error: BaseException = missing
        ds = None
        if download:
            try:
                ds = cls(str(root), train=train, download=True)
            except Exception as err:  # network errors come in many types; all mean "not available"
                error = err
        if ds is None:
            unavailable = _unavailable(label, root, folder, error)
            if not allow:
                raise DataUnavailableError(
                    f"{unavailable} ({SYNTHETIC_ENV}=1 would allow a synthetic stand-in instead.)"
                ) from None
            warnings.warn(f"{unavailable} Using the SYNTHETIC stand-in ({SYNTHETIC_ENV}=1).", stacklevel=3)
            fake = synthetic_cifar(num_classes, train=train)
            fake.announce()
            return fake
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    return ImageSet(
        images=images,
        labels=torch.as_tensor(ds.targets, dtype=torch.int64),
        classes=tuple(ds.classes),
        name=f"{label.replace('-', '')}-{'train' if train else 'test'}",
        mean=mean,
        std=std,
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
        DataCorruptError: if files of ``cifar-10-batches-py/`` are on disk but damaged or missing
            (never replaced by the synthetic stand-in); the message names them and how to recover.
        DataUnavailableError: if the data is unavailable and synthetic data is not allowed.
    """
    return _load_cifar("CIFAR-10", train, root, download, allow_synthetic)


def load_cifar100(
    train: bool = True,
    root: str | Path | None = None,
    download: bool = True,
    allow_synthetic: bool | None = None,
) -> ImageSet:
    """Real CIFAR-100 (100 fine labels) through :class:`torchvision.datasets.CIFAR100`, as an :class:`ImageSet`.

    Returns images of shape ``(N, 3, 32, 32)`` (50,000 train or 10,000 test, 500 / 100 per class).
    Falls back to :func:`synthetic_cifar` with 100 classes, loudly, exactly as :func:`load_cifar10`.

    Raises:
        DataCorruptError: if files of ``cifar-100-python/`` are on disk but damaged or missing.
        DataUnavailableError: if the data is unavailable and synthetic data is not allowed.
    """
    return _load_cifar("CIFAR-100", train, root, download, allow_synthetic)


def synthetic_cifar10(train: bool = True, per_class: int | None = None, seed: int = 0) -> ImageSet:
    """A generated 32x32 RGB, 10-class stand-in for CIFAR-10 (NOT CIFAR-10): :func:`synthetic_cifar` with 10 classes."""
    return synthetic_cifar(10, train=train, per_class=per_class, seed=seed)


def synthetic_cifar(num_classes: int = 10, train: bool = True, per_class: int | None = None, seed: int = 0) -> ImageSet:
    """A generated 32x32 RGB stand-in for CIFAR-10 (``num_classes=10``) or CIFAR-100 (``100``); NOT real data.

    Class ``k`` is a sinusoidal grating at angle ``(k mod 10) * 18`` degrees with a frequency set by
    ``k mod 3`` and a class-specific colour, plus a random phase, a random colour jitter and pixel
    noise, so a small CNN can learn it but not perfectly. Deterministic for a given ``seed`` and split;
    the 10-class set is the first 10 classes' recipe of the 100-class one.

    Args:
        num_classes: 10 or 100.
        train: 5,000 (10 classes) or 500 (100 classes) images per class for train, 1,000 or 100 for
            test (the real sets' sizes) unless ``per_class`` says otherwise.
        per_class: images per class.
        seed: generator seed; train and test use different streams.
    """
    if num_classes not in (10, 100):
        raise ValueError(f"num_classes must be 10 (CIFAR-10) or 100 (CIFAR-100), got {num_classes!r}")
    default = (5000 if train else 1000) if num_classes == 10 else (500 if train else 100)
    n = per_class if per_class is not None else default
    if n <= 0:
        raise ValueError(f"per_class must be positive, got {n}")
    g = torch.Generator().manual_seed(2 * seed + (0 if train else 1))
    labels = torch.arange(num_classes).repeat_interleave(n)
    labels = labels[torch.randperm(labels.numel(), generator=g)]
    k = labels.to(torch.float32).view(-1, 1, 1)
    angle = (k % 10) * (math.pi / 10)
    freq = (2.0 + (k % 3) * 1.5) * (2 * math.pi / 32)
    coords = torch.arange(32, dtype=torch.float32)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    phase = torch.rand(labels.numel(), 1, 1, generator=g) * 2 * math.pi
    wave = torch.sin(freq * (xx * torch.cos(angle) + yy * torch.sin(angle)) + phase)  # (N, 32, 32)
    palette = torch.rand(num_classes, 3, generator=torch.Generator().manual_seed(1234)) * 0.6 + 0.2
    colour = palette[labels] + 0.15 * torch.randn(labels.numel(), 3, generator=g)  # (N, 3)
    img = colour.view(-1, 3, 1, 1) * (0.5 + 0.35 * wave.unsqueeze(1))
    img = img + 0.12 * torch.randn(img.shape, generator=g)
    images = (img.clamp(0, 1) * 255).round().to(torch.uint8)
    ten = num_classes == 10
    return ImageSet(
        images=images,
        labels=labels,
        classes=CIFAR10_CLASSES if ten else tuple(f"class{c:02d}" for c in range(num_classes)),
        name=f"SYNTHETIC-CIFAR{num_classes}-{'train' if train else 'test'}",
        mean=CIFAR10_MEAN if ten else CIFAR100_MEAN,
        std=CIFAR10_STD if ten else CIFAR100_STD,
        synthetic=True,
    )
