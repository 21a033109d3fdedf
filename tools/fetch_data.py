"""Download the book's datasets into the data root, so that a build runs on the real data.

    python tools/fetch_data.py                 # MNIST and CIFAR-10
    python tools/fetch_data.py --only mnist
    python tools/fetch_data.py --only cifar10 --only cifar100   # the reproduction workflow's data

The data root is ``LOSSBOOK_DATA``, else ``data/`` in the clone (see helpers.datasets). Files already
there are checked, not downloaded again (the publishing workflow caches the folder between runs).
Never falls back to the synthetic CIFAR stand-ins: exit status 1 if a dataset is unavailable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a clone without installing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        choices=["mnist", "cifar10", "cifar100"],
        action="append",
        help="fetch only this dataset (default: mnist and cifar10)",
    )
    args = parser.parse_args(argv)
    wanted = args.only or ["mnist", "cifar10"]

    from helpers.datasets import DataUnavailableError, data_root, load_cifar10, load_cifar100, load_mnist

    print(f"data root: {data_root()}")
    try:
        for name in wanted:
            for train in (True, False):
                if name == "mnist":
                    ds = load_mnist(train=train, download=True)
                else:
                    loader = load_cifar10 if name == "cifar10" else load_cifar100
                    ds = loader(train=train, download=True, allow_synthetic=False)
                print(f"{name} {'train' if train else 'test'}: {len(ds)} images")
    except DataUnavailableError as err:
        print(err, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
