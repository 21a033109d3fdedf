"""HTML tables in notebook outputs, as real tables in the PDF.

A table a chapter shows as ``df.style.set_caption(...)`` (the book's rule for captioned tables) has
only an HTML representation: its ``text/plain`` is ``<pandas.io.formats.style.Styler object at ...>``,
which is what the LaTeX build would print. ``_config.yml`` lets the LaTeX build pick ``text/html``
before ``text/plain`` (``nb_mime_priority_overrides``), and this extension turns each such HTML output
into a docutils table, with the ``<caption>`` as its numbered title, which Sphinx's LaTeX writer
typesets. Other HTML outputs become their plain text. HTML builds are left alone.
"""

from __future__ import annotations

from bs4 import BeautifulSoup
from docutils import nodes
from sphinx.application import Sphinx


def _row(cells: list[str], width: int) -> nodes.row:
    row = nodes.row()
    for text in cells + [""] * (width - len(cells)):
        entry = nodes.entry()
        entry += nodes.paragraph(text, text)
        row += entry
    return row


def table_node(table) -> nodes.table | None:
    """A docutils table from a BeautifulSoup ``<table>``: header rows from ``<thead>``, caption as title."""
    head = [[c.get_text(" ", strip=True) for c in tr.find_all(["th", "td"])] for tr in table.select("thead tr")]
    body_rows = table.select("tbody tr") or [tr for tr in table.find_all("tr") if not tr.find_parent("thead")]
    body = [[c.get_text(" ", strip=True) for c in tr.find_all(["th", "td"])] for tr in body_rows]
    width = max((len(r) for r in head + body), default=0)
    if width == 0:
        return None
    node = nodes.table(classes=["lossbook-html-table"])
    caption = table.find("caption")
    if caption and caption.get_text(strip=True):
        text = caption.get_text(" ", strip=True)
        node += nodes.title(text, text)
    group = nodes.tgroup(cols=width)
    node += group
    for _ in range(width):
        group += nodes.colspec(colwidth=1)
    if head:
        thead = nodes.thead()
        for cells in head:
            thead += _row(cells, width)
        group += thead
    tbody = nodes.tbody()
    for cells in body or [[]]:
        tbody += _row(cells, width)
    group += tbody
    return node


def html_to_nodes(html: str) -> list[nodes.Node]:
    """The tables of an HTML output as tables, or else its text as a literal block ([] when empty)."""
    soup = BeautifulSoup(html, "html.parser")
    for junk in soup(["style", "script"]):
        junk.decompose()
    tables = [t for t in (table_node(t) for t in soup.find_all("table")) if t is not None]
    if tables:
        return tables
    text = soup.get_text("\n", strip=True)
    return [nodes.literal_block(text, text)] if text else []


def on_doctree_read(app: Sphinx, doctree) -> None:
    if app.builder.format != "latex":
        return
    for raw in list(doctree.findall(nodes.raw)):
        if raw.get("format") == "html":
            raw.replace_self(html_to_nodes(raw.astext()) or nodes.comment())


def setup(app: Sphinx) -> dict:
    app.connect("doctree-read", on_doctree_read)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
