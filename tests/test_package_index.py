"""helpers/__init__.py is the package's index: it names every module, and nothing that does not exist."""

import re
from pathlib import Path

import helpers


def test_package_docstring_lists_every_module():
    modules = {p.stem for p in Path(helpers.__file__).parent.glob("*.py")} - {"__init__"}
    listed = set(re.findall(r":mod:`helpers\.(\w+)`", helpers.__doc__))
    assert modules == listed, f"helpers/__init__.py lists these wrongly: {sorted(listed ^ modules)}"
