"""Serve MathJax 3 from the built book instead of a CDN.

Readers save the HTML and open it offline, and the build machines have no internet, so the
default CDN MathJax would leave math as raw TeX. The ``django-static-mathjax`` package on PyPI
ships the MathJax 3 distribution; this extension copies its self-contained ``tex-svg.js``
(SVG output needs no web fonts) into ``_static/mathjax/`` and points Sphinx at it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sphinx.application import Sphinx

MATHJAX_FILE = "tex-svg.js"


def _source() -> Path:
    import mathjax  # the django-static-mathjax distribution's package

    path = Path(mathjax.__file__).resolve().parent / "static" / "mathjax" / "es5" / MATHJAX_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall django-static-mathjax")
    return path


def _set_path(app: Sphinx, config) -> None:
    _source()  # fail early, before a long build, if MathJax is not installed
    config.mathjax_path = f"mathjax/{MATHJAX_FILE}"


def _copy(app: Sphinx, exception: Exception | None) -> None:
    if exception is None and app.builder.format == "html":
        target = Path(app.outdir) / "_static" / "mathjax"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(_source(), target / MATHJAX_FILE)


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", _set_path)
    app.connect("build-finished", _copy)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
