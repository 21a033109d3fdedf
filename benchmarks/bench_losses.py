"""Command line for :mod:`helpers.loss_benchmark`: forward+backward time and peak memory of the focal
losses as ratios to ``F.cross_entropy`` (chapter 6 runs the same code through the helpers package).

Usage::

    python benchmarks/bench_losses.py                      # N=8192, C=10,100,1000 on CPU
    python benchmarks/bench_losses.py --repeats 5 --json results.json
    python benchmarks/bench_losses.py --device cuda --threads 4
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere in a clone

from helpers.loss_benchmark import format_table, run_benchmark  # noqa: E402


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--n", type=int, default=8192, help="batch size N (default 8192)")
    parser.add_argument("--classes", default="10,100,1000", help="comma-separated class counts C (default 10,100,1000)")
    parser.add_argument("--repeats", type=int, default=30, help="timed rounds per size (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first (default 3)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads; 0 = torch's choice (default 1)")
    parser.add_argument("--gamma", type=float, default=2.0, help="focal gamma (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the logits and labels (default 0)")
    parser.add_argument(
        "--head-features", type=int, default=64, help="input size of the nn.Linear head in the memory step (default 64)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write rows and provenance to this JSON file")
    args = parser.parse_args(argv)
    classes = tuple(int(c) for c in args.classes.split(","))
    threads = args.threads or None
    rows = run_benchmark(
        args.n,
        classes,
        args.repeats,
        args.warmup,
        args.device,
        args.gamma,
        args.seed,
        threads,
        head_features=args.head_features,
    )
    provenance = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "torch": torch.__version__,
        "device": args.device if args.device != "cuda" else torch.cuda.get_device_name(),
        "threads": threads or torch.get_num_threads(),
        "processor": platform.processor() or platform.machine(),
        "repeats": args.repeats,
    }
    print(format_table(rows))
    print(f"\n{provenance}")
    if args.json is not None:
        args.json.write_text(json.dumps({"provenance": provenance, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
