"""Training throughput (images/s): the helpers trainer versus the common tutorial loop, side by side.

Baseline, the loop most PyTorch tutorials teach::

    dataset = torchvision.datasets.MNIST(root, train=True, transform=ToTensor())
    loader = DataLoader(dataset, batch_size=32, shuffle=True)
    for x, y in loader: ...forward, loss, backward, step...

Helpers: :func:`helpers.train.train` with the whole set as one normalised tensor in memory, batches
by indexing, and the MNIST chapter's settings (batch 128, ``channels_last``, fused AdamW). The same
model (:class:`helpers.models.MnistNet`), loss and optimizer (AdamW; PyTorch's default implementation in
the baseline, as in the tutorials) run in both. Intermediate variants separate what each change buys:
in-memory batching alone (batch 32), batch 128, ``channels_last``, the fused update, batch 256. The
measurement is :func:`helpers.train.compare_throughput` (the chapter runs a short
version of it): every variant sees the same number of images, all are measured in turn
``--repeats`` times in this one process, and the median is kept.

Usage::

    python benchmarks/bench_mnist_trainer.py [--images 8192] [--repeats 3]

The output ends with exactly three lines: ``baseline_images_per_s N``, ``helpers_images_per_s N``
and ``speedup Nx``.
"""

from __future__ import annotations

import argparse

import torch

from helpers.models import MnistNet
from helpers.train import THROUGHPUT_VARIANTS, TUTORIAL_BASELINE, compare_throughput

HELPERS_VARIANT = list(THROUGHPUT_VARIANTS)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=8192, help="images per measurement (default: 8192)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the median is kept (default: 3)")
    args = parser.parse_args()
    if args.images < 256 or args.repeats < 1:
        parser.error("--images must be >= 256 and --repeats >= 1")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, MnistNet, "
        f"{args.images} images x {args.repeats} repeats (median)"
    )
    result = compare_throughput(MnistNet, args.images, args.repeats, verbose=True)
    print(f"one-time load of MNIST into a normalised tensor: {result.pop('load_seconds'):.2f} s")
    baseline = result[TUTORIAL_BASELINE]
    for name, value in result.items():
        print(f"{name:45s} {value:9.0f} images/s  ({value / baseline:4.1f}x)")
    helpers = result[HELPERS_VARIANT]
    print(f"baseline_images_per_s {baseline:.0f}")
    print(f"helpers_images_per_s {helpers:.0f}")
    print(f"speedup {helpers / baseline:.1f}x")


if __name__ == "__main__":
    main()
