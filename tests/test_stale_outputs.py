"""`make book` re-executes a chapter when anything its outputs depend on changed, not only its cells.

tools/nb_fingerprint.py (a Sphinx extension loaded by _config.yml) hashes, per notebook, the helpers
modules it imports (transitively), requirements.txt, pyproject.toml, the installed library versions, the
mode variables and, for the CIFAR-10 chapters, the data source. The unit tests below check what goes
into the fingerprint; the last test builds a one-page book twice and checks that a changed module that
the notebook imports re-executes it, and that an unrelated change does not.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import nb_fingerprint as nbf  # noqa: E402


def _notebook(path: Path, *cells: str) -> Path:
    nb = {
        "cells": [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": c}
                  for c in cells],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb))
    return path


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A repository-shaped folder: a package `tinyhelpers`, requirements and two notebooks."""
    pkg = tmp_path / "tinyhelpers"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "answer.py").write_text("from tinyhelpers.base import BASE\nVALUE = BASE + 1\n")
    (pkg / "base.py").write_text("BASE = 0\n")
    (pkg / "other.py").write_text("X = 1\n")
    (pkg / "cifar.py").write_text("def load():\n    pass\n")
    (tmp_path / "requirements.txt").write_text("torch>=2.4\n")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'tiny'\n")
    _notebook(tmp_path / "nb.ipynb", "%pip install nothing\n", "from tinyhelpers.answer import VALUE\nprint(VALUE)")
    _notebook(tmp_path / "cifar.ipynb", "from tinyhelpers import cifar\n")
    monkeypatch.setenv("LOSSBOOK_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("LOSSBOOK_ALLOW_SYNTHETIC", "1")
    return tmp_path


def _fp(tiny: Path, name: str = "nb.ipynb") -> tuple[str, dict]:
    return nbf.fingerprint(tiny / name, tiny, "tinyhelpers")


def test_dependencies_of_the_real_chapters_are_transitive():
    deps = {p.name for p in nbf.dependencies(ROOT / "notebooks" / "05_imbalanced_cifar10.ipynb")}
    assert {"__init__.py", "cifar.py", "datasets.py", "runtime.py", "glue.py"} <= deps
    quick = {p.name for p in nbf.dependencies(ROOT / "notebooks" / "00_quickstart.ipynb")}
    assert {"datasets.py", "runtime.py"} <= quick and "cifar.py" not in quick


def test_imports_are_read_from_cells_with_magics(tiny):
    deps = {p.name for p in nbf.dependencies(tiny / "nb.ipynb", tiny, "tinyhelpers")}
    assert deps == {"__init__.py", "answer.py", "base.py"}  # base.py through answer.py
    assert {p.name for p in nbf.dependencies(tiny / "cifar.ipynb", tiny, "tinyhelpers")} == {"__init__.py", "cifar.py"}


def test_a_used_module_changes_the_fingerprint_an_unused_one_does_not(tiny):
    before, _ = _fp(tiny)
    (tiny / "tinyhelpers" / "other.py").write_text("X = 2\n")
    assert _fp(tiny)[0] == before
    (tiny / "tinyhelpers" / "base.py").write_text("BASE = 41\n")  # imported through answer.py
    after, parts = _fp(tiny)
    assert after != before and parts["helpers"]["tinyhelpers/base.py"]


@pytest.mark.parametrize("name", ["requirements.txt", "pyproject.toml"])
def test_environment_files_change_every_fingerprint(tiny, name):
    before = _fp(tiny)[0], _fp(tiny, "cifar.ipynb")[0]
    with open(tiny / name, "a") as f:
        f.write("\n# changed\n")
    assert _fp(tiny)[0] != before[0] and _fp(tiny, "cifar.ipynb")[0] != before[1]


def test_library_upgrade_changes_the_fingerprint(tiny, monkeypatch):
    before = _fp(tiny)[0]
    real = nbf._version
    monkeypatch.setattr(nbf, "_version", lambda d: "99.0" if d == "torch" else real(d))
    assert _fp(tiny)[0] != before


def test_mode_variables_change_the_fingerprint(tiny, monkeypatch):
    monkeypatch.setenv("LOSSBOOK_QUICK", "1")
    quick = _fp(tiny)
    monkeypatch.setenv("LOSSBOOK_QUICK", "0")
    full = _fp(tiny)
    assert quick[0] != full[0] and quick[1]["quick"] is True and full[1]["quick"] is False


def test_cifar_data_source_changes_only_the_cifar_chapters(tiny, monkeypatch):
    synthetic = _fp(tiny, "cifar.ipynb")
    other = _fp(tiny)[0]
    assert synthetic[1]["cifar10"] == "synthetic"
    folder = tiny / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in nbf.CIFAR_FILES:
        (folder / name).write_bytes(b"x")
    real = _fp(tiny, "cifar.ipynb")
    assert real[1]["cifar10"] == "real" and real[0] != synthetic[0]
    assert _fp(tiny)[0] == other  # an MNIST-only chapter keeps its outputs
    shutil.rmtree(folder)
    monkeypatch.delenv("LOSSBOOK_ALLOW_SYNTHETIC")
    assert _fp(tiny, "cifar.ipynb")[1]["cifar10"] == "download"


def test_the_book_build_uses_the_extension():
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["sphinx"]["local_extensions"]["nb_fingerprint"] == "tools"
    assert config["execute"]["execute_notebooks"] == "cache"
    makefile = (ROOT / "Makefile").read_text()
    assert "LOSSBOOK_QUICK=0 $(BIN)/jupyter-book build ." in makefile


def _build(book: Path) -> tuple[str, str]:
    jb = Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run([str(jb), "build", str(book), "--builder", "html"], capture_output=True, text=True,
                            timeout=600, env={**os.environ, "LOSSBOOK_PROGRESS": "0"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    html = (book / "_build" / "html" / "nb.html").read_text()
    return html, result.stdout


@pytest.mark.skipif(not (Path(sys.executable).parent / "jupyter-book").exists(), reason="needs jupyter-book")
def test_a_real_build_re_executes_when_an_imported_module_changes(tiny):
    """Two builds of a one-page book: the notebook is unchanged, the module it imports is not."""
    (tiny / "_toc.yml").write_text("format: jb-book\nroot: nb\n")
    (tiny / "_config.yml").write_text(
        "title: tiny\nonly_build_toc_files: true\nexecute:\n  execute_notebooks: cache\n"
        f"sphinx:\n  local_extensions:\n    nb_fingerprint: {ROOT / 'tools'}\n"
        f"  config:\n    lossbook_fingerprint_root: {tiny}\n    lossbook_fingerprint_package: tinyhelpers\n"
    )
    _notebook(tiny / "nb.ipynb", "import sys\nsys.path.insert(0, '.')\nfrom tinyhelpers.answer import VALUE\n"
              "print('VALUE =', VALUE)")
    html, _ = _build(tiny)
    assert "VALUE = 1" in html
    (tiny / "tinyhelpers" / "base.py").write_text("BASE = 41\n")  # the notebook itself is untouched
    html, log = _build(tiny)
    assert "VALUE = 42" in html, "stale output: the changed helper module did not re-execute the notebook"
    assert "[nb_fingerprint] nb: re-executing (helpers.tinyhelpers/base.py)" in log
    (tiny / "tinyhelpers" / "other.py").write_text("X = 3\n")  # not imported: nothing to re-execute
    html, log = _build(tiny)
    assert "VALUE = 42" in html and "re-executing" not in log
