"""How readers install the book, checked statically (the CI stages colab-like and binder-like run it):
package extras by use, the Binder folder, the Colab setup cell's reach, licenses, the Python floor,
and the _config.yml keys Jupyter Book 1.x actually reads."""

import json
import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# What Colab has before the setup cell runs (the list, plus the kernel's own IPython).
COLAB_PREINSTALLED = {"torch", "torchvision", "numpy", "pandas", "matplotlib", "tqdm", "ipywidgets", "scipy",
                      "sklearn", "IPython", "google", "PIL"}
# Top-level modules of the distributions the package and its extras bring.
MODULE_OF = {"scikit-learn": "sklearn", "pillow": "PIL", "ipython": "IPython"}
DEV_ONLY = {"jupyter-book", "sphinx", "myst-nb", "playwright", "ruff", "pytest", "pytest-xdist", "pytest-timeout",
            "nbval", "jupyterlab", "notebook", "check-jsonschema", "django-static-mathjax"}


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[@]", requirement.strip(), maxsplit=1)[0].lower()


def _requirements(path: Path) -> list[str]:
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line]


def _imports(code: str) -> set[str]:
    """Top-level modules named by the import statements in ``code`` (IPython magics become ``pass``)."""
    import ast

    lines = [re.sub(r"^(\s*)[%!].*", r"\1pass", line) for line in code.splitlines()]
    tree = ast.parse("\n".join(lines))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found


def _code(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def test_extras_by_use_and_requirements_hold_them_all():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {"notebooks", "book", "dev"} <= set(extras)
    dev_env = {_name(r) for r in _requirements(ROOT / "requirements.txt")}
    for extra, reqs in extras.items():
        for req in reqs:
            if _name(req) != "lossbook-helpers":
                assert _name(req) in dev_env, f"extra {extra!r} needs {req!r}, which requirements.txt lacks"
    for req in PYPROJECT["project"]["dependencies"]:
        assert _name(req) in dev_env, f"{req!r} is a dependency but not in requirements.txt"
    assert not DEV_ONLY & {_name(r) for r in extras["notebooks"]}, "the notebooks extra is for readers, not the build"


def test_no_exact_pins_for_readers():
    for req in PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"]["notebooks"]:
        assert "==" not in req, f"{req}: exact pins break Colab's and Binder's preinstalled torch"


def test_helpers_import_only_what_the_package_declares():
    declared = {MODULE_OF.get(_name(r), _name(r)) for r in PYPROJECT["project"]["dependencies"]}
    declared |= {MODULE_OF.get(_name(r), _name(r)) for r in PYPROJECT["project"]["optional-dependencies"]["notebooks"]}
    declared |= {"PIL", "helpers"}  # pillow comes with torchvision and matplotlib
    optional = {"glue.py": {"myst_nb", "IPython"}}  # imported inside try/except or lazily, in a kernel
    for path in sorted((ROOT / "helpers").glob("*.py")):
        missing = _imports(path.read_text()) - set(sys.stdlib_module_names) - declared - optional.get(path.name, set())
        assert not missing, f"helpers/{path.name} imports {sorted(missing)}: add them to pyproject.toml"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_colab_has_everything_a_chapter_imports(path):
    """After the setup cell, Colab holds its preinstalled set plus lossbook-helpers[notebooks]."""
    extras = {MODULE_OF.get(_name(r), _name(r)) for r in PYPROJECT["project"]["optional-dependencies"]["notebooks"]}
    available = set(sys.stdlib_module_names) | COLAB_PREINSTALLED | extras | {"helpers"}
    missing = _imports(_code(path)) - available
    assert not missing, f"{path.name} imports {sorted(missing)}, which Colab lacks after the setup cell"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_setup_cell_installs_the_notebooks_extra(path):
    first = next(c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    source = "".join(first["source"])
    assert "lossbook-helpers[notebooks] @ git+" in source
    assert "remove-cell" in first.get("metadata", {}).get("tags", []), "the setup cell is hidden in the HTML"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_chapter_reads_files_outside_the_package(path):
    """On Colab only the package is installed: the repository (benchmarks/, data files) is not there."""
    code = _code(path)
    assert "find_repo_root()" not in code, f"{path.name} reads files relative to the repository root"
    assert not re.search(r"""["'](\.\./)?benchmarks/""", code), f"{path.name} reads benchmarks/ from the repository"


def test_gpu_chapter_asks_colab_for_a_gpu():
    meta = json.loads((ROOT / "notebooks" / "05_imbalanced_cifar10.ipynb").read_text())["metadata"]
    assert meta.get("accelerator") == "GPU"


def test_binder_folder_installs_what_a_reader_needs_and_nothing_more():
    reqs = _requirements(ROOT / "binder" / "requirements.txt")
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in reqs, "CPU-only torch on Binder"
    names = {_name(r) for r in reqs if not r.startswith("-")}
    assert {"torch", "torchvision"} <= names
    assert ".[notebooks]" in reqs, "the package itself, with the notebooks' extras"
    assert not DEV_ONLY & names, "no build or test tool chain (and no jupyterlab: Binder brings its own server)"
    runtime = (ROOT / "binder" / "runtime.txt").read_text().strip()
    major, minor = map(int, re.fullmatch(r"python-(\d+)\.(\d+)", runtime).groups())
    assert (major, minor) >= (3, 10)


def test_python_floor_is_stated_everywhere():
    assert PYPROJECT["project"]["requires-python"] == ">=3.10"
    assert "sys.version_info < (3, 10)" in (ROOT / "helpers" / "__init__.py").read_text()
    assert "sys.version_info >= (3, 10)" in (ROOT / "Makefile").read_text()


def test_licenses():
    assert PYPROJECT["project"]["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    text = (ROOT / "LICENSE-TEXT").read_text()
    assert "Creative Commons Attribution 4.0 International" in text and "Section 1 – Definitions" in text


def test_config_keys_are_read_by_jupyter_book():
    """Every key in _config.yml is one Jupyter Book 1.x reads (its default_config.yml is the master list)."""
    yaml = pytest.importorskip("yaml")
    jb = pytest.importorskip("jupyter_book")
    defaults = yaml.safe_load((Path(jb.__file__).parent / "default_config.yml").read_text())
    defaults["bibtex_bibfiles"] = []  # read by jupyter_book.config.yaml_to_sphinx, absent from the defaults
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    for key, value in config.items():
        assert key in defaults, f"_config.yml: {key} is not a Jupyter Book 1.x key"
        if isinstance(value, dict) and key != "sphinx" and isinstance(defaults[key], dict):
            for sub in value:
                assert sub in defaults[key], f"_config.yml: {key}.{sub} is ignored by Jupyter Book 1.x"
