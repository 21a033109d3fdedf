"""Unit tests for helpers.loss_benchmark and its command line, benchmarks/bench_losses.py (smoke tests:
no test here is timed)."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from helpers import loss_benchmark as bench

ROOT = Path(__file__).resolve().parent.parent


def test_run_benchmark_smoke():
    rows = bench.run_benchmark(n=64, classes=(3, 5), repeats=2, warmup=0)
    assert {r["loss"] for r in rows} == {"cross_entropy", "focal_eager", "focal_fast", "sigmoid_focal_tv"}
    assert len(rows) == 8
    for r in rows:
        if r["loss"] == "cross_entropy":
            assert r["time_ratio"] == 1.0 and r["memory_ratio"] == 1.0
        assert r["ms"] > 0 and r["peak_mib"] > 0
    table = bench.format_table(rows)
    assert table.count("\n") == len(rows) + 1
    with pytest.raises(ValueError, match="repeats"):
        bench.run_benchmark(n=64, classes=(3,), repeats=0)


def test_threads_are_restored():
    before = torch.get_num_threads()
    bench.run_benchmark(n=16, classes=(3,), repeats=1, warmup=0, threads=1)
    assert torch.get_num_threads() == before


def test_peak_memory_tracker_counts_live_tensors():
    tracker = bench.PeakTensorMemory()
    with tracker:
        a = torch.ones(1000)  # 4000 bytes
        b = a * 2  # 8000 alive
        del a, b
        c = torch.zeros(500)  # the two above are freed: 2000 alive
    assert tracker.peak == 8000
    assert sum(n for _, n in tracker.live.values()) == c.numel() * 4


def test_command_line_wraps_the_helpers_module(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_losses", ROOT / "benchmarks" / "bench_losses.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    assert cli.run_benchmark is bench.run_benchmark  # one implementation, imported, not copied
    out = tmp_path / "r.json"
    rows = cli.main(["--n", "32", "--classes", "3", "--repeats", "1", "--warmup", "0", "--json", str(out)])
    assert len(rows) == 4 and "| focal_fast |" in capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert saved["rows"] == rows and saved["provenance"]["repeats"] == 1


def test_quartiles_lie_within_the_ratios():
    # with few rounds the 'exclusive' quartile method extrapolates (even below 0); 'inclusive' cannot
    rows = bench.run_benchmark(n=32, classes=(3,), repeats=2, warmup=0)
    for r in rows:
        assert 0 < r["time_ratio_q1"] <= r["time_ratio"] <= r["time_ratio_q3"]


def test_peak_memory_with_a_head_charges_the_logits_to_the_loss_that_keeps_them():
    # nn.Linear saves its input, not its output: the logits outlive the forward pass only if the loss saves them
    torch.manual_seed(0)
    n, d, c = 256, 8, 100
    head = torch.nn.Linear(d, c)
    features = torch.randn(n, d, requires_grad=True)
    y = torch.randint(0, c, (n,))
    fns = bench.loss_functions()
    logits_bytes = n * c * 4
    fast_alone = bench.peak_memory_bytes(fns["focal_fast"], head(features).detach().requires_grad_(), y, None)
    fast_with_head = bench.peak_memory_bytes(fns["focal_fast"], features, y, None, head)
    assert fast_with_head >= fast_alone + logits_bytes
    ce_with_head = bench.peak_memory_bytes(fns["cross_entropy"], features, y, None, head)
    assert 0.5 < fast_with_head / ce_with_head < 1.0
