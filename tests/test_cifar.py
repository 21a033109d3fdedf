"""Unit tests for helpers.cifar: models, batch augmentation, normalization, protocols, and the real
torchvision CIFAR-10 code path on a tiny CIFAR-format fixture written into tmp_path."""

import hashlib

import pytest
import torch
import torchvision.transforms.functional as TF
from torch import nn

from helpers import cifar
from helpers.cifar import (
    PROTOCOLS,
    FastNet,
    Normalize,
    RandomCropFlip,
    ResNet32,
    count_parameters,
    default_protocol,
    get_protocol,
    published_table,
    random_crop_flip,
    write_cifar10_batches,
)
from helpers.datasets import DataUnavailableError, load_cifar10, synthetic_cifar10
from helpers.models import NormedLinear, use_normed_head

# ------------------------------------------------------------------------------------ models


def test_resnet32_matches_he_et_al():
    model = ResNet32()
    # 464,154 = the count of the CIFAR ResNet-32 with option-A shortcuts (LDAM's resnet32()).
    assert count_parameters(model) == 464_154
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 31  # + the classifier = 32 weighted layers
    assert sorted({c.out_channels for c in convs}) == [16, 32, 64]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    # Feature maps: 32x32 -> 16x16 -> 8x8 at 16/32/64 channels.
    assert model.features(torch.randn(1, 3, 32, 32)).shape == (1, 64, 8, 8)


def test_normalized_head_gives_cosines():
    model = ResNet32(normalized_head=True)
    assert isinstance(model.classifier, NormedLinear)
    assert count_parameters(model) == 464_154 - 10  # no bias
    logits = model(torch.randn(8, 3, 32, 32))
    assert logits.abs().max() <= 1 + 1e-6
    # The runner swaps heads with helpers.models.use_normed_head: same architecture either way.
    swapped = use_normed_head(ResNet32())
    assert isinstance(swapped.classifier, NormedLinear) and count_parameters(swapped) == count_parameters(model)


def test_fast_net_shapes_width_and_cost():
    net = FastNet(width=16)
    assert net(torch.randn(3, 3, 32, 32)).shape == (3, 10)
    assert count_parameters(net) < count_parameters(ResNet32()) / 2
    assert count_parameters(FastNet(width=8)) < count_parameters(net)
    # With a cosine head (built in, or swapped in by the runner) the logits are cosines: the fixed
    # 0.125 logit scale of the linear head must not apply, since LDAM's scale s=30 multiplies them.
    x = torch.randn(4, 3, 32, 32)
    for cosine in (FastNet(width=8, normalized_head=True), use_normed_head(FastNet(width=8))):
        features = cosine.features(x).amax(dim=(2, 3))
        expected = torch.nn.functional.normalize(features, dim=1) @ torch.nn.functional.normalize(
            cosine.classifier.weight, dim=0
        )
        torch.testing.assert_close(cosine(x), expected)
    with pytest.raises(ValueError, match="width"):
        FastNet(width=0)
    with pytest.raises(ValueError, match="model must be one of"):
        cifar.build_model("resnet56")


# ------------------------------------------------------------------------------- augmentation


def _reference_crop_flip(images, tops, lefts, flips, padding, fill):
    """torchvision's per-image transforms, one image at a time: the behaviour the batch version must match."""
    out = []
    for img, top, left, flip in zip(images, tops, lefts, flips, strict=True):
        padded = TF.pad(img, [padding], fill=fill)
        crop = TF.crop(padded, int(top), int(left), img.shape[1], img.shape[2])
        out.append(TF.hflip(crop) if flip else crop)
    return torch.stack(out)


def test_random_crop_flip_matches_per_image_torchvision():
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    out = random_crop_flip(images, torch.Generator().manual_seed(3), padding=4)
    # Replay the same draws (offsets, then flips) and apply torchvision's functional ops per image.
    g = torch.Generator().manual_seed(3)
    tops, lefts = torch.randint(0, 9, (16,), generator=g), torch.randint(0, 9, (16,), generator=g)
    flips = torch.randint(0, 2, (16,), generator=g).bool()
    assert flips.any() and not flips.all() and (tops != 4).any()
    assert torch.equal(out, _reference_crop_flip(images, tops, lefts, flips, 4, 0))
    assert out.dtype == torch.uint8 and out.shape == images.shape


def test_random_crop_flip_is_seeded_and_degenerates_to_identity():
    images = torch.rand(8, 3, 32, 32)
    a = random_crop_flip(images, torch.Generator().manual_seed(0))
    b = random_crop_flip(images, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and not torch.equal(a, images)
    assert torch.equal(random_crop_flip(images, padding=0, flip=False), images)
    flipped = random_crop_flip(images, torch.Generator().manual_seed(1), padding=0)
    for original, result in zip(images, flipped, strict=True):
        assert torch.equal(result, original) or torch.equal(result, original.flip(-1))
    with pytest.raises(ValueError, match="padding"):
        random_crop_flip(images, padding=-1)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        random_crop_flip(images[0])
    with pytest.raises(ValueError, match="fill"):
        random_crop_flip(images, fill=(0.0, 1.0))


def test_padding_a_normalized_batch_with_black_matches_torchvision_order():
    """torchvision pads the raw image with 0 (black), then normalizes; the trainer normalizes first.
    With fill = Normalize.black() both orders give the same batch."""
    raw = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    normalize = Normalize((0.49, 0.48, 0.45), (0.25, 0.24, 0.26))
    augment = RandomCropFlip(padding=4, fill=normalize.black())
    ours = augment(normalize(raw), torch.Generator().manual_seed(5))
    theirs = normalize(random_crop_flip(raw, torch.Generator().manual_seed(5), padding=4, fill=0))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_normalize_matches_imageset_and_validates():
    data = synthetic_cifar10(train=False, per_class=3)
    normalize = Normalize.for_dataset(data)
    torch.testing.assert_close(normalize(data.images), data.normalized(), rtol=0, atol=1e-5)
    with pytest.raises(TypeError, match="uint8"):
        normalize(data.images.float())
    with pytest.raises(ValueError, match="channels"):
        normalize(data.images[:, :1])
    with pytest.raises(ValueError, match="std"):
        Normalize((0.5,), (0.0,))


# ---------------------------------------------------------------------------------- protocols


def test_paper_protocol_is_cao_et_al():
    paper = get_protocol("paper")
    c = paper.config
    assert paper.model == "resnet32" and paper.drw_start_epoch == 160
    assert (c.epochs, c.batch_size, c.lr, c.momentum, c.weight_decay, c.warmup_epochs) == (200, 128, 0.1, 0.9, 2e-4, 5)
    from helpers.train import lr_at

    steps = 10
    rates = {epoch: lr_at(c, epoch * steps, steps) for epoch in (0, 10, 159, 160, 179, 180, 199)}
    assert rates[0] == pytest.approx(0.1 / 50)  # warm-up: first of 5 epochs x 10 steps
    assert rates[10] == rates[159] == pytest.approx(0.1)
    assert rates[160] == rates[179] == pytest.approx(0.1 * 0.01)
    assert rates[180] == rates[199] == pytest.approx(0.1 * 1e-4)
    assert set(PROTOCOLS) == {"paper", "gpu-fast", "cpu", "quick"}
    for proto in PROTOCOLS.values():
        assert 0 < proto.drw_start_epoch < proto.epochs


def test_protocol_epoch_override_scales_schedule_and_device_flags():
    short = get_protocol("paper").with_epochs(20)
    assert short.epochs == 20 and short.config.milestones == (16, 18) and short.drw_start_epoch == 16
    assert short.config.warmup_epochs == pytest.approx(0.5)
    one = get_protocol("paper").with_epochs(1)
    assert one.epochs == 1 and one.drw_start_epoch == 0 and one.config.schedule == "cosine"
    quick_cfg = get_protocol("quick").train_config("cpu", seed=4)
    assert quick_cfg.seed == 4 and not quick_cfg.amp and not quick_cfg.channels_last
    assert get_protocol("cpu").train_config("cpu").channels_last  # measured faster on CPU for FastNet
    cuda_cfg = get_protocol("gpu-fast").train_config("cuda", compile=True)
    assert cuda_cfg.amp and cuda_cfg.channels_last and cuda_cfg.compile
    with pytest.raises(ValueError, match="protocol must be one of"):
        get_protocol("fast")
    with pytest.raises(ValueError, match="epochs"):
        get_protocol("cpu").with_epochs(0)


def test_default_protocol_follows_mode_and_device():
    assert default_protocol("cpu", quick=True) == "quick"
    assert default_protocol("cpu", quick=False) == "cpu"
    assert default_protocol("cuda", quick=False) == "gpu-fast"


def test_published_table_is_typed_in_with_sources():
    table = published_table(profile="exp", imbalance_ratio=100)
    assert set(table["source"]) == {"cao2019ldam", "menon2021logitadjustment"}
    assert table["top1_error"].between(5, 50).all()
    cao = published_table().query("source == 'cao2019ldam'")
    assert len(cao) == 8 * 4  # eight methods x (exp 100, exp 10, step 100, step 10)
    best = cao[cao.profile.eq("exp") & cao.imbalance_ratio.eq(100)].sort_values("top1_error").iloc[0]
    assert best.method_key == "ldam_drw"


# ------------------------------------------------------- the real torchvision path, on a fixture


@pytest.fixture
def cifar_fixture(tmp_path, monkeypatch):
    """A tiny CIFAR-10 in the python-release format, readable by torchvision.datasets.CIFAR10.

    torchvision checks every file against the md5 sum of the REAL release (hard-coded in the
    CIFAR10 class), which a generated fixture cannot match. Rather than switching the check off,
    we tell the class the md5 sums of the fixture's own files: the integrity check still runs
    (a corrupted fixture would fail) and everything else is torchvision's real reading code.
    """
    from torchvision.datasets import CIFAR10

    train = synthetic_cifar10(train=True, per_class=120, seed=7)
    test = synthetic_cifar10(train=False, per_class=15, seed=7)
    folder = write_cifar10_batches(tmp_path, train, test)
    sums = cifar.local_md5_lists(tmp_path)
    assert sums["test_list"] == [["test_batch", hashlib.md5((folder / "test_batch").read_bytes()).hexdigest()]]
    for attribute, value in sums.items():
        monkeypatch.setattr(CIFAR10, attribute, value)
    monkeypatch.setattr("torchvision.datasets.CIFAR10.download", _no_network)
    monkeypatch.setenv("LOSSBOOK_DATA", str(tmp_path))
    monkeypatch.delenv("LOSSBOOK_ALLOW_SYNTHETIC", raising=False)
    return tmp_path, train, test


def _no_network(*args, **kwargs):
    raise OSError("network is unreachable (simulated)")


def test_fixture_is_read_by_torchvision_exactly(cifar_fixture):
    root, train, test = cifar_fixture
    # the integrity check still runs against the fixture's own sums: a corrupted file is refused
    from torchvision.datasets import CIFAR10

    assert CIFAR10(str(root), train=False)._check_integrity()
    got_train = load_cifar10(train=True, allow_synthetic=False)
    got_test = load_cifar10(train=False, root=root, allow_synthetic=False)
    assert not got_train.synthetic and got_train.name == "CIFAR10-train" and got_test.name == "CIFAR10-test"
    assert torch.equal(got_train.images, train.images) and torch.equal(got_train.labels, train.labels)
    assert torch.equal(got_test.images, test.images) and torch.equal(got_test.labels, test.labels)
    assert got_train.classes == cifar.CIFAR10_CLASSES


def test_fixture_with_real_md5_sums_is_rejected(tmp_path, monkeypatch):
    """Without the md5 patch, torchvision's integrity check refuses the fixture, and load_cifar10 says so."""
    write_cifar10_batches(tmp_path, synthetic_cifar10(per_class=2), synthetic_cifar10(train=False, per_class=1))
    monkeypatch.setattr("torchvision.datasets.CIFAR10.download", _no_network)
    with pytest.raises(DataUnavailableError, match="cifar-10-batches-py"):
        load_cifar10(root=tmp_path, allow_synthetic=False)


def test_write_cifar10_batches_validates_shapes(tmp_path):
    mnist_like = synthetic_cifar10(per_class=1).subset(torch.arange(10))
    bad = type(mnist_like)(
        images=mnist_like.images[:, :1], labels=mnist_like.labels, classes=mnist_like.classes,
        name="x", mean=(0.5,), std=(0.5,),
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"\(N, 3, 32, 32\)"):
        write_cifar10_batches(tmp_path, bad, mnist_like)


def test_cifar10_spec_on_fixture(cifar_fixture):
    spec = cifar.cifar10_spec(imbalance_ratio=10, profile="exp", seed=0, protocol="quick", device="cpu")
    assert spec.counts == [100, 77, 59, 46, 35, 27, 21, 16, 12, 10]
    assert spec.train.class_counts().tolist() == spec.counts
    assert spec.val.class_counts().tolist() == [10] * 10 and spec.test.class_counts().tolist() == [10] * 10
    # validation images are left-out training images: none of them is in the training subset
    train_rows = {bytes(r) for r in spec.train.images.flatten(1).numpy()}
    assert not any(bytes(r) in train_rows for r in spec.val.images.flatten(1).numpy())
    assert "SYNTHETIC" not in spec.description and "quick" in spec.description
    assert isinstance(spec.model_factory(), FastNet)
    assert isinstance(spec.model_factory(normalized_head=True).classifier, NormedLinear)
    x = spec.transform(spec.train.images[:4])
    assert x.dtype == torch.float32 and spec.augment(x, torch.Generator()).shape == x.shape
    assert spec.config.epochs == 2 and spec.drw_start_epoch == 1
    longer = cifar.cifar10_spec(imbalance_ratio=10, protocol="quick", epochs=4, device="cpu")
    assert longer.config.epochs == 4 and longer.drw_start_epoch == 2


def test_registry_entry_reaches_this_module(cifar_fixture):
    from helpers import longtail_data as lt_data

    spec = lt_data.DATASETS["cifar10"](imbalance_ratio=100, profile="step", seed=1, protocol="quick", device="cpu")
    assert spec.counts == [100] * 5 + [1] * 5
    assert lt_data.DATASETS["cifar10"](imbalance_ratio=10, protocol="quick", device="cpu", n_max=50).counts[0] == 50


def test_cli_writes_cifar10_json_with_protocol_and_provenance(cifar_fixture, tmp_path):
    import json

    from helpers import experiments

    out = tmp_path / "cifar.json"
    argv = ["--dataset", "cifar10", "--protocol", "quick", "--methods", "ce,posthoc_la", "--seeds", "0"]
    status = experiments.main([*argv, "--epochs", "1", "--device", "cpu", "--no-progress", "--out", str(out)])
    assert status == 0
    payload = json.loads(out.read_text())
    assert payload["config"]["protocol"] == "quick" and payload["config"]["dataset"] == "cifar10"
    assert payload["provenance"]["device"] == "cpu" and payload["provenance"]["git_commit"]
    assert [r["method"] for r in payload["runs"]] == ["ce", "posthoc_la"]
    assert payload["train_counts"] == [100, 59, 35, 21, 12, 7, 4, 2, 1, 1]
    assert len(payload["curves"][0]["history"]["train_loss"]) == 1  # --epochs 1


def test_corrupted_fixture_fails_the_integrity_check(cifar_fixture):
    root, _, _ = cifar_fixture
    batch = root / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:-1] + b"\x00")
    with pytest.raises(DataUnavailableError):
        load_cifar10(train=True, allow_synthetic=False)


def test_cifar100_lt_runs_from_the_cli_on_the_synthetic_stand_in_offline(tmp_path, monkeypatch, capsys):
    """CIFAR-100-LT goes through the same code path as CIFAR-10-LT: spec, registry, protocols, CLI."""
    import json

    from helpers import experiments

    monkeypatch.setenv("LOSSBOOK_DATA", str(tmp_path))
    monkeypatch.setenv("LOSSBOOK_ALLOW_SYNTHETIC", "1")
    monkeypatch.setattr("torchvision.datasets.CIFAR100.download", _no_network)
    with pytest.warns(UserWarning, match="SYNTHETIC"):
        spec = cifar.cifar100_spec(imbalance_ratio=10, seed=1, protocol="quick", device="cpu", n_max=20)
    assert len(spec.counts) == 100 and spec.counts[0] == 20 and spec.counts[-1] == 2
    assert spec.val.class_counts().tolist() == [10] * 100 and "SYNTHETIC STAND-IN (not CIFAR-100)" in spec.description
    assert spec.model_factory().classifier.out_features == 100
    # the paper and gpu-fast protocols build their 100-class networks through the same spec code
    assert cifar.get_protocol("paper").build_model(100).classifier.out_features == 100
    assert isinstance(cifar.get_protocol("paper").build_model(100), ResNet32)
    assert cifar.get_protocol("gpu-fast").build_model(100, normalized_head=True).classifier.weight.shape[1] == 100
    out = tmp_path / "c100.json"
    argv = ["--dataset", "cifar100", "--protocol", "quick", "--imbalance", "10", "--n-max", "20", "--epochs", "1",
            "--methods", "ce,tau_norm", "--seeds", "0", "--device", "cpu", "--no-progress",
            "--out", str(out)]  # fmt: skip
    with pytest.warns(UserWarning, match="SYNTHETIC"):
        assert experiments.main(argv) == 0
    payload = json.loads(out.read_text())
    assert [r["method"] for r in payload["runs"]] == ["ce", "tau_norm"] and len(payload["train_counts"]) == 100
    printed = capsys.readouterr().out
    assert "NOT CIFAR-100" in printed and "standard thresholds" in printed


def test_default_cifar100_split_keeps_450_of_500_images_in_the_head_class():
    proto = cifar.get_protocol("cpu")
    assert cifar.CIFAR100_VAL_PER_CLASS == 50 and proto.val_per_class == 100
    from helpers.imbalance import long_tailed_counts

    counts = long_tailed_counts(450, 100, 100)
    assert counts[0] == 450 and counts[-1] == 4
