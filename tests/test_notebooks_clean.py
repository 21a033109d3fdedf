"""Repository hygiene for the notebooks: no stored outputs, all in the TOC, Colab cell in sync."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _config_value(key: str, section: str) -> str:
    """Read `section: key: value` from _config.yml without a YAML dependency on the test side."""
    text = (ROOT / "_config.yml").read_text()
    block = re.search(rf"^{section}:\n((?:[ \t]+.*\n?)+)", text, re.M)
    assert block, f"_config.yml has no '{section}:' section"
    match = re.search(rf"^\s+{key}:\s*(\S+)", block.group(1), re.M)
    assert match, f"_config.yml has no {section}.{key}"
    return match.group(1).strip("\"'")


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no .ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_no_outputs(path):
    for i, cell in enumerate(_cells(path)):
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"{path.name} cell {i} has stored outputs: clear them"
            assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_in_toc(path):
    toc = (ROOT / "_toc.yml").read_text()
    listed = re.findall(r"^\s*-\s*file:\s*(\S+)", toc, re.M)
    assert f"notebooks/{path.stem}" in listed, f"{path.name} is not listed in _toc.yml"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_colab_setup_cell_matches_config(path):
    url = _config_value("url", "repository").rstrip("/")
    branch = _config_value("branch", "repository")
    code = [c for c in _cells(path) if c["cell_type"] == "code"]
    first = "".join(code[0]["source"])
    is_setup = "'google.colab' in sys.modules" in first.replace('"', "'")
    assert is_setup, f"{path.name}: first code cell is not the Colab setup cell"
    installs = re.findall(r"git\+(\S+?)@([\w.-]+)", first)
    assert installs == [(url, branch)], (
        f"{path.name}: the Colab cell installs {installs}, but _config.yml says repository {url} branch {branch}"
    )
    assert not re.search(r"\b(torch|numpy)\s*[=<>]=", first), f"{path.name}: no torch/numpy pins in the setup cell"


def test_readme_and_config_name_the_same_repository():
    url = _config_value("url", "repository").rstrip("/")
    assert url in (ROOT / "README.md").read_text(), "README.md should link the repository named in _config.yml"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_open_in_colab_badge_first(path):
    """Readers who find a notebook on GitHub get a badge that opens that very notebook on Colab;
    the HTML has its own launch buttons, so the badge cell is removed there."""
    url = _config_value("url", "repository").rstrip("/")
    branch = _config_value("branch", "repository")
    first = _cells(path)[0]
    assert first["cell_type"] == "markdown" and "remove-cell" in first.get("metadata", {}).get("tags", [])
    repo = url.removeprefix("https://github.com/")
    link = f"https://colab.research.google.com/github/{repo}/blob/{branch}/notebooks/{path.name}"
    assert link in "".join(first["source"]), f"{path.name}: the first cell should be the Open-in-Colab badge for {link}"
