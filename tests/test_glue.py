"""helpers.glue: myst-nb's glue when it is installed, a plain display otherwise."""

import sys

import pytest

from helpers.glue import glue


def test_without_myst_nb_displays_or_drops(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # makes `import myst_nb` raise ImportError
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    glue("x", 1.5)
    glue("y", 2.5, display=False)
    assert shown == [1.5]


def test_with_myst_nb_delegates(monkeypatch):
    calls = []

    class FakeMystNb:
        @staticmethod
        def glue(name, variable, display):
            calls.append((name, variable, display))

    monkeypatch.setitem(sys.modules, "myst_nb", FakeMystNb)
    glue("x", 3, display=False)
    assert calls == [("x", 3, False)]


def test_rejects_empty_name():
    with pytest.raises(ValueError, match="name"):
        glue("", 1)

