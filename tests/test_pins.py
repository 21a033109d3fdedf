"""The pinned environments CI tests readers' versions with: Colab's published runtime and pyproject's floors.

The stages themselves (``.ci/run``: colab-like, min-versions) install and run them; these checks are the
static half: the requirements a Colab reader's setup cell installs accept every version Colab pins, the
floors are exact releases, and the tools read Colab's ``pip freeze`` as published.
"""

import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
requirements = pytest.importorskip("packaging.requirements")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import colab_pins  # noqa: E402
import pins  # noqa: E402

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
COLAB = pins.read_pins((ROOT / ".ci" / "colab-pins.txt").read_text())


def _reader_requirements() -> list[str]:
    project = PYPROJECT["project"]
    return list(project["dependencies"]) + list(project["optional-dependencies"]["notebooks"])


def test_colab_pins_name_their_source_and_date():
    text = (ROOT / ".ci" / "colab-pins.txt").read_text()
    assert "googlecolab/backend-info" in text and "Python 3.13" in text
    assert {"torch", "torchvision", "numpy", "ipywidgets", "ipykernel", "tqdm"} <= set(COLAB)


@pytest.mark.parametrize("req", _reader_requirements())
def test_setup_cell_accepts_every_colab_pin(req):
    """The setup cell installs these requirements on Colab: none may exclude the version Colab ships."""
    parsed = requirements.Requirement(req)
    name = pins._canonical(parsed.name)
    if name in COLAB:
        assert parsed.specifier.contains(COLAB[name], prereleases=True), (
            f"{req!r} would replace Colab's {name}=={COLAB[name]} (a setup cell must never move a Colab pin)"
        )


def test_floors_are_exact_releases_the_min_versions_stage_installs():
    floors = pins.floors()
    assert len(floors) == len(_reader_requirements())
    assert all("==" in pin and pin.split("==")[1].count(".") == 2 for pin in floors)
    assert "ipywidgets==7.7.1" in floors, "the notebooks extra accepts Colab's ipywidgets 7"


def test_floors_refuse_an_untestable_bound(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\ndependencies = ["torch>=2.4"]\n[project.optional-dependencies]\nnotebooks = []\n')
    with pytest.raises(ValueError, match="torch>=2.4"):
        pins.floors(pyproject)


def test_moved_names_a_changed_pin_and_ignores_additions():
    pinned = {"ipywidgets": "7.7.1", "torch": "2.11.0"}
    before = {"ipywidgets": "7.7.1", "torch": "2.11.0", "pip": "26.0"}
    after = {"ipywidgets": "8.1.9", "torch": "2.11.0", "pip": "26.0", "optuna": "5.1.0"}
    bad, other = pins.moved(pinned, before, after)
    assert bad == ["ipywidgets: 7.7.1 -> 8.1.9"]
    assert other == ["optuna: (absent) -> 5.1.0"]
    assert pins.moved(pinned, before, before) == ([], [])


def test_colab_freeze_url_lines_become_release_pins():
    freeze = colab_pins.parse_freeze(
        "torch @ https://download.pytorch.org/whl/cpu/torch-2.11.0%2Bcpu-cp313-cp313-manylinux_2_28_x86_64.whl\n"
        "ipywidgets==7.7.1\n"
        "jupyter_kernel_gateway @ git+https://github.com/googlecolab/kernel_gateway@b134e99\n"
    )
    assert freeze == {"torch": ("torch", "2.11.0"), "ipywidgets": ("ipywidgets", "7.7.1")}


def test_every_file_states_the_floors_pyproject_declares():
    """requirements.txt (development) and binder/requirements.txt repeat the floors, never an untested one."""
    floors = dict(pin.split("==") for pin in pins.floors())
    for path in (ROOT / "requirements.txt", ROOT / "binder" / "requirements.txt"):
        for line in path.read_text().splitlines():
            text = line.split("#", 1)[0].strip()
            if not text or text.startswith(("-", ".")):
                continue
            req = requirements.Requirement(text)
            if req.name in floors:
                assert str(req.specifier) == f">={floors[req.name]}", (
                    f"{path.name}: {text} (pyproject: {floors[req.name]})"
                )
