"""The command line of the long-tail experiments: ``python -m helpers.experiments``.

Command line (``python -m helpers.experiments --help`` documents every flag)::

    python -m helpers.experiments --dataset mnist --imbalance 100 --profile exp \\
        --methods ce,focal_g2,ldam_drw,crt,tau_norm --seeds 0,1,2 --out results.json

records each finished run in the JSON file as it completes (atomically, :mod:`helpers.results_store`),
resumes from the finished runs when rerun with the same arguments, and refuses to overwrite a file
of different arguments without ``--force``. The file holds the configuration, one metrics record
per run, the per-epoch curves and provenance (date, torch version, device, git commit, and
``data_source``: ``"real"`` or ``"synthetic"`` when the labelled CIFAR stand-in replaced missing data;
the report ends with a loud line when it did).

This module sits on top of the long-tail modules: the method registry
(:mod:`helpers.longtail_methods`), the datasets (:mod:`helpers.longtail_data`), the runner
(:mod:`helpers.longtail_runner`) and the paired tables (:mod:`helpers.longtail_tables`).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import platform
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from helpers.imbalance import PROFILES
from helpers.longtail_data import DATASET_PROTOCOLS, DATASETS, MNIST_RECIPES, ExperimentConfigError
from helpers.longtail_methods import METHODS, check_methods
from helpers.longtail_runner import run_experiment
from helpers.longtail_tables import paired_table, summarize
from helpers.metrics import describe_groups
from helpers.results_store import ResultsStore
from helpers.runtime import pick_device

__all__ = ["build_parser", "main", "provenance"]


def provenance(device: torch.device | str) -> dict[str, str]:
    """Date (UTC, ISO 8601), torch and Python versions, device, platform and git commit of this run."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "device": str(device),
        "platform": platform.platform(),
        "git_commit": commit,
    }


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip() != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated non-negative integers, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated non-negative integers, got {text!r}")
    return values


def _number(cast: Callable[[str], float], minimum: float, what: str) -> Callable[[str], float]:
    """An argparse ``type``: ``cast(text)``, finite and ``>= minimum``, else a message naming ``what``."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value) or value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_positive_float = _number(float, 1.0, "a number >= 1 (n_max / n_min)")
_positive_int = _number(int, 1, "a positive integer")


_learning_rate = _number(float, 1e-12, "a positive learning rate")


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser (every flag documented in ``--help``)."""
    method_help = "; ".join(f"{m.name}: {m.description}" for m in METHODS.values())
    protocols = "; ".join(f"{d}: {', '.join(p)}" for d, p in DATASET_PROTOCOLS.items())
    parser = argparse.ArgumentParser(
        prog="python -m helpers.experiments",
        description="Train long-tail methods on a long-tailed dataset over several seed pairs and record every "
        "finished run (metrics, per-epoch curves, provenance) in a JSON file as it completes; rerun the same "
        "command to resume an interrupted experiment.",
    )
    parser.add_argument("--dataset", default="mnist", choices=sorted(DATASETS), help="dataset (default: mnist)")
    parser.add_argument(
        "--imbalance", type=_positive_float, default=100.0,
        help="imbalance ratio n_max / n_min of the training set, >= 1 (default: 100)",
    )
    parser.add_argument(
        "--profile", default="exp", choices=PROFILES, help="long-tailed profile: exp(onential) or step (default: exp)"
    )
    parser.add_argument(
        "--methods", default="ce,la_loss", help=f"comma-separated methods (default: ce,la_loss). {method_help}"
    )
    parser.add_argument(
        "--seeds", type=_int_list, default=[0, 1, 2],
        help="comma-separated seeds; seed i draws the long-tailed subset with data seed i and trains with "
        "training seed i (default: 0,1,2)",
    )
    parser.add_argument(
        "--epochs", type=_positive_int, default=None, help="training epochs (default: the dataset's recipe)"
    )
    parser.add_argument(
        "--protocol", default=None, help=f"training protocol of the dataset ({protocols}; default: the dataset's)"
    )
    parser.add_argument(
        "--data-seed", type=_non_negative_int, default=None,
        help="keep the long-tailed subset and validation draw fixed at this data seed for every seed "
        "(default: paired, data seed = seed)",
    )
    parser.add_argument("--n-max", type=_positive_int, default=None, help="head-class size (default: the dataset's)")
    parser.add_argument(
        "--recipe", default=None, choices=MNIST_RECIPES,
        help="MNIST only: training recipe, adamw (default) or the papers' plain SGD with momentum, without "
        "(sgd) or with (sgd_warmup) a linear warm-up",
    )
    parser.add_argument("--lr", type=_learning_rate, default=None, help="MNIST only: base learning rate of the recipe")
    parser.add_argument(
        "--device", default=None, help="compute device, e.g. cpu or cuda (default: CUDA, then MPS, then CPU)"
    )
    parser.add_argument(
        "--out", required=True,
        help="JSON results file; each finished run is recorded as it completes, and an existing file of the same "
        "arguments is resumed",
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite an existing --out file that holds different arguments"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (argument errors exit with status 2 and a message)."""
    from helpers.datasets import DataUnavailableError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        methods = check_methods(args.methods)
    except ValueError as err:
        parser.error(f"--methods: {err}")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds: seeds must not repeat, got {args.seeds}")
    allowed = DATASET_PROTOCOLS.get(args.dataset)
    if args.protocol is not None and allowed is not None and args.protocol not in allowed:
        parser.error(
            f"--protocol: dataset {args.dataset!r} has the protocols {', '.join(allowed)}; got {args.protocol!r}"
        )
    spec_kwargs = {}
    for flag, key in (("--recipe", "recipe"), ("--lr", "lr")):
        value = getattr(args, key)
        if value is not None:
            if args.dataset != "mnist":
                parser.error(f"{flag}: only the mnist dataset has recipes; {args.dataset!r} takes --protocol")
            spec_kwargs[key] = value
    out = Path(args.out)
    if out.parent and not out.parent.exists():
        parser.error(f"--out: folder {str(out.parent)!r} does not exist")
    try:
        device = pick_device(args.device)
    except (ValueError, RuntimeError) as err:
        parser.error(f"--device: {err}")
    config = {k: v for k, v in vars(args).items() if k not in ("out", "force", "no_progress")} | {"methods": methods}
    try:
        store = ResultsStore(out, config, force=args.force, provenance=provenance(device))
    except ValueError as err:  # ResultsConflictError included
        parser.error(f"--out: {err}")
    done = store.done()
    if done:
        print(f"resuming {out}: {len(done)} run(s) already recorded, only the missing ones will run")
    try:
        run_experiment(
            args.dataset, methods=methods, seeds=args.seeds, imbalance_ratio=args.imbalance, profile=args.profile,
            epochs=args.epochs, data_seed=args.data_seed, protocol=args.protocol, device=device, n_max=args.n_max,
            show_progress=not args.no_progress, spec_kwargs=spec_kwargs, skip=done, on_result=store.add,
        )  # fmt: skip
    except ExperimentConfigError as err:
        parser.error(str(err))
    except DataUnavailableError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 1
    store.finish()
    table = store.table()
    if store.payload["train_counts"] is not None:
        print(describe_groups(store.payload["train_counts"]))
    if table["seed"].nunique() >= 2 and "ce" in set(table["method"]):
        print(paired_table(table, "ce", methods=methods).to_string())
    else:
        print(summarize(table, ["accuracy", "balanced_accuracy", "few_recall", "worst_class_recall"]).to_string())
    source = store.payload["provenance"].get("data_source", "unknown")
    if source != "real":
        print(f"data: {source.upper()} -- these numbers are NOT results on the real {args.dataset} data")
    print(f"wrote {out} (data: {source})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
