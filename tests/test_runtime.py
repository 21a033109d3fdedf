"""Unit tests for helpers.runtime."""

import pytest
import torch

from helpers import runtime


def test_env_flag_values(monkeypatch):
    for value, expected in [("1", True), ("true", True), ("ON", True), ("0", False), ("", False), ("no", False)]:
        monkeypatch.setenv("LOSSBOOK_TEST_FLAG", value)
        assert runtime.env_flag("LOSSBOOK_TEST_FLAG") is expected
    monkeypatch.delenv("LOSSBOOK_TEST_FLAG")
    assert runtime.env_flag("LOSSBOOK_TEST_FLAG") is False


def test_env_flag_typo_is_an_error(monkeypatch):
    monkeypatch.setenv("LOSSBOOK_QUICK", "ture")
    with pytest.raises(ValueError, match="LOSSBOOK_QUICK"):
        runtime.quick_mode()


def test_by_mode_and_banner(monkeypatch):
    monkeypatch.setenv("LOSSBOOK_QUICK", "1")
    assert runtime.by_mode(full=10, quick=1) == 1
    assert "QUICK" in runtime.mode_banner()
    monkeypatch.setenv("LOSSBOOK_QUICK", "0")
    assert runtime.by_mode(full=10, quick=1) == 10
    assert "FULL" in runtime.mode_banner()


def test_pick_device(monkeypatch):
    monkeypatch.delenv("LOSSBOOK_DEVICE", raising=False)
    device = runtime.pick_device()
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert device.type == expected
    assert runtime.pick_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("LOSSBOOK_DEVICE", "cpu")
    assert runtime.pick_device() == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised on a machine without CUDA")
def test_pick_device_unavailable_cuda():
    with pytest.raises(ValueError, match="CUDA is not available"):
        runtime.pick_device("cuda")


def test_seed_everything_is_reproducible():
    g1 = runtime.seed_everything(3)
    a = torch.randn(5), torch.randint(0, 10, (5,), generator=g1)
    g2 = runtime.seed_everything(3)
    b = torch.randn(5), torch.randint(0, 10, (5,), generator=g2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    runtime.seed_everything(4)
    assert not torch.equal(torch.randn(5), a[0])


@pytest.mark.parametrize("bad", [-1, 1.5, "0", True])
def test_seed_everything_rejects_bad_seeds(bad):
    with pytest.raises(ValueError, match="seed"):
        runtime.seed_everything(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2147483648", 2**31), ("2G", 2**31), ("2Gi", 2**31), ("512M", 2**29), ("max", None), ("", None), ("x", None)],
)
def test_parse_bytes(text, expected):
    assert runtime._parse_bytes(text) == expected


@pytest.fixture
def no_cgroup(monkeypatch):
    """Pretend the machine has no cgroup memory limit, so only MEM_LIMIT counts."""
    monkeypatch.setattr(runtime, "_CGROUP_LIMIT_FILES", ())
    monkeypatch.delenv("MEM_LIMIT", raising=False)
    monkeypatch.delenv("LOSSBOOK_QUICK", raising=False)


def test_memory_limit_reads_binder_env_and_cgroup(no_cgroup, monkeypatch, tmp_path):
    assert runtime.memory_limit_bytes() is None
    monkeypatch.setenv("MEM_LIMIT", "2147483648")  # what mybinder.org sets
    assert runtime.memory_limit_bytes() == 2**31
    v2, v1 = tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes"
    v2.write_text("1073741824\n")
    v1.write_text("9223372036854771712\n")  # cgroup v1's "unlimited"
    monkeypatch.setattr(runtime, "_CGROUP_LIMIT_FILES", (str(v2), str(v1), str(tmp_path / "absent")))
    assert runtime.memory_limit_bytes() == 2**30  # the smallest limit wins
    v2.write_text("max\n")
    monkeypatch.delenv("MEM_LIMIT")
    assert runtime.memory_limit_bytes() is None


def test_quick_mode_switches_on_under_binder_memory(no_cgroup, monkeypatch):
    assert runtime.quick_mode() is False and runtime.quick_mode_source() == "default"
    monkeypatch.setenv("MEM_LIMIT", "2147483648")
    with pytest.warns(UserWarning, match="switched on automatically"):
        assert runtime.quick_mode() is True
    assert runtime.quick_mode_source() == "memory"
    with pytest.warns(UserWarning):
        assert "automatic: memory limited to 2.0 GiB" in runtime.mode_banner()
    monkeypatch.setenv("LOSSBOOK_QUICK", "0")  # an explicit setting always wins
    assert runtime.quick_mode() is False and "FULL (LOSSBOOK_QUICK=0)" in runtime.mode_banner()
    monkeypatch.setenv("MEM_LIMIT", str(8 * 2**30))
    monkeypatch.delenv("LOSSBOOK_QUICK")
    assert runtime.quick_mode() is False  # 8 GiB holds every chapter in full mode


def test_mode_banner_fits_the_page(monkeypatch):
    monkeypatch.setenv("LOSSBOOK_QUICK", "1")
    assert max(len(line) for line in runtime.mode_banner().splitlines()) <= 88
