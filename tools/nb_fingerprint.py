"""Re-execute a chapter when anything its outputs depend on changes, not only its code cells.

myst-nb's execution cache (jupyter-cache) keys a notebook by its code cells and kernelspec, and
Sphinx re-reads a page only when its source file changed. Both miss what a chapter's outputs also
depend on: the ``helpers`` modules it imports (directly or through other helpers modules), the
environment (``requirements.txt``, ``pyproject.toml``, the installed versions of the numerical
libraries, the Python version) and the data and mode it ran with (real or synthetic CIFAR-10, quick
or full mode, a forced device). After any of those changed, ``make book`` used to publish the old
outputs.

This Sphinx extension (loaded by ``_config.yml``: ``sphinx.local_extensions``) computes a
*fingerprint* of all of that for each notebook and

* writes it into the notebook's ``metadata.kernelspec`` as the page is read, so the cache key
  changes with it and outputs computed under another fingerprint are never reused (switching back,
  e.g. to the synthetic data, finds the earlier outputs again);
* marks a page outdated (``env-get-outdated``) when its fingerprint differs from the one it was
  last read with, so Sphinx re-reads, and therefore re-executes, it.

A notebook depends on the helpers modules named by its ``import helpers...``/``from helpers...``
lines and, transitively, on everything those modules import from the package (function-level
imports included: conservative), plus the package's non-Python files. The CIFAR-10 data source is
part of the fingerprint of the notebooks that can load CIFAR-10 (they depend on
``helpers/cifar.py`` or call ``load_cifar10``).

Run as a script to print each notebook's fingerprint and what went into it::

    python tools/nb_fingerprint.py notebooks/*.ipynb
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import platform
import re
import sys
from functools import cache
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "helpers"
ENV_FILES = ("requirements.txt", "pyproject.toml")
# Installed distributions whose version can change a chapter's numbers or figures.
DISTRIBUTIONS = ("torch", "torchvision", "numpy", "pandas", "matplotlib", "optuna", "scipy")
# Environment variables that change what a chapter computes.
ENV_VARS = ("LOSSBOOK_QUICK", "LOSSBOOK_DEVICE", "LOSSBOOK_ALLOW_SYNTHETIC", "MEM_LIMIT")
CIFAR_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")
METADATA_KEY = "lossbook_fingerprint"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _notebook_code(path: Path) -> str:
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    return "\n".join(
        "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        for c in nb.get("cells", []) if c.get("cell_type") == "code"
    )


def imported_modules(code: str, package: str, package_dir: Path) -> set[str]:
    """Modules of ``package`` (as file stems) named by import lines in ``code``.

    A regex, not ``ast``: notebook cells may hold IPython magics. ``from helpers import a, b``
    counts ``a`` and ``b`` when they are modules.
    """
    found: set[str] = set()
    pkg = re.escape(package)
    for match in re.finditer(rf"^\s*(?:from\s+{pkg}(\.\w+)?\s+import\s+([^\n#]+)|import\s+{pkg}(\.\w+)?)", code, re.M):
        sub = match.group(1) or match.group(3)
        if sub:
            found.add(sub.lstrip("."))
        elif match.group(2):
            names = re.findall(r"\b(\w+)\b(?:\s+as\s+\w+)?", match.group(2).replace("(", " ").replace(")", " "))
            found.update(n for n in names if (package_dir / f"{n}.py").is_file())
        found.add("__init__")
    return {m for m in found if (package_dir / f"{m}.py").is_file()}


def _module_imports(path: Path, package: str, package_dir: Path) -> set[str]:
    """Modules of the package that ``path`` imports anywhere (top level or inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x / from .x import y
                base = (node.module or "").split(".")[0]
                found.update([base] if base else [a.name for a in node.names])
            elif node.module and (node.module == package or node.module.startswith(package + ".")):
                rest = node.module[len(package) + 1:].split(".")[0]
                found.update([rest] if rest else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(package + "."):
                    found.add(alias.name.split(".")[1])
    return {m for m in found if (package_dir / f"{m}.py").is_file()}


def dependencies(notebook: Path, root: Path = REPO, package: str = PACKAGE) -> list[Path]:
    """The package files ``notebook``'s outputs depend on: imported modules, transitively, and data files."""
    package_dir = root / package
    todo = imported_modules(_notebook_code(notebook), package, package_dir)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo |= _module_imports(package_dir / f"{name}.py", package, package_dir) - seen
    files = [package_dir / f"{m}.py" for m in seen]
    if seen:  # the package's data files (JSON tables and the like), whichever module reads them
        files += [p for p in package_dir.rglob("*") if p.is_file() and p.suffix not in {".py", ".pyc"}
                  and "__pycache__" not in p.parts]
    return sorted(files)


def cifar_source() -> str:
    """Where CIFAR-10 would come from: ``real`` (on disk), ``synthetic`` (absent, stand-in allowed) or
    ``download`` (absent: the chapter downloads the real data, or stops)."""
    from helpers.datasets import data_root
    from helpers.runtime import synthetic_allowed

    folder = data_root() / "cifar-10-batches-py"
    if all((folder / name).is_file() for name in CIFAR_FILES):
        return "real"
    return "synthetic" if synthetic_allowed() else "download"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@cache
def _file_hash(path: Path, mtime_ns: int, size: int) -> str:  # keyed by mtime/size: re-hashed when edited
    return _sha(path.read_bytes())


def file_hash(path: Path) -> str | None:
    if not path.is_file():
        return None
    st = path.stat()
    return _file_hash(path, st.st_mtime_ns, st.st_size)


def environment_parts(root: Path = REPO) -> dict:
    """What every notebook depends on: environment files, library versions, Python, mode variables."""
    from helpers.runtime import quick_mode

    return {
        "files": {name: file_hash(root / name) for name in ENV_FILES},
        "versions": {d: _version(d) for d in DISTRIBUTIONS},
        "python": platform.python_version(),
        "env": {v: os.environ.get(v, "").strip() for v in ENV_VARS},
        "quick": quick_mode(),
    }


def fingerprint(notebook: Path, root: Path = REPO, package: str = PACKAGE, env_parts: dict | None = None
                ) -> tuple[str, dict]:
    """``(fingerprint, parts)`` for ``notebook``: a short hash and the dict it hashes."""
    deps = dependencies(notebook, root, package)
    parts = dict(env_parts if env_parts is not None else environment_parts(root))
    parts["helpers"] = {p.relative_to(root).as_posix(): file_hash(p) for p in deps}
    uses_cifar = (root / package / "cifar.py") in deps or "load_cifar10" in _notebook_code(notebook)
    parts["cifar10"] = cifar_source() if uses_cifar else None
    return _sha(json.dumps(parts, sort_keys=True).encode()), parts


def changed_parts(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted names of the leaves that differ between two ``parts`` dicts (for the build log)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_parts(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


# --- Sphinx extension -------------------------------------------------------------------------


def _settings(app) -> tuple[Path, str]:
    root = Path(app.config.lossbook_fingerprint_root or REPO).resolve()
    return root, app.config.lossbook_fingerprint_package


def _env_parts(app) -> dict:
    if not hasattr(app, "_lossbook_env_parts"):
        root, _ = _settings(app)
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        app._lossbook_env_parts = environment_parts(root)
    return app._lossbook_env_parts


def _doc_fingerprint(app, env, docname: str) -> tuple[str, dict] | None:
    path = Path(env.doc2path(docname))
    if path.suffix != ".ipynb":
        return None
    root, package = _settings(app)
    return fingerprint(path, root, package, _env_parts(app))


def on_source_read(app, docname: str, source: list[str]) -> None:
    """Stamp the fingerprint into the notebook's kernelspec, which jupyter-cache hashes."""
    result = _doc_fingerprint(app, app.env, docname)
    if result is None:
        return
    fp, parts = result
    nb = json.loads(source[0])
    kernelspec = nb.setdefault("metadata", {}).setdefault(
        "kernelspec", {"name": "python3", "display_name": "Python 3", "language": "python"})
    kernelspec[METADATA_KEY] = fp
    source[0] = json.dumps(nb, indent=1, ensure_ascii=False)
    if not hasattr(app.env, "lossbook_fingerprints"):
        app.env.lossbook_fingerprints = {}
    app.env.lossbook_fingerprints[docname] = (fp, parts)


def on_env_get_outdated(app, env, added, changed, removed) -> list[str]:
    """Pages whose fingerprint changed since they were last read (their source did not)."""
    from sphinx.util import logging

    logger = logging.getLogger(__name__)
    stored = getattr(env, "lossbook_fingerprints", {})
    outdated = []
    for docname in sorted(env.found_docs - set(added) - set(changed)):
        result = _doc_fingerprint(app, env, docname)
        if result is None:
            continue
        old = stored.get(docname)
        if old is None or old[0] != result[0]:
            why = ", ".join(changed_parts(old[1], result[1])) if old else "no fingerprint recorded"
            logger.info(f"[nb_fingerprint] {docname}: re-executing ({why})")
            outdated.append(docname)
    return outdated


def on_env_merge_info(app, env, docnames, other) -> None:  # parallel reads
    if not hasattr(env, "lossbook_fingerprints"):
        env.lossbook_fingerprints = {}
    env.lossbook_fingerprints.update({d: fp for d, fp in getattr(other, "lossbook_fingerprints", {}).items()
                                      if d in docnames})


def on_env_purge_doc(app, env, docname: str) -> None:
    getattr(env, "lossbook_fingerprints", {}).pop(docname, None)


def setup(app):
    app.add_config_value("lossbook_fingerprint_root", "", "env")
    app.add_config_value("lossbook_fingerprint_package", PACKAGE, "env")
    app.connect("source-read", on_source_read)
    app.connect("env-get-outdated", on_env_get_outdated)
    app.connect("env-merge-info", on_env_merge_info)
    app.connect("env-purge-doc", on_env_purge_doc)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Print each notebook's execution fingerprint and its parts.")
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    env_parts = environment_parts(REPO)
    for nb in args.notebooks:
        fp, parts = fingerprint(nb.resolve(), REPO, PACKAGE, env_parts)
        print(f"{fp}  {nb}")
        print("    " + json.dumps({k: v for k, v in parts.items() if k in ("helpers", "cifar10")}))
    print("environment: " + json.dumps(env_parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
