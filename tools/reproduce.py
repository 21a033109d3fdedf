"""The CIFAR-LT reproduction pipeline: build the job matrix, run one job, merge the results; or simulate it all.

    python tools/reproduce.py matrix --seeds 0,1,2                # the jobs, as JSON (the workflow's matrix)
    python tools/reproduce.py job --dataset cifar10 --setting exp100 --method ce --seed 0 \\
        --protocol paper --out-dir parts                         # one job: one results file with provenance
    python tools/reproduce.py merge parts --out results/cifar_lt_reproduction.json
    python tools/reproduce.py simulate --tiny                     # the whole matrix, stand-in, tiny budget

``.github/workflows/reproduce.yml`` calls the first three on GitHub's runners with real CIFAR-10 and
CIFAR-100; ``simulate`` calls the same functions here, on the synthetic stand-in with a tiny budget,
and merges into a file marked ``"kind": "simulation"`` (never inside ``results/``).
Each job runs ``python -m helpers.experiments`` (its ``main``, in this process) and then records a
``job`` section in its results file: git commit, torch and torchvision versions, device, data source
(real or synthetic), protocol, epochs, start and end time, and the runner.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a clone without installing

from helpers.reproduction import (  # noqa: E402
    METHOD_GROUPS,
    RESULTS_PATH,
    SETTINGS,
    build_matrix,
    job_argv,
    job_id,
    merge_job_files,
    reproduction_table,
    sources_text,
)
from helpers.results_store import add_sections  # noqa: E402

SYNTHETIC_ENV = "LOSSBOOK_ALLOW_SYNTHETIC"
#: The simulation's budget: the CI protocol (FastNet width 8, head class of 100 images), one epoch.
TINY = {"protocol": "quick", "epochs": 1}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def runner() -> dict:
    """Where this job runs: the GitHub Actions runner and run address, or the local host."""
    env = os.environ
    if env.get("GITHUB_ACTIONS") == "true":
        repo = f"{env.get('GITHUB_SERVER_URL', '')}/{env.get('GITHUB_REPOSITORY', '')}"
        run = f"{repo}/actions/runs/{env.get('GITHUB_RUN_ID', '')}"
        return {"name": env.get("RUNNER_NAME", "github"), "os": env.get("RUNNER_OS"), "arch": env.get("RUNNER_ARCH"),
                "environment": env.get("RUNNER_ENVIRONMENT"), "run": run, "attempt": env.get("GITHUB_RUN_ATTEMPT"),
                "cpus": os.cpu_count()}  # fmt: skip
    return {"name": f"local:{platform.node()}", "os": platform.system(), "arch": platform.machine(),
            "cpus": os.cpu_count()}  # fmt: skip


def data_source(dataset: str) -> str:
    """``"real"`` when the real ``dataset`` is on disk (nothing is downloaded), else ``"synthetic"``."""
    from helpers.datasets import DataUnavailableError, load_cifar10, load_cifar100

    loader = {"cifar10": load_cifar10, "cifar100": load_cifar100}[dataset]
    try:
        loader(train=False, download=False, allow_synthetic=False)
    except DataUnavailableError:
        return "synthetic"
    return "real"


def run_job(job: dict, protocol: str, out_dir: str | Path, epochs: int | None = None, n_max: int | None = None,
            device: str | None = None, simulation: bool = False) -> Path:  # fmt: skip
    """Run one matrix entry through ``python -m helpers.experiments`` and record its ``job`` provenance.

    A real job (``simulation=False``) refuses to start when ``LOSSBOOK_ALLOW_SYNTHETIC`` is set, and
    fails when its data is not the real dataset. Returns the job's results file.

    Raises:
        RuntimeError: as above, or when the CLI exits with an error.
    """
    from helpers import experiments

    if not simulation and os.environ.get(SYNTHETIC_ENV):
        raise RuntimeError(f"{SYNTHETIC_ENV} is set: a reproduction job never uses the synthetic stand-in")
    out = Path(out_dir) / f"{job['id']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    started, clock = _now(), time.perf_counter()
    status = experiments.main(job_argv(job, protocol, out, epochs=epochs, n_max=n_max, device=device))
    if status != 0:
        raise RuntimeError(f"python -m helpers.experiments exited with status {status} for job {job['id']}")
    source = data_source(job["dataset"])
    if not simulation and source != "real":
        raise RuntimeError(f"job {job['id']} did not run on real {job['dataset']}")
    payload = json.loads(out.read_text(encoding="utf-8"))
    prov = payload["provenance"]
    profile, ratio = SETTINGS[job["setting"]]
    add_sections(out, job={
        "id": job["id"], "dataset": job["dataset"], "setting": job["setting"], "profile": profile,
        "imbalance": ratio, "method": job["method"], "methods": list(METHOD_GROUPS[job["method"]]),
        "seed": job["seed"], "protocol": protocol, "epochs": (payload.get("train_config") or {}).get("epochs"),
        "n_max": n_max, "simulation": simulation, "data_source": source, "started": started, "finished": _now(),
        "seconds": round(time.perf_counter() - clock, 1), "git_commit": prov.get("git_commit"),
        "torch_version": prov.get("torch_version"), "torchvision_version": _version("torchvision"),
        "python_version": prov.get("python_version"), "device": prov.get("device"), "runner": runner(),
    })  # fmt: skip
    return out


def _files(inputs: list[str]) -> list[Path]:
    files: list[Path] = []
    for item in map(Path, inputs):
        files += sorted(item.rglob("*.json")) if item.is_dir() else [item]
    return files


def simulate(out_dir: str | Path, protocol: str, epochs: int | None, datasets: str, settings: str, methods: str,
             seeds: str) -> Path:  # fmt: skip
    """Every job of the matrix with a small budget, synthetic data allowed, then the merge; returns the merged file.

    The same functions as the workflow (:func:`build_matrix`, :func:`run_job`, :func:`merge_job_files`);
    the jobs are marked ``simulation`` and the merged file's ``kind`` is ``"simulation"``.
    """
    out_dir = Path(out_dir)
    merged = out_dir / "cifar_lt_simulation.json"
    published = (ROOT / RESULTS_PATH).parent.resolve()
    if published in (out_dir.resolve(), *out_dir.resolve().parents):
        raise ValueError(f"a simulation never writes into {published}, where the real results file lives")
    os.environ[SYNTHETIC_ENV] = "1"
    jobs = build_matrix(datasets, settings, methods, seeds)
    clock = time.perf_counter()
    files = []
    for i, job in enumerate(jobs, 1):
        files.append(run_job(job, protocol, out_dir / "parts", epochs=epochs, simulation=True))
        print(f"[{i}/{len(jobs)}] {job['id']} done, {time.perf_counter() - clock:.0f} s so far", flush=True)
    merge_job_files(files, merged)
    print(f"simulated {len(jobs)} jobs in {time.perf_counter() - clock:.0f} s; merged into {merged}")
    return merged


def _print_table(path: Path | str) -> None:
    """The merged file's table, headed by ``sources_text`` (which says SIMULATION for a simulated file)."""
    print(sources_text(path))
    print(reproduction_table(path).drop(columns="Source").to_string(index=False))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python tools/reproduce.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def selection(p: argparse.ArgumentParser, seeds: str) -> None:
        p.add_argument("--datasets", default="cifar10,cifar100", help="comma-separated: cifar10, cifar100")
        p.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated from {list(SETTINGS)}")
        p.add_argument(
            "--methods",
            default=",".join(METHOD_GROUPS),
            help=f"comma-separated trained methods (ce also records posthoc_la, crt, tau_norm): {list(METHOD_GROUPS)}",
        )
        p.add_argument("--seeds", default=seeds, help=f"comma-separated seeds (default: {seeds})")

    p = sub.add_parser("matrix", help="print the jobs as JSON ({'include': [...]}, GitHub's matrix format)")
    selection(p, "0,1,2")
    p.add_argument("--github-output", action="store_true", help="also append matrix=<json> to $GITHUB_OUTPUT")

    p = sub.add_parser("job", help="run one job and record its provenance")
    p.add_argument("--dataset", required=True, choices=["cifar10", "cifar100"])
    p.add_argument("--setting", required=True, choices=list(SETTINGS))
    p.add_argument("--method", required=True, choices=list(METHOD_GROUPS))
    p.add_argument("--seed", required=True, type=int)
    p.add_argument("--protocol", default="paper", help="CIFAR protocol (default: paper)")
    p.add_argument("--epochs", type=int, default=None, help="override the protocol's epochs")
    p.add_argument("--device", default=None, help="compute device (default: CUDA, then MPS, then CPU)")
    p.add_argument("--out-dir", required=True, help="folder of the job's results file (<job id>.json)")

    p = sub.add_parser("merge", help="merge job results files into one reproduction file")
    p.add_argument("inputs", nargs="+", help="job results files, or folders searched for *.json")
    p.add_argument("--out", required=True, help="the merged file")
    p.add_argument("--previous", default=None, help="an earlier merged file whose runs are kept (e.g. other seeds)")

    p = sub.add_parser("simulate", help="run the whole matrix on the stand-in with a tiny budget, and merge")
    selection(p, "0,1")
    p.add_argument("--tiny", action="store_true", help=f"the tiny budget: protocol {TINY['protocol']!r}, "
                   f"{TINY['epochs']} epoch (the default unless --protocol/--epochs are given)")  # fmt: skip
    p.add_argument("--protocol", default=None, help="protocol of the simulated jobs (default: the tiny budget's)")
    p.add_argument("--epochs", type=int, default=None, help="epochs of the simulated jobs")
    p.add_argument("--out-dir", default="_build/reproduce-simulation", help="where parts and the merged file go")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "matrix":
        jobs = build_matrix(args.datasets, args.settings, args.methods, args.seeds)
        text = json.dumps({"include": jobs})
        print(text)
        print(f"{len(jobs)} jobs", file=sys.stderr)
        if args.github_output:
            with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as f:
                f.write(f"matrix={text}\ncount={len(jobs)}\n")
    elif args.command == "job":
        job = {"id": job_id(args.dataset, args.setting, args.method, args.seed), "dataset": args.dataset,
               "setting": args.setting, "method": args.method, "seed": args.seed}  # fmt: skip
        print(f"wrote {run_job(job, args.protocol, args.out_dir, epochs=args.epochs, device=args.device)}")
    elif args.command == "merge":
        merged = merge_job_files(_files(args.inputs), args.out, previous=args.previous)
        print(f"merged {sum(len(e.get('jobs', [])) for e in merged['experiments'])} jobs "
              f"({merged['kind']}) into {args.out}")  # fmt: skip
        _print_table(args.out)
    else:
        tiny = args.tiny or (args.protocol is None and args.epochs is None)
        protocol = args.protocol or (TINY["protocol"] if tiny else "paper")
        epochs = args.epochs if args.epochs is not None else (TINY["epochs"] if tiny else None)
        _print_table(simulate(args.out_dir, protocol, epochs, args.datasets, args.settings, args.methods, args.seeds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
