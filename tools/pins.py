"""The pinned environments of CI's reader-side stages: the declared floors, and what an install moved.

    python tools/pins.py floors              # pyproject's lower bounds as exact pins: torch==2.5.1 ...
    python tools/pins.py moved PINS BEFORE AFTER   # exit 1 if an install changed a pinned package

``floors`` reads ``[project] dependencies`` and the ``notebooks`` extra of ``pyproject.toml`` and
prints each lower bound as ``name==version``, the environment CI's ``min-versions`` stage tests
(as scikit-learn's and xarray's CI test their minimum dependencies). Every such requirement must be
one ``>=X.Y.Z`` bound: a floor written as ``>=2.4`` would let pip pick 2.4.0 while the stage tests
whatever ``==2.4`` resolves to, and an upper bound would be a version nobody tests.

``moved`` compares two ``pip freeze`` outputs, taken before and after an install (the notebooks'
setup cell on the Colab pins, ``pip install ".[notebooks]"`` on the floors), and fails naming each
package of ``PINS`` (a requirements file of ``name==version`` lines, such as ``.ci/colab-pins.txt``)
whose version changed or that disappeared. Other changes (what the install added) are listed too.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
_FLOOR = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*>=\s*(\d+\.\d+\.\d+)$")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def floors(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """``["torch==2.5.1", ...]``: the package's and its notebooks extra's lower bounds, as exact pins."""
    project = tomllib.loads(pyproject.read_text())["project"]
    pins = []
    for req in list(project["dependencies"]) + list(project["optional-dependencies"]["notebooks"]):
        match = _FLOOR.match(req.split(";", 1)[0].strip())
        if match is None:
            raise ValueError(f"pyproject.toml: {req!r} must be one lower bound NAME>=X.Y.Z (the version CI tests)")
        pins.append(f"{match.group(1)}=={match.group(2)}")
    return pins


def read_pins(text: str) -> dict[str, str]:
    """``{canonical name: version}`` from ``name==version`` lines (``pip freeze`` output or a pins file)."""
    pins = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if "==" in line:
            name, version = (part.strip() for part in line.split("==", 1))
            pins[_canonical(name)] = version
        elif " @ " in line:  # a direct URL (the book's own package from git): its origin is its version
            name, url = (part.strip() for part in line.split(" @ ", 1))
            pins[_canonical(name)] = url
    return pins


def moved(pins: dict[str, str], before: dict[str, str], after: dict[str, str]) -> tuple[list[str], list[str]]:
    """(changes to pinned packages, other changes) between two freezes, as readable lines."""
    bad, other = [], []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        line = f"{name}: {old or '(absent)'} -> {new or '(removed)'}"
        (bad if name in pins and old is not None else other).append(line)
    bad += [
        f"{name}: pinned {version}, but {before[name]} was installed before the install ran"
        for name, version in sorted(pins.items())
        if name in before and before[name] != version
    ]
    return bad, other


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("floors", help="print pyproject's lower bounds as exact pins")
    check = sub.add_parser("moved", help="fail if an install changed a pinned package")
    check.add_argument("pins", type=Path, help="name==version lines: the versions that must not move")
    check.add_argument("before", type=Path, help="pip freeze before the install")
    check.add_argument("after", type=Path, help="pip freeze after the install")
    args = parser.parse_args(argv)
    if args.command == "floors":
        print("\n".join(floors()))
        return 0
    pins = read_pins(args.pins.read_text())
    bad, other = moved(pins, read_pins(args.before.read_text()), read_pins(args.after.read_text()))
    for line in other:
        print(f"  added or changed (not pinned): {line}")
    for line in bad:
        print(f"  MOVED A PINNED PACKAGE: {line}")
    print(f"{len(pins)} pinned packages: {'none moved' if not bad else f'{len(bad)} moved'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
