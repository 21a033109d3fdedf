"""Author-year labels in the bibliography, matching the in-text citations.

The citations read "Lin et al., 2017" (sphinxcontrib-bibtex's ``author_year`` reference style), but
the default bibliography style labels entries "[LGG+17]", and its alpha labels mangle accented
names ("[GDollarG+17]" for Goyal, Dollár, ...). This extension registers the pybtex style
``lossbook`` (``bibtex_default_style`` in ``_config.yml``): pybtex's ``plain`` formatting (which
links an entry's ``doi``, ``eprint`` (arXiv) and ``url`` fields) with labels built the way the
citations are: one author "Huber, 1964", two "Bergstra and Bengio, 2012", more "Lin et al., 2017",
accents rendered ("Dollár"), and a/b suffixes if two labels ever coincide.
"""

from __future__ import annotations

from collections import Counter

from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle
from sphinx.application import Sphinx


def _surname(person) -> str:
    """The surname as printed: von-part and last names, LaTeX accents decoded ("van den Oord", "Dollár")."""
    parts = person.prelast_names + person.last_names
    return " ".join(Text.from_latex(part).render_as("text") for part in parts)


def author_year(entry) -> str:
    """'Huber, 1964', 'Bergstra and Bengio, 2012' or 'Lin et al., 2017' for a pybtex entry."""
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [_surname(p) for p in people]
    if not names:
        who = entry.fields.get("title", entry.key)
    elif len(names) == 1:
        who = names[0]
    elif len(names) == 2:
        who = f"{names[0]} and {names[1]}"
    else:
        who = f"{names[0]} et al."
    return f"{who}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearLabelStyle(BaseLabelStyle):
    """pybtex label style: :func:`author_year`, with a/b/... appended to labels that coincide."""

    def format_labels(self, sorted_entries):
        entries = list(sorted_entries)
        labels = [author_year(e) for e in entries]
        counts, seen = Counter(labels), Counter()
        for label in labels:
            if counts[label] > 1:
                seen[label] += 1
                yield label + "abcdefghijklmnopqrstuvwxyz"[seen[label] - 1]
            else:
                yield label


class LossbookStyle(PlainStyle):
    """pybtex's plain style (sorted by author and year; DOI, arXiv and URL linked) with author-year labels."""

    default_label_style = "lossbook-author-year"


register_plugin("pybtex.style.labels", "lossbook-author-year", AuthorYearLabelStyle)
register_plugin("pybtex.style.formatting", "lossbook", LossbookStyle)


def setup(app: Sphinx) -> dict:
    return {"parallel_read_safe": True, "parallel_write_safe": True}
