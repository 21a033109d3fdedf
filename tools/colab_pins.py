"""Regenerate ``.ci/colab-pins.txt``, the versions Colab's runtime ships, from its published ``pip freeze``.

Colab's maintainers publish the runtime's package list in https://github.com/googlecolab/backend-info
(``pip-freeze.txt`` for the CPU runtime). CI's colab-like stage installs these pins, then runs the
notebooks' setup cell and fails if that install moved any of them (``tools/freeze_diff.py``).

    curl -LO https://raw.githubusercontent.com/googlecolab/backend-info/main/pip-freeze.txt
    .venv/bin/python tools/colab_pins.py pip-freeze.txt --date 2026-08-19 --commit a724079 \
        --site /tmp/lossbook-ci/colab-venv/lib/python3.11/site-packages > .ci/colab-pins.txt

Kept: the packages a chapter can touch, i.e. the dependency closure of the book's package with its
``notebooks`` extra, of the kernel (``ipykernel``) and of the other modules Colab preinstalls that the
packaging test counts on (scikit-learn, pillow, ipython). The closure is read from the installed
metadata of the environment that runs this tool (the development venv has all of them, at the newest
versions) and of the ``--site`` folders (CI's colab venv holds Colab's previous versions and what the
setup cell added: ipywidgets 7 needs packages ipywidgets 8 does not), restricted to what Colab's
freeze lists: a package Colab does not have (optuna) is left to the setup cell.

A freeze line ``torch @ https://download.pytorch.org/whl/cpu/torch-2.11.0%2Bcpu-cp313-...whl`` becomes
``torch==2.11.0``: the same release from PyPI (a CUDA build there; the Python API is the same).
``--substitute NAME==VERSION:REASON`` replaces a pin that cannot be installed on the Python at hand
(for example a release without a wheel for it) and records the reason in the file.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
SOURCE = "https://github.com/googlecolab/backend-info/blob/main/pip-freeze.txt"
# Beyond the package's own requirements: the kernel Colab runs notebooks with, and the preinstalled
# modules tests/test_packaging.py lets a chapter import without declaring them.
EXTRA_ROOTS = ["ipykernel", "ipython", "scikit-learn", "pillow"]


def parse_freeze(text: str) -> dict[str, tuple[str, str]]:
    """``{canonical name: (name as written, version)}`` from ``pip freeze`` output; URL lines read the wheel name."""
    pins = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        if "==" in line:
            name, version = (part.strip() for part in line.split("==", 1))
        elif " @ " in line:
            name, url = (part.strip() for part in line.split(" @ ", 1))
            filename = unquote(url).rsplit("/", 1)[-1]
            if not filename.endswith(".whl"):  # a git checkout or an sdist: no release to pin
                continue
            version = filename.split("-")[1].split("+")[0]  # torch-2.11.0+cpu-cp313-... -> 2.11.0
        else:
            continue
        pins[canonicalize_name(name)] = (name, version)
    return pins


def roots(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The requirements a Colab reader's kernel depends on: the package, its notebooks extra, the kernel."""
    project = tomllib.loads(pyproject.read_text())["project"]
    reqs = list(project["dependencies"]) + list(project["optional-dependencies"]["notebooks"])
    return [Requirement(r).name for r in reqs] + EXTRA_ROOTS


def closure(names: list[str], sites: list[str] = ()) -> dict[str, str]:
    """``{canonical name: the first root that brings it}``: the runtime dependency closure, from installed metadata.

    Metadata is read from this interpreter's ``sys.path`` and from ``sites`` (other environments'
    site-packages); a package installed in several of them contributes the union of its versions'
    requirements. The CUDA wheels' own libraries (``nvidia-*``, ``cuda-*``, ``triton``) are left out:
    they belong to a build of torch, not to its release, and Colab's CPU runtime has a different build.
    """
    installed: dict[str, list[metadata.Distribution]] = {}
    for dist in metadata.distributions(path=list(sites) + sys.path):
        installed.setdefault(canonicalize_name(dist.metadata["Name"]), []).append(dist)
    seen: dict[str, str] = {}
    for root in map(canonicalize_name, names):
        stack = [root]
        while stack:
            name = stack.pop()
            if name in seen or name.startswith(("nvidia-", "cuda-")) or name == "triton":
                continue
            seen[name] = root
            dists = installed.get(name, [])
            if not dists:
                print(f"note: {name} is not installed here; its own dependencies are not followed", file=sys.stderr)
            for text in {r for d in dists for r in d.requires or []}:
                req = Requirement(text)
                if req.marker is None or req.marker.evaluate({"extra": ""}):
                    stack.append(canonicalize_name(req.name))
    return seen


def render(
    freeze: dict[str, tuple[str, str]],
    keep: dict[str, str],
    date: str,
    commit: str,
    substitutes: dict[str, tuple[str, str]],
) -> str:
    lines = [
        "# Colab's runtime: the versions its CPU runtime preinstalls, for the packages a chapter can touch.",
        f"# Source: {SOURCE} (googlecolab/backend-info, commit {commit}, {date}).",
        "# Colab runs Python 3.13 there; CI installs these pins on the Python it has (3.11 on the project's machines).",
        "# torch, torchvision: Colab installs the +cpu wheels from download.pytorch.org; CI takes the same",
        "# releases from PyPI (CUDA builds there, the same Python API).",
        "# Regenerate with tools/colab_pins.py (README.md, 'Continuous integration'); do not edit by hand.",
    ]
    for name, (version, reason) in sorted(substitutes.items()):
        lines.append(f"# Substituted: {name}=={freeze[name][1]} -> {version}: {reason}")
    for name in sorted(set(keep) & set(freeze)):
        written, version = freeze[name]
        if name in substitutes:
            version = substitutes[name][0]
        via = f"  # via {keep[name]}" if keep[name] != name else ""
        lines.append(f"{written}=={version}{via}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("freeze", type=Path, help="Colab's pip-freeze.txt, downloaded")
    parser.add_argument("--date", required=True, help="the date of the backend-info commit (YYYY-MM-DD)")
    parser.add_argument("--commit", required=True, help="the backend-info commit the file comes from")
    parser.add_argument(
        "--site",
        action="append",
        default=[],
        metavar="DIR",
        help="also read dependencies from this site-packages (repeatable), e.g. CI's colab venv's",
    )
    parser.add_argument(
        "--substitute",
        action="append",
        default=[],
        metavar="NAME==VERSION:REASON",
        help="install VERSION instead of Colab's pin, for REASON (repeatable)",
    )
    args = parser.parse_args(argv)
    freeze = parse_freeze(args.freeze.read_text())
    substitutes = {}
    for item in args.substitute:
        match = re.fullmatch(r"([^=\s]+)==([^:\s]+):(.+)", item)
        if match is None:
            parser.error(f"--substitute wants NAME==VERSION:REASON, got {item!r}")
        name = canonicalize_name(match.group(1))
        if name not in freeze:
            parser.error(f"--substitute {name}: Colab's freeze does not list it")
        substitutes[name] = (match.group(2), match.group(3).strip())
    missing = [name for name in ("torch", "torchvision", "numpy") if name not in freeze]
    if missing:
        parser.error(f"{args.freeze} lists no {missing}: is it Colab's pip-freeze.txt?")
    sys.stdout.write(render(freeze, closure(roots(), args.site), args.date, args.commit, substitutes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
