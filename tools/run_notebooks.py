"""Execute the book's notebooks in a given Python environment, as a reader's kernel would run them.

Used by the Colab-like and Binder-like stages of ``.ci/run``:

    python tools/run_notebooks.py --python /tmp/colab/bin/python --workdir /tmp/colab-work \\
        --replace "git+https://github.com/lossbook/pytorch-losses-book@main=file:///path/to/clone" \\
        notebooks/*.ipynb

* The kernel is ``--python -m ipykernel_launcher`` (that interpreter needs ``ipykernel``); this driver
  only needs ``nbclient``, so it runs from the development environment.
* ``--workdir DIR`` copies the notebooks into DIR (outside the repository) and runs them there;
  without it each notebook runs from its own folder (``notebooks/``), as Binder and JupyterLab do.
  The source notebooks are never modified; executed copies go to ``--out``.
* ``--replace OLD=NEW`` rewrites every cell's source before execution (the Colab stage swaps the
  setup cell's GitHub URL for the local clone).
* One cell is appended that reports the kernel's peak resident memory (``ru_maxrss``), so that each
  run says how much memory the chapter needed; ``--max-rss-gib`` turns that into a check.
* ``--jobs N`` runs N notebooks at a time (longest chapters first).

Exit status 1 if a notebook raises, times out, or exceeds ``--max-rss-gib``. A summary table
(seconds, peak RSS) is printed and written to ``OUT/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

RSS_MARKER = "LOSSBOOK_PEAK_RSS"
RSS_CELL = f"""\
import json as _json, resource as _resource
print("{RSS_MARKER}", _json.dumps({{
    "self_kib": _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss,
    "children_kib": _resource.getrusage(_resource.RUSAGE_CHILDREN).ru_maxrss,
}}))
"""
# Chapters by expected run time, longest first, so that two workers finish together.
LONGEST_FIRST = ["05_", "04_", "07_", "06_", "01_", "00_", "02_", "03_"]


def _order(path: Path) -> int:
    return next((i for i, prefix in enumerate(LONGEST_FIRST) if path.name.startswith(prefix)), len(LONGEST_FIRST))


def _kernel_dir(python: str, root: Path) -> str:
    """Write a kernelspec that starts ``python -m ipykernel_launcher``; return its name."""
    name = "lossbook-under-test"
    folder = root / "kernels" / name
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"lossbook ({python})",
        "language": "python",
    }
    (folder / "kernel.json").write_text(json.dumps(spec))
    return name


def _error_summary(nb) -> str:
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return f"cell {i}: {out.get('ename')}: {out.get('evalue')}"[:500]
    return ""


def execute_one(path: str, python: str, workdir: str | None, replace: list[tuple[str, str]], out: str,
                timeout: int) -> dict:
    """Execute one notebook; return its record (name, ok, seconds, peak RSS, error)."""
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    source = Path(path).resolve()
    nb = nbformat.read(source, as_version=4)
    for cell in nb.cells:
        for old, new in replace:
            cell.source = cell.source.replace(old, new)
    nb.cells.append(nbformat.v4.new_code_cell(RSS_CELL))
    if workdir:
        cwd = Path(workdir)
        cwd.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, cwd / source.name)  # the copy a reader would open there
    else:
        cwd = source.parent
    record: dict = {"notebook": source.name, "ok": False, "seconds": None, "peak_rss_gib": None, "error": ""}
    with tempfile.TemporaryDirectory(prefix="lossbook-kernel-") as tmp:
        name = _kernel_dir(python, Path(tmp))
        specs = KernelSpecManager(kernel_dirs=[str(Path(tmp, "kernels"))])
        km = KernelManager(kernel_name=name, kernel_spec_manager=specs)
        client = NotebookClient(nb, km=km, timeout=timeout, resources={"metadata": {"path": str(cwd)}},
                                record_timing=False)
        start = time.monotonic()
        try:
            client.execute()
            record["ok"] = True
        except (CellExecutionError, CellTimeoutError, DeadKernelError, RuntimeError) as err:
            record["error"] = _error_summary(nb) or f"{type(err).__name__}: {str(err)[:400]}"
        finally:  # nbclient leaves a kernel it did not start (km given) running: stop it
            if km.has_kernel:
                km.shutdown_kernel(now=True)
        record["seconds"] = round(time.monotonic() - start, 1)
    for out_ in nb.cells[-1].get("outputs", []):
        text = out_.get("text", "")
        if RSS_MARKER in text:
            rss = json.loads(text.split(RSS_MARKER, 1)[1].strip())
            record["peak_rss_gib"] = round(rss["self_kib"] / 2**20, 2)
            record["children_peak_rss_gib"] = round(rss["children_kib"] / 2**20, 2)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out_dir / source.name)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--python", required=True, help="the kernel's interpreter (needs ipykernel)")
    parser.add_argument("--workdir", help="copy the notebooks here and run them from here")
    parser.add_argument("--replace", action="append", default=[], metavar="OLD=NEW",
                        help="replace OLD by NEW in every cell before executing (repeatable)")
    parser.add_argument("--out", default="_build/executed", help="where the executed copies and summary.json go")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks executed at a time")
    parser.add_argument("--timeout", type=int, default=1800, help="per-cell timeout, seconds")
    parser.add_argument("--max-rss-gib", type=float, help="fail a notebook whose kernel peaks above this")
    args = parser.parse_args(argv)

    replace = []
    for item in args.replace:
        old, sep, new = item.partition("=")
        if not sep or not old:
            parser.error(f"--replace wants OLD=NEW, got {item!r}")
        replace.append((old, new))
    python = shutil.which(args.python) or args.python
    notebooks = sorted(args.notebooks, key=_order)
    if args.jobs > 1 and "OMP_NUM_THREADS" not in os.environ:
        # Each kernel's torch would start one thread per core: `jobs` kernels would oversubscribe the
        # cores and spin-wait (twice the wall time of the test suite on 2 cores). Share them out.
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.jobs))
        print(f"{args.jobs} kernels at a time, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} each", flush=True)
    start = time.monotonic()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(execute_one, str(nb), python, args.workdir, replace, args.out, args.timeout)
                   for nb in notebooks]
        records = []
        for future in futures:
            record = future.result()
            records.append(record)
            print(f"{'ok' if record['ok'] else 'FAIL':4s} {record['notebook']}: {record['seconds']}s, "
                  f"peak RSS {record['peak_rss_gib']} GiB {record['error']}", flush=True)
    failures = [r for r in records if not r["ok"]]
    if args.max_rss_gib is not None:
        for r in records:
            if r["ok"] and (r["peak_rss_gib"] is None or r["peak_rss_gib"] > args.max_rss_gib):
                r["error"] = f"peak RSS {r['peak_rss_gib']} GiB above the {args.max_rss_gib} GiB budget"
                failures.append(r)
    summary = {"python": python, "workdir": args.workdir, "wall_seconds": round(time.monotonic() - start, 1),
               "notebooks": sorted(records, key=lambda r: r["notebook"])}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"{'notebook':40s} {'seconds':>8s} {'peak RSS GiB':>13s}")
    for r in summary["notebooks"]:
        print(f"{r['notebook']:40s} {r['seconds']!s:>8s} {r['peak_rss_gib']!s:>13s}")
    print(f"{len(records)} notebooks in {summary['wall_seconds']}s, {len(failures)} failed")
    for r in failures:
        print(f"  FAILED {r['notebook']}: {r['error']}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
