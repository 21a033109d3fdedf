"""The book's Sphinx extensions (book/_ext): bibliography labels and the build summary."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
pybtex = pytest.importorskip("pybtex")
from docutils import nodes  # noqa: E402
from pybtex.database import parse_string  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "book" / "_ext"))
import bib_labels  # noqa: E402
import lossbook_build  # noqa: E402

BIB = r"""
@article{one, author = {Huber, Peter J.}, title = {T}, year = {1964}}
@article{two, author = {Bergstra, James and Bengio, Yoshua}, title = {T}, year = {2012}}
@article{many, author = {Goyal, Priya and Doll{\'a}r, Piotr and Girshick, Ross}, title = {T}, year = {2017}}
@article{von, author = {van den Oord, Aaron and Li, Yazhe and Vinyals, Oriol}, title = {T}, year = {2018}}
"""


def test_author_year_labels_match_the_citations():
    entries = parse_string(BIB, "bibtex").entries
    labels = {key: bib_labels.author_year(entry) for key, entry in entries.items()}
    assert labels == {
        "one": "Huber, 1964",
        "two": "Bergstra and Bengio, 2012",
        "many": "Goyal et al., 2017",
        "von": "van den Oord et al., 2018",
    }


def test_accents_are_decoded_not_mangled():
    entry = parse_string(BIB, "bibtex").entries["many"]
    assert bib_labels._surname(entry.persons["author"][1]) == "Dollár"


def test_equal_labels_get_suffixes():
    twice = BIB.split("@article{two")[0] + BIB.split("@article{two")[0].replace("{one,", "{one2,")
    entries = list(parse_string(twice, "bibtex").entries.values())
    labels = list(bib_labels.AuthorYearLabelStyle().format_labels(entries))
    assert labels == ["Huber, 1964a", "Huber, 1964b"]


def _page(*outputs: str, prose: str = "") -> nodes.document:
    doc = nodes.section()
    doc += nodes.paragraph(text=prose)
    for text in outputs:
        box = nodes.container(classes=["cell_output"])
        box += nodes.literal_block(text, text)
        doc += box
    return doc


def test_scan_reads_mode_and_data_from_outputs_only():
    quick_synthetic = _page("Mode: QUICK (LOSSBOOK_QUICK=1): ...", "SYNTHETIC STAND-IN (not CIFAR-10)-LT exp 100",
                            "!!  SYNTHETIC STAND-IN, NOT CIFAR-10.  Real CIFAR-10 was not available")
    assert lossbook_build.scan_outputs(quick_synthetic) == {
        "modes": ["quick"],
        "synthetic": ["CIFAR-10"],
        "real_cifar": False,
    }
    full_real = _page("Mode: FULL (LOSSBOOK_QUICK=0): ...", "CIFAR-10-LT exp 100 (counts [5000, ...])",
                      prose="offline, the SYNTHETIC STAND-IN is used")  # the prose does not count
    assert lossbook_build.scan_outputs(_page("!!  SYNTHETIC STAND-IN, NOT CIFAR-100."))["synthetic"] == ["CIFAR-100"]
    assert lossbook_build.scan_outputs(full_real) == {"modes": ["full"], "synthetic": [], "real_cifar": True}


def test_version_comes_from_citation_cff(tmp_path):
    (tmp_path / "CITATION.cff").write_text('cff-version: 1.2.0\nversion: "1.4.2"\n')
    assert lossbook_build.book_version(tmp_path) == "1.4.2"
    assert lossbook_build.book_version(tmp_path / "missing") == "0.0.0"
    assert lossbook_build.book_version() == lossbook_build.book_version(Path(__file__).resolve().parent.parent)
