"""Append each chapter's exercise cells (from tools/exercise_cells_content.py) to its notebook.

Every cell written carries the metadata ``{"lossbook": {"exercise": true}}``, so that the block can be
found, replaced or moved to another version of the notebook by script. Running the script again first
removes the cells it wrote before, so it is idempotent:

    python tools/exercise_cells.py notebooks/03_weighted_cross_entropy.ipynb [...]
    python tools/exercise_cells.py --all

The exercise cells are self-contained (their own imports and data), so they run appended to any
version of the chapter.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from exercise_cells_content import CHAPTERS, HOW_TO  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MARK = {"exercise": True}


def _lines(text: str) -> list[str]:
    text = text.strip("\n") + "\n"
    lines = text.splitlines(keepends=True)
    lines[-1] = lines[-1].rstrip("\n")
    return lines


def _md(cell_id: str, text: str) -> dict:
    return {"cell_type": "markdown", "id": cell_id, "metadata": {"lossbook": dict(MARK)}, "source": _lines(text)}


def _code(cell_id: str, text: str, *, solution: bool = False) -> dict:
    meta: dict = {"lossbook": dict(MARK)}
    if solution:
        meta["tags"] = ["hide-input"]
        meta["cellView"] = "form"
        text = "# @title Solution (click to show)\n" + text.strip("\n")
    return {"cell_type": "code", "execution_count": None, "id": cell_id, "metadata": meta, "outputs": [],
            "source": _lines(text)}


def cells_for(chapter: str) -> list[dict]:
    """The exercise block of ``chapter`` (a key of ``CHAPTERS``, e.g. ``'03'``)."""
    spec = CHAPTERS[chapter]
    n = int(chapter)
    out = [_md(f"ex{chapter}-intro", f"({spec['label']})=\n## Exercises\n\n{spec['intro']}\n\n{HOW_TO}"),
           _code(f"ex{chapter}-setup", spec["setup"])]
    for k, ex in enumerate(spec["exercises"], start=1):
        head = (f"### Exercise {n}.{k}: {ex['title']}\n\n*{ex['kind']}, about {ex['minutes']} minutes; "
                f"see {ex['link']}.*\n\n{ex['task'].strip()}\n\n"
                f"**A correct answer** {ex['criterion'].strip()} Check it with `check(\"{ex['id']}\", ...)`.")
        out.append(_md(f"ex{chapter}-{k}-task", head))
        out.append(_code(f"ex{chapter}-{k}-answer", ex["stub"]))
        out.append(_code(f"ex{chapter}-{k}-solution", ex["solution"], solution=True))
    return out


def append(path: Path) -> int:
    """Replace the exercise block at the end of the notebook at ``path``; returns the cells written."""
    chapter = path.name[:2]
    nb = json.loads(path.read_text())
    nb["cells"] = [c for c in nb["cells"] if not c.get("metadata", {}).get("lossbook", {}).get("exercise")]
    new = cells_for(chapter)
    nb["cells"] += new
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return len(new)


if __name__ == "__main__":
    args = sys.argv[1:]
    paths = ([p for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")) if p.name[:2] in CHAPTERS]
             if args == ["--all"] else [Path(a) for a in args])
    for p in paths:
        print(f"{p}: {append(p)} exercise cells")
