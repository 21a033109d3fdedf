"""Training throughput on CIFAR-10: the book's tensor pipeline vs torchvision DataLoader + transforms.

Both pipelines train the same network with the same optimizer, batch size and augmentation (random
crop with 4-pixel zero padding, horizontal flip, normalization):

* **baseline**: ``torchvision.datasets.CIFAR10`` with
  ``Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(), ToTensor(), Normalize(...)])`` in a
  ``DataLoader(shuffle=True)``: PIL images and per-sample Python (the usual tutorial code); measured
  with ``num_workers`` 0 and 2 and the faster of the two is kept, so the baseline is not handicapped;
* **helpers**: the uint8 training set as one tensor on the device and :func:`helpers.train.train`
  with :class:`helpers.cifar.Normalize` and :class:`helpers.cifar.RandomCropFlip` as whole-batch
  tensor operations (and mixed precision + channels_last on CUDA).

The two are measured alternately, several rounds, in one process, and the median of each is
reported, because the machine may be shared. The images are real CIFAR-10 when ``LOSSBOOK_DATA``
holds it; otherwise the synthetic stand-in is written in the CIFAR-10 file format so that the
baseline still goes through torchvision's real ``CIFAR10`` class (pixel values do not change speed).

Usage::

    python benchmarks/bench_cifar_pipeline.py                 # CPU, and CUDA when available
    python benchmarks/bench_cifar_pipeline.py --model resnet32 --images 2048 --rounds 3

Output: the data-preparation rates alone (no network), one line per measurement, then per device the lines
``baseline_images_per_s N``, ``helpers_images_per_s N``, ``speedup Nx``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from helpers.cifar import Normalize, RandomCropFlip, build_model, local_md5_lists, write_cifar10_batches
from helpers.datasets import DataUnavailableError, data_root, load_cifar10, synthetic_cifar10
from helpers.train import TrainConfig, make_optimizer, train


def torchvision_dataset(workdir: Path):
    """torchvision's CIFAR10 (training split) with the standard augmentation, and where its files came from."""
    from torchvision import transforms
    from torchvision.datasets import CIFAR10

    transform = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
        ]
    )
    try:
        load_cifar10(train=False, download=False, allow_synthetic=False)
        return CIFAR10(str(data_root()), train=True, transform=transform), "real CIFAR-10"
    except DataUnavailableError:
        pass
    write_cifar10_batches(workdir, synthetic_cifar10(train=True, per_class=600), synthetic_cifar10(False, 10))
    local = type("LocalCIFAR10", (CIFAR10,), local_md5_lists(workdir))  # md5 sums of the files just written
    return local(str(workdir), train=True, transform=transform), "synthetic stand-in in CIFAR-10 file format"


def baseline_rate(model, dataset, n_images, batch_size, workers, device) -> float:
    """Images/s of a plain training loop over a DataLoader of PIL-transformed samples."""
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True,
        pin_memory=device.type == "cuda", persistent_workers=False,
    )  # fmt: skip
    optimizer = make_optimizer(model, TrainConfig(lr=0.01))
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    seen, start = 0, time.perf_counter()
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += x.shape[0]
        if seen >= n_images:
            break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def helpers_rate(model, images, labels, batch_size, device) -> float:
    """Images/s of helpers.train.train on the uint8 tensor (transform + augment on the device)."""
    normalize = Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    cuda = device.type == "cuda"
    config = TrainConfig(epochs=1, batch_size=batch_size, lr=0.01, schedule="constant", amp=cuda, channels_last=cuda)
    start = time.perf_counter()
    result = train(model, nn.CrossEntropyLoss(), images, labels, config, transform=normalize,
                   augment=RandomCropFlip(4, fill=normalize.black()), show_progress=False)  # fmt: skip
    if cuda:
        torch.cuda.synchronize()
    return images.shape[0] / (time.perf_counter() - start) if result.seconds else float("nan")


def pipeline_only_rates(dataset, images, batch_size, n_images, device) -> tuple[float, float]:
    """Images/s of data preparation alone (no network): DataLoader (num_workers=0) vs tensor batches."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True)
    seen, start = 0, time.perf_counter()
    for x, _ in loader:
        x = x.to(device)
        seen += x.shape[0]
        if seen >= n_images:
            break
    baseline = seen / (time.perf_counter() - start)
    normalize = Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    augment, generator = RandomCropFlip(4, fill=normalize.black()), torch.Generator(device=device).manual_seed(0)
    order = torch.randperm(images.shape[0], device=device)
    start = time.perf_counter()
    for begin in range(0, images.shape[0] - batch_size + 1, batch_size):
        x = augment(normalize(images[order[begin : begin + batch_size]]), generator)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return baseline, (images.shape[0] // batch_size) * batch_size / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="fast", choices=["fast", "resnet32"], help="network (default: fast)")
    parser.add_argument("--width", type=int, default=16, help="FastNet width (default 16)")
    parser.add_argument("--batch-size", type=int, default=128, help="batch size of both pipelines (default 128)")
    parser.add_argument("--images", type=int, default=1536, help="training images per measurement (default 1536)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating measurement rounds (default 3)")
    parser.add_argument("--workers", default="0,2", help="DataLoader num_workers to try (default 0,2)")
    parser.add_argument("--devices", default=None, help="comma list, default: cpu and cuda when available")
    args = parser.parse_args(argv)
    if args.images < args.batch_size:
        parser.error("--images must be at least --batch-size")
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    workers = [int(w) for w in args.workers.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        dataset, source = torchvision_dataset(Path(tmp))
        print(f"data: {source}; model {args.model} (width {args.width}), batch {args.batch_size}, "
              f"{args.images} images per measurement, {args.rounds} rounds, torch {torch.__version__}")  # fmt: skip
        images = torch.from_numpy(dataset.data[: args.images]).permute(0, 3, 1, 2).contiguous()
        labels = torch.as_tensor(dataset.targets[: args.images], dtype=torch.int64)
        for name in devices:
            device = torch.device(name)
            model = build_model(args.model, width=args.width).to(device)
            x, y = images.to(device), labels.to(device)
            helpers_rate(model, x[: args.batch_size * 2], y[: args.batch_size * 2], args.batch_size, device)  # warm
            prep_base, prep_fast = pipeline_only_rates(dataset, x, args.batch_size, args.images, device)
            print(f"{name} data preparation only (no network): DataLoader {prep_base:.0f} images/s, "
                  f"tensor batches {prep_fast:.0f} images/s ({prep_fast / prep_base:.1f}x)", flush=True)
            base: dict[int, list[float]] = {w: [] for w in workers}
            fast: list[float] = []
            for round_ in range(args.rounds):
                for w in workers:
                    base[w].append(baseline_rate(model, dataset, args.images, args.batch_size, w, device))
                    print(f"{name} round {round_} baseline(num_workers={w}) {base[w][-1]:.0f} images/s", flush=True)
                fast.append(helpers_rate(model, x, y, args.batch_size, device))
                print(f"{name} round {round_} helpers {fast[-1]:.0f} images/s", flush=True)
            best_w = max(workers, key=lambda w: statistics.median(base[w]))
            b, h = statistics.median(base[best_w]), statistics.median(fast)
            print(f"== {name} (baseline with num_workers={best_w}) ==")
            print(f"baseline_images_per_s {b:.0f}")
            print(f"helpers_images_per_s {h:.0f}")
            print(f"speedup {h / b:.2f}x")


if __name__ == "__main__":
    main()
