"""Glue a computed value into the book's prose, with or without myst-nb.

The book's pages quote numbers with myst-nb's ``{glue:text}`` roles: a notebook cell calls
``glue(name, value)`` and the build pastes the value into the prose. myst-nb is part of the
book's build tool chain (Sphinx, docutils, Jupyter Book), which a reader running a chapter on
Colab or Binder does not need. Rather than install that whole tool chain next to the reader's
kernel, :func:`glue` uses myst-nb when it is importable and otherwise shows the value as an
ordinary cell output, which is all a reader running the notebook needs to see.
"""

from __future__ import annotations

from typing import Any

__all__ = ["glue"]


def glue(name: str, variable: Any, display: bool = True) -> None:
    """Record ``variable`` under ``name`` for the book's ``{glue:...}`` roles.

    Args:
        name: the key the prose refers to (``{glue:text}`name```).
        variable: any object with a rich or plain-text representation.
        display: also show the value in the cell's output (as ``myst_nb.glue`` does).

    With myst-nb installed (the book build) this is exactly ``myst_nb.glue``. Without it (Colab,
    Binder, a plain ``jupyter lab``) nothing is recorded: the value is displayed when
    ``display`` is true and otherwise dropped, since only the book build reads glued values.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        if display:
            from IPython.display import display as ipython_display

            ipython_display(variable)
        return
    myst_glue(name, variable, display)
