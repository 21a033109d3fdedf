"""Unit tests for helpers.datasets: data root, MNIST, CIFAR-10 errors and the synthetic stand-in."""

import pytest
import torch

from helpers import datasets
from helpers.datasets import DataUnavailableError, ImageSet, data_root, load_cifar10, load_mnist, synthetic_cifar10


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("LOSSBOOK_DATA", str(tmp_path))
    assert data_root() == tmp_path.resolve()
    monkeypatch.delenv("LOSSBOOK_DATA")
    repo = datasets.find_repo_root()
    assert repo is not None and (repo / "_config.yml").is_file()
    assert data_root() == repo / "data"
    # Outside a clone (package found elsewhere, cwd elsewhere): the user cache.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(datasets, "find_repo_root", lambda start=None: None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data_root() == tmp_path / "cache" / "lossbook"


def test_mnist_real_data_shapes_and_counts():
    train, test = load_mnist(train=True), load_mnist(train=False)
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.images.shape == (10000, 1, 28, 28)
    # Class counts of the real MNIST files (see ../shared/README.md).
    assert train.class_counts().tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert test.class_counts().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    x = train.subset(torch.arange(2000)).normalized()
    assert x.dtype == torch.float32 and abs(x.mean().item()) < 0.1 and abs(x.std().item() - 1) < 0.1


def _no_network(*args, **kwargs):
    raise OSError("network is unreachable (simulated)")


def test_missing_mnist_offline_gives_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("LOSSBOOK_DATA", str(tmp_path))
    monkeypatch.setattr("torchvision.datasets.MNIST.download", _no_network)
    with pytest.raises(DataUnavailableError) as info:
        load_mnist()
    message = str(info.value)
    assert "LOSSBOOK_DATA" in message and "MNIST/raw/" in message and str(tmp_path) in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_missing_cifar_without_permission_raises(monkeypatch, tmp_path):
    monkeypatch.setenv("LOSSBOOK_DATA", str(tmp_path))
    monkeypatch.setattr("torchvision.datasets.CIFAR10.download", _no_network)
    with pytest.raises(DataUnavailableError, match="LOSSBOOK_ALLOW_SYNTHETIC"):
        load_cifar10(allow_synthetic=False)


def test_missing_cifar_with_permission_is_synthetic_and_loud(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LOSSBOOK_DATA", str(tmp_path))
    monkeypatch.setenv("LOSSBOOK_ALLOW_SYNTHETIC", "1")
    monkeypatch.setattr("torchvision.datasets.CIFAR10.download", _no_network)
    with pytest.warns(UserWarning, match="SYNTHETIC"):
        fake = load_cifar10(train=False)
    assert fake.synthetic and fake.images.shape == (10000, 3, 32, 32)
    assert "NOT CIFAR-10" in capsys.readouterr().out
    assert "NOT CIFAR-10" in fake.banner()


def test_synthetic_is_deterministic_balanced_and_learnable():
    a = synthetic_cifar10(train=True, per_class=200, seed=1)
    b = synthetic_cifar10(train=True, per_class=200, seed=1)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.class_counts().tolist() == [200] * 10
    test = synthetic_cifar10(train=False, per_class=100, seed=1)
    assert not torch.equal(test.images[:100], a.images[:100])

    # Class-dependent structure: a nearest-class-mean classifier on phase-invariant features
    # (mean colour and the magnitude of the 2-D Fourier transform) separates the classes well above
    # chance (10%); a CNN has to discover such features itself.
    def features(s):
        x = s.images.float() / 255
        magnitude = torch.fft.rfft2(x.mean(1)).abs().flatten(1)
        return torch.cat([x.mean((2, 3)) * 10, magnitude / magnitude.norm(dim=1, keepdim=True) * 5], 1)

    train_f, test_f = features(a), features(test)
    centroids = torch.stack([train_f[a.labels == k].mean(0) for k in range(10)])
    acc = (torch.cdist(test_f, centroids).argmin(1) == test.labels).float().mean().item()
    assert acc > 0.5


def test_imageset_validation():
    with pytest.raises(ValueError, match="uint8"):
        ImageSet(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.int64), ("a",), "x", (0.0,), (1.0,))
    with pytest.raises(ValueError, match="labels"):
        ImageSet(
            torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64), ("a",), "x", (0.0,), (1.0,)
        )


def write_idx(path, array):
    """An IDX file (MNIST's format): magic 0x0000 0x08 ndim, big-endian dimensions, uint8 data."""
    header = bytes([0, 0, 0x08, array.dim()]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.to(torch.uint8).numpy().tobytes())


@pytest.fixture
def tiny_mnist(tmp_path, monkeypatch):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for prefix, n in (("train", 12), ("t10k", 5)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", torch.randint(0, 256, (n, 28, 28), generator=g))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", torch.arange(n) % 10)
    monkeypatch.setattr("torchvision.datasets.MNIST.download", _no_network)
    return tmp_path


def test_a_truncated_mnist_file_is_named_with_the_way_to_recover(tiny_mnist):
    assert len(load_mnist(root=tiny_mnist)) == 12  # the intact files are read by torchvision
    damaged = tiny_mnist / "MNIST" / "raw" / "train-images-idx3-ubyte"
    damaged.write_bytes(damaged.read_bytes()[:5000])
    with pytest.raises(datasets.DataCorruptError) as info:
        load_mnist(root=tiny_mnist)
    message = str(info.value)
    assert str(damaged) in message and "truncated" in message and "5,000 bytes" in message
    assert "Delete" in message and "download" in message and "could not be downloaded" not in message
    assert len(load_mnist(train=False, root=tiny_mnist)) == 5  # the other split is intact
    assert datasets.mnist_damaged_files(tiny_mnist, train=False) == []


def test_a_damaged_cifar10_file_is_named_and_never_replaced_by_the_stand_in(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    from helpers.cifar import local_md5_lists, write_cifar10_batches

    write_cifar10_batches(tmp_path, synthetic_cifar10(per_class=3), synthetic_cifar10(train=False, per_class=2))
    for attribute, value in local_md5_lists(tmp_path).items():
        monkeypatch.setattr(CIFAR10, attribute, value)
    monkeypatch.setattr("torchvision.datasets.CIFAR10.download", _no_network)
    assert len(load_cifar10(root=tmp_path, allow_synthetic=False)) == 30
    damaged = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    damaged.write_bytes(damaged.read_bytes()[:100])
    with pytest.raises(datasets.DataCorruptError) as info:
        load_cifar10(root=tmp_path, allow_synthetic=True)
    message = str(info.value)
    assert str(damaged) in message and "md5" in message and "Delete" in message and "cifar-10-batches-py/" in message
    assert "data_batch_1" not in message  # only the damaged file is named


def test_synthetic_cifar100_stand_in_is_loud_and_has_100_classes(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("torchvision.datasets.CIFAR100.download", _no_network)
    with pytest.warns(UserWarning, match="SYNTHETIC"):
        fake = datasets.load_cifar100(train=False, root=tmp_path, allow_synthetic=True)
    assert fake.synthetic and fake.images.shape == (10000, 3, 32, 32) and fake.num_classes == 100
    assert "NOT CIFAR-100" in capsys.readouterr().out and "cifar-100-python/" in fake.banner()
    with pytest.raises(DataUnavailableError, match="CIFAR-100"):
        datasets.load_cifar100(root=tmp_path, allow_synthetic=False)
    ten = datasets.synthetic_cifar(10, per_class=5, seed=3)
    assert torch.equal(ten.images, synthetic_cifar10(per_class=5, seed=3).images)
