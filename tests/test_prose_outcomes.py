"""The book's rule for outcome sentences: computed from the page's numbers or asserted, never typed.

A sentence of prose (headings included) that states an outcome -- improves, hurts, ties, diverges,
is faster, matches, beats, ... -- must do one of three things:

* contain a ``{glue:...}`` role, so the words come from the executed notebook (helpers.stats.verdict
  computes "improves" / "hurts" / "cannot be told apart from" from an interval, and says quick mode
  cannot conclude when it cannot);
* sit in a markdown cell whose metadata names the code cells that assert it:
  ``"metadata": {"lossbook": {"checked_by": ["<code cell id>", ...]}}``; every named cell must exist
  in the same notebook and contain an ``assert`` (so the build fails when the data stop supporting
  the sentence);
* quote a claim the page examines, inside double quotes ("..." or \u201c...\u201d).

Words inside inline code (backticks) and math ($...$) are not prose and are ignored.
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PAGES = sorted((ROOT / "book").glob("*.md"))

OUTCOME = re.compile(
    r"\b(improv(?:e|es|ed|ing|ement|ements)|hurts?|hurting|ties|tied|diverg(?:e|es|ed|ence|ing)|faster|slower"
    r"|outperform\w*|beats?|beaten|match(?:es|ed)?|better than|worse than|helps|helped|wins?|winner|winners)\b",
    re.I,
)
# What is not prose: inline code, math, quoted claims, link targets, MyST roles' targets.
NOT_PROSE = re.compile(r"`[^`]*`|\$\$.*?\$\$|\$[^$]*\$|\"[^\"]*\"|\u201c[^\u201d]*\u201d|\]\([^)]*\)", re.S)
SENTENCE_END = re.compile(
    r"(?<=[.!?:])\s+(?=[A-Z*#(])|(?<=[.!?:]\*\*)\s+(?=[A-Z*#(])"  # after a sentence, bold headlines too
    r"|\n\s*\n|\n(?=#)|\n(?=\s*[-*] )|\n(?=\s*\d+\. )"  # paragraphs, headings, list items
)


def outcome_sentences(markdown: str) -> list[str]:
    """The sentences of ``markdown`` that state an outcome and carry no glue role."""
    hits = []
    for sentence in SENTENCE_END.split(markdown):
        if "{glue" in sentence:
            continue
        if OUTCOME.search(NOT_PROSE.sub(" ", sentence)):
            hits.append(" ".join(sentence.split()))
    return hits


def _asserting_cells(cells: list[dict]) -> dict[str, bool]:
    return {c.get("id", ""): bool(re.search(r"^\s*assert\b", "".join(c["source"]), re.M))
            for c in cells if c["cell_type"] == "code"}


def test_the_rule_catches_typed_outcomes():
    assert outcome_sentences("Focal loss improves the tail.") == ["Focal loss improves the tail."]
    assert outcome_sentences("## What helps, and why") == ["## What helps, and why"]
    assert outcome_sentences("Focal loss {glue:text}`verdict` the tail.") == []
    assert outcome_sentences('A post claims "weighted MSE trains faster".') == []
    assert outcome_sentences("Call `torch.allclose` to see if it `matches`.") == []
    assert outcome_sentences("We load the data. The model trains.") == []
    # a bold headline is its own sentence: glue in the next sentence does not cover it
    assert outcome_sentences("**Focal loss helps.** It scores {glue:text}`x`.") == ["**Focal loss helps.**"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_outcomes_are_computed_or_asserted(path):
    cells = json.loads(path.read_text())["cells"]
    asserting = _asserting_cells(cells)
    problems = []
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "markdown":
            continue
        checked_by = cell.get("metadata", {}).get("lossbook", {}).get("checked_by", [])
        for cid in checked_by:
            if cid not in asserting:
                problems.append(f"cell {i}: checked_by names {cid!r}, which is not a code cell of this notebook")
            elif not asserting[cid]:
                problems.append(f"cell {i}: checked_by names {cid!r}, which asserts nothing")
        if checked_by:
            continue
        problems += [f"cell {i}: {s[:140]}" for s in outcome_sentences("".join(cell["source"]))]
    assert not problems, (
        f"{path.name}: outcome sentences typed by hand (glue the verdict, or name the asserting cells in "
        "metadata.lossbook.checked_by):\n  " + "\n  ".join(problems)
    )


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_prose_pages_state_no_outcomes(path):
    # Pages without code cannot compute anything: they may not state outcomes at all.
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    hits = outcome_sentences(text)
    assert not hits, f"{path.name}: outcome sentences on a page without code:\n  " + "\n  ".join(hits)
