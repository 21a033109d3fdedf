"""The papers' CIFAR-LT tables reproduced by a pipeline: the job matrix, the merged results file, and its table.

CIFAR-10 and CIFAR-100 cannot be downloaded on every machine that builds the book, so the
reproduction runs where the data is: ``.github/workflows/reproduce.yml`` (manual dispatch) runs one
job per *(dataset, setting, method group, seed)* through ``python -m helpers.experiments``, each job
writing its own results file (:mod:`helpers.results_store`) with a ``job`` section of provenance; a
final job merges them into one file, :data:`RESULTS_PATH`, that chapter 5 reads.
``python tools/reproduce.py simulate --tiny`` runs the same matrix on the synthetic stand-in with a
tiny budget through the same entry points, and merges it, so the pipeline is checked offline.

* :data:`SETTINGS`: ``exp100``, ``exp10``, ``step100`` -- the papers' long-tailed profiles;
* :data:`METHOD_GROUPS`: one trained method per job; ``ce`` carries the methods derived from its
  model (post-hoc logit adjustment, cRT, tau-norm), which the CLI trains once per seed;
* :func:`build_matrix` / :func:`job_argv`: the matrix and the CLI arguments of one of its jobs;
* :func:`merge_job_files`: every job file into one reproduction file (one experiment per setting);
* :func:`reproduction_table`: every setting and method with the mean top-1 error over seeds and its
  95% t-interval, beside the published rows (:data:`helpers.cifar.PUBLISHED_ERRORS`), and where each
  number came from.

The top-1 error is ``100 * (1 - accuracy)`` on the balanced test set, in percent, as in the papers.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from helpers.results_store import merge_results, write_json_atomic

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DATASET_LABELS",
    "FORMAT",
    "GITHUB_MATRIX_LIMIT",
    "METHOD_GROUPS",
    "METHOD_NAMES",
    "NO_RESULTS_SENTENCE",
    "PAPERS",
    "RESULTS_PATH",
    "SETTINGS",
    "build_matrix",
    "job_argv",
    "job_id",
    "load_reproduction",
    "merge_job_files",
    "reproduction_table",
    "repository_results_path",
    "short_status",
    "sources_text",
]

#: The file chapter 5 reads, relative to the repository root (the workflow's merged output).
RESULTS_PATH = Path("results") / "cifar_lt_reproduction.json"
FORMAT = "lossbook-reproduction/1"
#: GitHub Actions: "a job matrix can generate a maximum of 256 jobs per workflow run".
GITHUB_MATRIX_LIMIT = 256

#: Setting name -> (profile, imbalance ratio), the columns of Cao et al.'s Table 2 that we run.
SETTINGS: dict[str, tuple[str, int]] = {"exp100": ("exp", 100), "exp10": ("exp", 10), "step100": ("step", 100)}
DATASET_LABELS = {"cifar10": "CIFAR-10-LT", "cifar100": "CIFAR-100-LT"}

#: Trained method of a job -> the methods the job records (the derived ones re-use its model).
METHOD_GROUPS: dict[str, tuple[str, ...]] = {
    "ce": ("ce", "posthoc_la", "crt", "tau_norm"),
    "focal_g1": ("focal_g1",),
    "ldam": ("ldam",),
    "ldam_drw": ("ldam_drw",),
    "cb_resample": ("cb_resample",),
    "ce_cb": ("ce_cb",),
    "cb_focal_sigmoid": ("cb_focal_sigmoid",),
    "la_loss": ("la_loss",),
    "balanced_softmax": ("balanced_softmax",),
}

#: Display names for tables (method ids stay in the data).
METHOD_NAMES = {
    "ce": "Cross-entropy (ERM)",
    "posthoc_la": "Post-hoc logit adjustment",
    "crt": "cRT (re-trained classifier)",
    "tau_norm": "tau-norm",
    "focal_g1": "Focal, gamma 1",
    "ldam": "LDAM",
    "ldam_drw": "LDAM-DRW",
    "cb_resample": "Class-balanced resampling (CB RS)",
    "ce_cb": "Class-balanced re-weighting (CB RW)",
    "cb_focal_sigmoid": "CB Focal (sigmoid)",
    "la_loss": "Logit-adjusted loss",
    "balanced_softmax": "Balanced softmax",
}

#: Column label -> source key of :data:`helpers.cifar.PUBLISHED_ERRORS`.
PAPERS = {"Cao et al. 2019": "cao2019ldam", "Menon et al. 2021": "menon2021logitadjustment"}

NO_RESULTS_SENTENCE = (
    "No reproduction results file yet: the workflow reproduce.yml has not run on real CIFAR, so this page "
    "shows the published numbers only."
)


def _names(values: str | Sequence, known: Iterable, what: str) -> list:
    items = [v.strip() for v in values.split(",") if v.strip()] if isinstance(values, str) else list(values)
    unknown = [v for v in items if v not in set(known)]
    if not items or unknown:
        raise ValueError(f"{what} must be a non-empty list from {sorted(known)}, got {values!r}")
    return items


def job_id(dataset: str, setting: str, method: str, seed: int) -> str:
    """``'cifar10-exp100-ce-s0'``: the job's name, its results file's stem and its artifact's suffix."""
    return f"{dataset}-{setting}-{method}-s{seed}"


def build_matrix(
    datasets: str | Sequence[str] = ("cifar10", "cifar100"),
    settings: str | Sequence[str] = tuple(SETTINGS),
    methods: str | Sequence[str] = tuple(METHOD_GROUPS),
    seeds: str | Sequence[int] = (0, 1, 2),
) -> list[dict]:
    """One entry per job: ``{"id", "dataset", "setting", "method", "seed"}``, in a stable order.

    ``methods`` are keys of :data:`METHOD_GROUPS` (the trained method of each job). Comma-separated
    strings are accepted, as a workflow input passes them.

    Raises:
        ValueError: on an unknown dataset, setting or method, a bad seed, or more jobs than GitHub's
            matrix limit (:data:`GITHUB_MATRIX_LIMIT`): dispatch the seeds in two runs instead.
    """
    datasets = _names(datasets, DATASET_LABELS, "datasets")
    settings = _names(settings, SETTINGS, "settings")
    methods = _names(methods, METHOD_GROUPS, "methods")
    try:
        seeds = [int(s) for s in (seeds.split(",") if isinstance(seeds, str) else seeds) if str(s).strip() != ""]
    except ValueError:
        raise ValueError(f"seeds must be comma-separated non-negative integers, got {seeds!r}") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct non-negative integers, got {seeds!r}")
    jobs = [
        {"id": job_id(d, s, m, seed), "dataset": d, "setting": s, "method": m, "seed": seed}
        for d in datasets for s in settings for m in methods for seed in seeds
    ]  # fmt: skip
    if len(jobs) > GITHUB_MATRIX_LIMIT:
        raise ValueError(
            f"{len(jobs)} jobs exceed GitHub's limit of {GITHUB_MATRIX_LIMIT} per workflow run; "
            "dispatch fewer seeds per run (the merge adds them to the committed results file)"
        )
    return jobs


def job_argv(job: dict, protocol: str, out: str | Path, epochs: int | None = None, n_max: int | None = None,
             device: str | None = None) -> list[str]:  # fmt: skip
    """The ``python -m helpers.experiments`` arguments of one matrix entry (one method group, one seed)."""
    profile, ratio = SETTINGS[job["setting"]]
    argv = [
        "--dataset", job["dataset"], "--profile", profile, "--imbalance", str(ratio), "--protocol", protocol,
        "--methods", ",".join(METHOD_GROUPS[job["method"]]), "--seeds", str(job["seed"]), "--out", str(out),
        "--no-progress",
    ]  # fmt: skip
    for flag, value in (("--epochs", epochs), ("--n-max", n_max), ("--device", device)):
        if value is not None:
            argv += [flag, str(value)]
    return argv


def _setting_key(config: dict) -> tuple:
    return (config["dataset"], config["profile"], float(config["imbalance"]))


def _protocol_epochs(protocol: object) -> int | None:
    """The epochs of the CIFAR protocol named ``protocol``, or None for an unknown name."""
    from helpers.cifar import PROTOCOLS

    return PROTOCOLS[protocol].epochs if protocol in PROTOCOLS else None


def _departures(jobs: Iterable[dict]) -> str:
    """How the jobs depart from the paper's protocol, e.g. ``'protocol gpu-fast, 40 epochs'``; ``''`` when none does.

    A job follows the paper's protocol only when its ``protocol`` is ``"paper"``, its ``epochs`` are that
    protocol's (:data:`helpers.cifar.PROTOCOLS`, 200) and its ``n_max`` is None (no cap on the images
    per class); a missing field counts as a departure ("unknown").
    """
    full = _protocol_epochs("paper")
    parts = set()
    for job in jobs:
        protocol, epochs, n_max = job.get("protocol"), job.get("epochs"), job.get("n_max", "unknown")
        if protocol != "paper" or epochs is None or int(epochs) != full or n_max is not None:
            words = [f"protocol {protocol if protocol is not None else 'unknown'}",
                     f"{epochs if epochs is not None else 'unknown'} epochs"]  # fmt: skip
            if n_max is not None:
                words.append(f"n_max {n_max}")
            parts.add(", ".join(words))
    return "; ".join(sorted(parts))


def merge_job_files(paths: Iterable[str | Path], out: str | Path, previous: str | Path | None = None) -> dict:
    """Merge the jobs' results files (and optionally a ``previous`` reproduction file) into ``out``.

    Files of one (dataset, profile, imbalance) become one experiment through
    :func:`helpers.results_store.merge_results` (their methods and seeds united, runs de-duplicated).
    The output records ``kind``: ``"simulation"`` when any job ran on synthetic data or is a
    ``simulation`` job, so a simulated file can never be shown as a CIFAR result; else
    ``"off-protocol"`` when any job departs from the paper's protocol (another protocol such as
    ``gpu-fast``, epochs other than its 200 (the workflow's ``epochs`` input), an ``n_max`` cap, or
    any of these unknown), so such a run is never called a reproduction; ``"reproduction"`` only when
    every job ran on real data with protocol ``paper``, 200 epochs and no ``n_max``. Written
    atomically; returns the payload.

    Raises:
        ValueError: when no file is given, or a file is not a complete results file with a ``job`` section.
    """
    payloads = []
    for path in paths:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
        if not payload.get("complete"):
            raise ValueError(f"{path} is not complete (a job stopped before recording all its runs)")
        if not payload.get("job"):
            raise ValueError(f"{path} has no job section (provenance): it was not written by tools/reproduce.py job")
        payloads.append(payload)
    if previous is not None and Path(previous).exists():
        old = load_reproduction(previous)
        payloads += old["experiments"]
    if not payloads:
        raise ValueError("nothing to merge: no job results files were given")
    groups: dict[tuple, list[dict]] = {}
    for payload in payloads:
        groups.setdefault(_setting_key(payload["config"]), []).append(payload)
    order = [(d, *SETTINGS[s]) for d in DATASET_LABELS for s in SETTINGS]  # the papers' column order

    def rank(key: tuple) -> tuple:
        return (order.index(key) if key in order else len(order), key)

    experiments = [merge_results(groups[key]) for key in sorted(groups, key=rank)]
    jobs = [job for e in experiments for job in e.get("jobs", [])]
    simulated = any(job.get("simulation") or job.get("data_source") != "real" for job in jobs) or not jobs
    kind = "simulation" if simulated else "off-protocol" if _departures(jobs) else "reproduction"
    merged = {
        "format": FORMAT,
        "kind": kind,
        "merged_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "experiments": experiments,
    }
    write_json_atomic(out, merged)
    return merged


def load_reproduction(path: str | Path) -> dict:
    """A merged reproduction file (:func:`merge_job_files`), checked for its format.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if it is not a reproduction file.
    """
    payload = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or "experiments" not in payload:
        raise ValueError(f"{path} is not a reproduction file ({FORMAT}) of tools/reproduce.py merge")
    return payload


def _interval(errors: Sequence[float]) -> str:
    """``'mean [low, high]'``: the 95% t-interval of the mean error over seeds; non-finite runs counted apart."""
    from helpers.stats import paired_difference

    finite = [e for e in errors if math.isfinite(e)]
    failed = f" ({len(errors) - len(finite)} run(s) without a result)" if len(finite) < len(errors) else ""
    if not finite:
        return "no result" + failed
    if len(finite) < 2:
        return f"{finite[0]:.2f} (1 seed, no interval){failed}"
    ci = paired_difference(finite, [0.0] * len(finite))  # the interval of the mean error itself
    return f"{ci.mean:.2f} [{ci.low:.2f}, {ci.high:.2f}]{failed}"


def _source(payload: dict, kind: str) -> str:
    jobs = payload.get("jobs", [])
    protocols = sorted({str(j.get("protocol")) for j in jobs}) or [str(payload["config"].get("protocol"))]
    budgets = sorted({str(j.get("epochs")) for j in jobs})
    devices = sorted({str(j.get("device")) for j in jobs})
    commits = sorted({str(j.get("git_commit", ""))[:7] for j in jobs})
    data = {"reproduction": "real data", "off-protocol": "real data, NOT THE PAPER'S PROTOCOL, not a reproduction"}.get(
        kind, "SIMULATION, not a CIFAR result"
    )
    return (f"this book ({data}): protocol {'/'.join(protocols)}, {'/'.join(budgets)} epochs, "
            f"{'/'.join(devices)}, commit {'/'.join(commits)}")  # fmt: skip


def reproduction_table(path: str | Path) -> pd.DataFrame:
    """Every setting and method of a reproduction file beside the published rows, with intervals and sources.

    One row per (dataset, setting, method): ``Dataset``, ``Setting`` (e.g. ``exp 100``), ``Method``
    (display name), ``Seeds``, ``Top-1 error % (95% CI)`` (mean of ``100 * (1 - accuracy)`` over the
    seeds with a Student-t interval; one seed shows no interval), ``Cao et al. 2019`` and
    ``Menon et al. 2021`` (the published error, ``-`` where the paper has none), and ``Source``
    (protocol, epochs, device and commit of our runs; ``SIMULATION`` when any job ran on the
    synthetic stand-in or is a simulation job; ``NOT THE PAPER'S PROTOCOL`` when the runs are on real
    data but some depart from the paper's protocol (another protocol, other epochs, an ``n_max`` cap, or
    unknown), so the row is not a reproduction of the paper's number). Published rows exist for
    CIFAR-10-LT only (:data:`helpers.cifar.PUBLISHED_ERRORS`).
    """
    import pandas as pd

    from helpers.cifar import PUBLISHED_ERRORS, PUBLISHED_METHOD_KEYS

    payload = load_reproduction(path)
    published = {(PUBLISHED_METHOD_KEYS[m], p, r, s): e for (s, m, p, r), e in PUBLISHED_ERRORS.items()}
    rows = []
    for exp in payload["experiments"]:
        dataset, profile, ratio = _setting_key(exp["config"])
        runs = pd.DataFrame(exp["runs"])
        order = [m for m in exp["config"]["methods"] if m in set(runs["method"])]
        for method in order:
            errors = (100 * (1 - runs.loc[runs.method == method].sort_values("seed")["accuracy"])).tolist()
            paper = {
                label: published.get((method, profile, int(ratio), source)) if dataset == "cifar10" else None
                for label, source in PAPERS.items()
            }
            rows.append({
                "Dataset": DATASET_LABELS.get(dataset, dataset), "Setting": f"{profile} {ratio:g}",
                "Method": METHOD_NAMES.get(method, method), "Seeds": len(errors),
                "Top-1 error % (95% CI)": _interval(errors),
                **{label: "-" if value is None else f"{value:.2f}" for label, value in paper.items()},
                "Source": _source(exp, payload["kind"]),
            })  # fmt: skip
    return pd.DataFrame(rows)


def repository_results_path() -> Path:
    """:data:`RESULTS_PATH` in the clone this package was imported from (absent in an installed copy)."""
    return Path(__file__).resolve().parent.parent / RESULTS_PATH


def _jobs(payload: dict) -> list[dict]:
    return [j for e in payload["experiments"] for j in e.get("jobs", [])]


def sources_text(path: str | Path) -> str:
    """One paragraph saying where the numbers of a reproduction file came from, or :data:`NO_RESULTS_SENTENCE`."""
    if not Path(path).exists():
        return NO_RESULTS_SENTENCE
    payload = load_reproduction(path)
    jobs = _jobs(payload)
    runners = sorted({str(j.get("runner", {}).get("name", "unknown")) for j in jobs})
    data = sorted({str(j.get("data_source")) for j in jobs})
    what = {
        "reproduction": "a reproduction on real CIFAR",
        "off-protocol": f"runs on real CIFAR, NOT THE PAPER'S PROTOCOL ({_departures(jobs)}): not a "
        "reproduction of the papers' numbers",
    }.get(payload["kind"], "a SIMULATION of the pipeline (synthetic stand-in or tiny budget): no number in it is "
          "a CIFAR result")  # fmt: skip
    return (f"{Path(path).name}: {what}; {len(jobs)} jobs merged at {payload['merged_at']}, data "
            f"{', '.join(data)}, runners {', '.join(runners)}. Published numbers: Cao et al. 2019 Table 2 and "
            "Menon et al. 2021 Table 2, typed in (helpers.cifar.PUBLISHED_ERRORS).")  # fmt: skip


def short_status(path: str | Path) -> str:
    """A few words for a summary: ``'not run yet'``, ``'a simulation only'``, real runs that depart
    from the paper's protocol (with how), or ``'N jobs on real CIFAR-LT, protocol paper'``."""
    if not Path(path).exists():
        return "not run yet"
    payload = load_reproduction(path)
    jobs = _jobs(payload)
    if payload["kind"] == "off-protocol":
        return f"{len(jobs)} jobs on real CIFAR-LT, not the paper's protocol ({_departures(jobs)}): not a reproduction"
    if payload["kind"] != "reproduction":
        return "a simulation only (no CIFAR result)"
    protocols = "/".join(sorted({str(j.get("protocol")) for j in jobs}))
    return f"{len(jobs)} jobs on real CIFAR-LT, protocol {protocols}, merged {payload['merged_at'][:10]}"
