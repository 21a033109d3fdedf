"""A results file that never loses a finished run: atomic writes, resume, and refusal to mix experiments.

``python -m helpers.experiments --out r.json`` records every finished run in ``r.json`` as soon as it
completes. :class:`ResultsStore` does the bookkeeping:

* **atomic**: each update writes the whole file to ``r.json.tmp`` in the same folder, flushes it to
  disk and renames it over ``r.json`` with :func:`os.replace` (atomic on POSIX and Windows), so a
  kill at any moment leaves either the previous complete file or the new one, never half of one;
* **resume**: opened on an existing file written with the same arguments, it reports the runs already
  there (:meth:`ResultsStore.done`) so that a rerun trains only the missing ones;
* **no silent overwrite**: an existing file written with *different* arguments raises
  :class:`ResultsConflictError` (the CLI turns it into a usage error) unless ``force=True``.

The file is JSON: ``config`` (the arguments that define the experiment), ``runs`` (one metrics row per
run), ``curves`` (per-epoch histories), ``train_counts``, ``train_config``, ``drw_start_epoch``,
``provenance`` (of the first session, with ``data_source``: ``"real"``, ``"synthetic"`` for the
labelled CIFAR stand-in, ``"user tensors"``, ``"mixed"`` when runs of different sources share the file,
or ``"unknown"`` for runs of a file written before the source was recorded) with ``resumed`` (one
provenance per later session) and
``complete`` (all requested runs are in). :func:`read_results_json` reads it back as a table.

Files of one experiment written in pieces (e.g. one file per method and seed, as the reproduction
workflow's jobs write them) are united by :func:`merge_results`; :func:`add_sections` records extra
top-level sections (e.g. a job's provenance) in a results file, atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from helpers.longtail_types import RunRecord

__all__ = [
    "ResultsConflictError", "ResultsStore", "add_sections", "merge_results", "read_results_json", "run_key",
    "write_json_atomic",
]  # fmt: skip

RunKey = tuple[str, int, int]


class ResultsConflictError(ValueError):
    """The results file exists and was written by an experiment with different arguments."""


def run_key(row: dict) -> RunKey:
    """``(method, seed, data_seed)`` of a run row: what identifies a run inside one experiment."""
    return (str(row["method"]), int(row["seed"]), int(row["data_seed"]))


def _jsonable(value):
    """``value`` with numpy scalars turned into Python numbers and NaN kept as NaN (JSON's ``NaN``)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value


def write_json_atomic(path: str | Path, payload: dict) -> None:
    """Write ``payload`` as JSON to ``path`` atomically: a temporary file in the same folder, fsync, ``os.replace``."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _normalized(config: dict) -> dict:
    return json.loads(json.dumps(_jsonable(config)))


class ResultsStore:
    """The JSON results file of one experiment, updated atomically after every finished run.

    Args:
        path: the results file.
        config: the arguments that define the experiment (dataset, methods, seeds, ...); a file with a
            different ``config`` is never appended to.
        force: start afresh even if ``path`` holds a different experiment (its runs are discarded
            when the first new run is written).
        provenance: date, versions, device and commit of this session (see
            :func:`helpers.experiments.provenance`).

    Raises:
        ResultsConflictError: ``path`` exists, was written with another ``config`` and ``force`` is False.
        ValueError: ``path`` exists but is not a results file of this module.
    """

    def __init__(self, path: str | Path, config: dict, force: bool = False, provenance: dict | None = None) -> None:
        self.path = Path(path)
        self.config = _normalized(config)
        fresh = {
            "config": self.config, "runs": [], "curves": [], "train_counts": None, "train_config": None,
            "drw_start_epoch": None, "provenance": provenance or {}, "resumed": [], "complete": False,
        }  # fmt: skip
        self.payload = fresh
        self.resumed = False
        if not self.path.exists() or force:
            return
        try:
            old = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(
                f"{self.path} exists but is not a readable results file ({err}); use --force to replace it"
            ) from None
        if not isinstance(old, dict) or "config" not in old or "runs" not in old:
            raise ValueError(
                f"{self.path} exists but is not a results file of helpers.experiments; use --force to replace it"
            )
        if old["config"] != self.config:
            both = set(old["config"]) | set(self.config)
            keys = sorted(k for k in both if old["config"].get(k) != self.config.get(k))
            diff = ", ".join(f"{k}: {old['config'].get(k)!r} in the file, {self.config.get(k)!r} now" for k in keys)
            raise ResultsConflictError(
                f"{self.path} holds results of different arguments ({diff}); pass --force to overwrite it, "
                "or choose another --out"
            )
        self.payload = {**fresh, **old}
        if self.payload["runs"] and "data_source" not in self.payload["provenance"]:
            # runs written before data_source was recorded: their source is unknown, so a run added now
            # makes the file "mixed", never "real" for all of them
            self.payload["provenance"] = {**self.payload["provenance"], "data_source": "unknown"}
        self.resumed = True
        if provenance:
            self.payload["resumed"] = [*old.get("resumed", []), provenance]

    def done(self) -> set[RunKey]:
        """Keys ``(method, seed, data_seed)`` of the runs already in the file."""
        return {run_key(r) for r in self.payload["runs"]}

    def add(self, rows: Iterable[dict], records: Iterable[RunRecord] = ()) -> None:
        """Append finished runs (their table rows and records, for the curves) and rewrite the file atomically."""
        rows, records = list(rows), list(records)
        done = self.done()
        fresh = [r for r in rows if run_key(r) not in done]
        self.payload["runs"].extend(_jsonable(r) for r in fresh)
        keys = {run_key(r) for r in fresh}
        for rec in records:
            source = rec.extra.get("data_source")
            if source is not None and self.payload["provenance"].get("data_source") not in (None, source):
                self.payload["provenance"]["data_source"] = "mixed"  # never one label for real and stand-in runs
            elif source is not None:
                self.payload["provenance"]["data_source"] = source
            if (rec.method, rec.seed, rec.data_seed) in keys:
                curve = {"method": rec.method, "seed": rec.seed, "data_seed": rec.data_seed}
                self.payload["curves"].append(curve | {"history": _jsonable(rec.history)})
                if self.payload["train_counts"] is None:
                    self.payload["train_counts"] = list(rec.counts)
                    self.payload["train_config"] = _jsonable(rec.extra.get("config"))
                    self.payload["drw_start_epoch"] = rec.extra.get("drw_start_epoch")
        write_json_atomic(self.path, self.payload)

    def finish(self) -> None:
        """Mark the experiment complete and write the file (also when nothing was left to run)."""
        self.payload["complete"] = True
        write_json_atomic(self.path, self.payload)

    def table(self) -> pd.DataFrame:
        """Every run in the file as a ``pandas.DataFrame`` (one row per run)."""
        import pandas as pd

        return pd.DataFrame(self.payload["runs"])


#: Config keys in which the pieces of one experiment may differ (:func:`merge_results` unites them).
PIECE_KEYS = ("methods", "seeds")


def add_sections(path: str | Path, **sections) -> dict:
    """Set top-level ``sections`` of the results file ``path`` (e.g. ``job={...}``) and rewrite it atomically.

    The store keeps unknown sections when it resumes a file, so they survive a rerun. Returns the payload.

    Raises:
        ValueError: if ``path`` is not a results file, or a section would replace one of the store's own.
    """
    payload = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(payload, dict) or "config" not in payload or "runs" not in payload:
        raise ValueError(f"{path} is not a results file of helpers.experiments")
    own = {"config", "runs", "curves", "train_counts", "train_config", "drw_start_epoch", "provenance", "resumed",
           "complete"}  # fmt: skip
    clash = sorted(own & set(sections))
    if clash:
        raise ValueError(f"sections must not replace the store's own {clash}")
    payload.update(_jsonable(sections))
    write_json_atomic(path, payload)
    return payload


def merge_results(payloads: Iterable[dict]) -> dict:
    """One results payload from the pieces of one experiment: the same config except methods and seeds.

    The merged ``config`` lists the methods in first-seen order and the seeds sorted; ``runs`` and
    ``curves`` are united, a run present in several pieces (same ``(method, seed, data_seed)``) kept
    once, from the first piece; ``provenance`` is the first piece's, and ``parts`` records each
    piece's methods, seeds, provenance and resumptions; each piece's ``job`` section (and the
    ``jobs`` of an earlier merge) are collected in ``jobs``; ``complete`` holds when every piece is.

    Raises:
        ValueError: if no payload is given.
        ResultsConflictError: if two pieces differ in a config key other than methods and seeds.
    """
    pieces = [p for p in payloads]
    if not pieces:
        raise ValueError("payloads must hold at least one results payload")
    first = _normalized(pieces[0]["config"])
    fixed = {k: v for k, v in first.items() if k not in PIECE_KEYS}
    methods: list[str] = []
    seeds: set[int] = set()
    merged = {**pieces[0], "runs": [], "curves": [], "parts": [], "jobs": []}
    merged.pop("job", None)
    done: set[RunKey] = set()
    for piece in pieces:
        config = _normalized(piece["config"])
        other = {k: v for k, v in config.items() if k not in PIECE_KEYS}
        if other != fixed:
            keys = sorted(k for k in set(other) | set(fixed) if other.get(k) != fixed.get(k))
            raise ResultsConflictError(f"pieces of different experiments cannot be merged (they differ in {keys})")
        methods += [m for m in config["methods"] if m not in methods]
        seeds |= set(config["seeds"])
        fresh = [r for r in piece["runs"] if run_key(r) not in done]
        keys = {run_key(r) for r in fresh}
        merged["runs"] += fresh
        merged["curves"] += [c for c in piece.get("curves", []) if run_key(c) in keys]
        done |= keys
        merged["parts"] += piece.get("parts") or [
            {k: piece.get(k) for k in ("provenance", "resumed")} | {k: config[k] for k in PIECE_KEYS}
        ]
        merged["jobs"] += ([piece["job"]] if piece.get("job") else []) + list(piece.get("jobs", []))
        if merged.get("train_counts") is None:
            merged.update({k: piece.get(k) for k in ("train_counts", "train_config", "drw_start_epoch")})
    unique = {json.dumps(job, sort_keys=True): job for job in merged["jobs"]}  # a piece merged twice counts once
    merged["jobs"] = list(unique.values())
    merged["config"] = fixed | {"methods": methods, "seeds": sorted(seeds)}
    merged["complete"] = all(p.get("complete", False) for p in pieces)
    return merged


def read_results_json(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """The runs table and the metadata of a JSON file written by ``python -m helpers.experiments --out``.

    Returns ``(table, meta)``: a ``pandas.DataFrame`` with one row per run (as
    :func:`helpers.experiments.run_experiment` returns) and a dict with the file's ``config``
    (dataset, protocol, methods, seeds...), ``provenance`` (date, torch version, device, git commit),
    ``data_source`` (``"real"``, ``"synthetic"`` for the CIFAR stand-in, ``"user tensors"``, or
    ``"unknown"`` for a file written before it was recorded), ``train_counts`` and ``complete``
    (False while runs are missing, e.g. after an interruption), so
    that a notebook can show results produced elsewhere (e.g. on a GPU) labelled with where they came from.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file lacks the ``runs``, ``config`` or ``provenance`` sections.
    """
    import pandas as pd

    payload = json.loads(Path(path).read_text(encoding="utf-8"))
    missing = [k for k in ("runs", "config", "provenance") if k not in payload]
    if missing:
        raise ValueError(f"{path} is not a results file of helpers.experiments (missing {missing})")
    meta = {k: payload[k] for k in ("config", "provenance")}
    meta["data_source"] = payload["provenance"].get("data_source", "unknown")
    meta["train_counts"] = payload.get("train_counts")
    meta["complete"] = payload.get("complete", True)
    meta["resumed"] = payload.get("resumed", [])
    table = pd.DataFrame(payload["runs"])
    if "data_seed" not in table.columns and len(table):  # files written before data seeds were recorded
        table["data_seed"] = payload["config"].get("data_seed") or 0
    return table, meta
