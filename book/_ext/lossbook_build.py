"""What this build of the book is: its version, commit, mode and data, read from the build itself.

The landing page and the setup page must not promise "every output ran on real CIFAR-10" when the
build fell back to the synthetic stand-in, or ran in quick mode. This extension

* reads the book's version from ``CITATION.cff`` (the one place it is written) into Sphinx's
  ``version``/``release`` and puts "version X, commit Y" in every page's footer;
* while each executed notebook is read, looks at its *outputs* (not its prose) for the mode line
  that ``helpers.runtime.mode_banner`` prints ("Mode: QUICK" / "Mode: FULL") and for the synthetic
  CIFAR-10 banner that ``helpers.cifar`` prints ("SYNTHETIC STAND-IN");
* writes the book's BibTeX entry (``{lossbook-bibtex}``) from the same file;
* replaces each ``{lossbook-build-info}`` directive with a paragraph saying what this build ran:
  quick or full mode, and whether the CIFAR-10 chapter used real CIFAR-10 or the stand-in;
* sets each HTML page's "Last updated" date to the last commit of its source file (the build date
  when git cannot tell), drops the duplicated inline scripts that made every page log
  "Identifier 'THEBE_JS_URL' has already been declared", and leaves MathJax out of pages without math
  and FontAwesome's script out of every page (its CSS draws the icons).
"""

from __future__ import annotations

import re
import subprocess
from datetime import date
from functools import cache
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx.application import Sphinx

ROOT = Path(__file__).resolve().parents[2]
MODE_LINE = re.compile(r"Mode: (QUICK|FULL)\b")
# helpers.datasets' banner ("SYNTHETIC STAND-IN, NOT CIFAR-10") and helpers.cifar's description
# ("SYNTHETIC STAND-IN (not CIFAR-100)"): which data set was replaced.
SYNTHETIC_BANNER = re.compile(r"SYNTHETIC STAND-IN[,(]?\s*(?:NOT|not)\s+(CIFAR-100|CIFAR-10)\b")
# helpers.cifar's description of a real long-tailed split ("CIFAR-10-LT exp 100 (counts ...)"); the
# stand-in's reads "SYNTHETIC STAND-IN (not CIFAR-10)-LT ...".
REAL_CIFAR = re.compile(r"\bCIFAR-10-LT\b")


def book_version(root: Path = ROOT) -> str:
    """The ``version:`` of ``CITATION.cff`` ("0.0.0" when the file is missing)."""
    path = root / "CITATION.cff"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    found = re.search(r"^version:\s*['\"]?([^'\"\n]+)", text, re.M)
    return found.group(1).strip() if found else "0.0.0"


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


@cache
def last_commit_date(path: str) -> str:
    """``YYYY-MM-DD`` of the last commit that touched ``path`` ("" when git cannot tell)."""
    return _git("log", "-1", "--format=%cs", "--", path)


def scan_outputs(doctree: nodes.Node) -> dict:
    """Mode and data seen in a notebook page's cell outputs (its prose is ignored)."""
    text = "\n".join(
        node.astext() for node in doctree.findall(nodes.Element) if "cell_output" in node.get("classes", [])
    )
    modes = sorted({m.lower() for m in MODE_LINE.findall(text)})
    return {
        "modes": modes,
        "synthetic": sorted(set(SYNTHETIC_BANNER.findall(text))),
        "real_cifar": bool(REAL_CIFAR.search(text)),
    }


class build_info(nodes.General, nodes.Element):
    """Placeholder replaced by the build summary once every page has been read."""


class BuildInfoDirective(Directive):
    has_content = False

    def run(self):
        return [build_info()]


class BibtexDirective(Directive):
    """The book's BibTeX entry, from CITATION.cff's version (so the two never disagree)."""

    has_content = False

    def run(self):
        config = self.state.document.settings.env.config
        url = (config.html_baseurl or "").rstrip("/") + "/"
        text = (
            "@book{lossbook,\n"
            f"  title   = {{{config.project.replace('PyTorch', '{PyTorch}')}}},\n"
            f"  author  = {{{{{config.author}}}}},\n"
            f"  year    = {{{_year()}}},\n"
            f"  version = {{{config.release}}},\n"
            f"  url     = {{{url}}}\n"
            "}"
        )
        block = nodes.literal_block(text, text, language="bibtex")
        return [block]


def _year() -> str:
    found = re.search(r"^\s*year:\s*(\d{4})", (ROOT / "CITATION.cff").read_text(encoding="utf-8"), re.M)
    return found.group(1) if found else str(date.today().year)


def _runs(env) -> dict:
    if not hasattr(env, "lossbook_runs"):
        env.lossbook_runs = {}
    return env.lossbook_runs


def on_doctree_read(app: Sphinx, doctree) -> None:
    env = app.env
    if str(env.doc2path(env.docname)).endswith(".ipynb"):
        _runs(env)[env.docname] = scan_outputs(doctree)


def on_purge(app: Sphinx, env, docname: str) -> None:
    _runs(env).pop(docname, None)


def on_merge(app: Sphinx, env, docnames, other) -> None:
    _runs(env).update({d: v for d, v in _runs(other).items() if d in docnames})


def _chapter_name(env, docname: str) -> str:
    number = env.toc_secnumbers.get(docname, {}).get("", ())
    title = env.titles[docname].astext() if docname in env.titles else docname
    return f"chapter {'.'.join(map(str, number))} ({title})" if number else title


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def summary_sentences(env) -> list[str]:
    """The build summary, one sentence per fact; empty facts are left out."""
    runs = {d: r for d, r in _runs(env).items() if d in env.found_docs}
    sentences = []
    modes = sorted({m for r in runs.values() for m in r["modes"]})
    if modes == ["quick"]:
        sentences.append(
            "The chapters of this build ran in **quick mode** (data and epochs shrunk): their numbers show that "
            "the code runs; they are not the book's results."
        )
    elif modes == ["full"]:
        sentences.append("The chapters of this build ran in **full mode**: the budgets the prose describes.")
    elif modes:
        quick = ", ".join(_chapter_name(env, d) for d, r in sorted(runs.items()) if "quick" in r["modes"])
        sentences.append(f"This build mixed modes: {quick} ran in **quick mode**, the others in full mode.")
    synthetic = [d for d, r in sorted(runs.items()) if r["synthetic"]]
    real = [d for d, r in sorted(runs.items()) if r.get("real_cifar") and not r["synthetic"]]
    for doc in synthetic:
        names = " and ".join(runs[doc]["synthetic"])
        sentences.append(
            f"{_upper_first(_chapter_name(env, doc))} ran on the **synthetic stand-in, not {names}** "
            f"({names} could not be downloaded where this build ran): its numbers say nothing about {names}."
        )
    if real and not synthetic:
        sentences.append(f"{_upper_first(_chapter_name(env, real[0]))} ran on **real CIFAR-10**.")
    sentences.append("The MNIST chapters always use real MNIST: there is no stand-in for it.")
    return sentences


def _inline(text: str) -> list[nodes.Node]:
    """Text with **bold** spans as docutils nodes."""
    out: list[nodes.Node] = []
    for i, part in enumerate(text.split("**")):
        if part:
            out.append(nodes.strong(part, part) if i % 2 else nodes.Text(part))
    return out


def on_doctree_resolved(app: Sphinx, doctree, docname: str) -> None:
    placeholders = list(doctree.findall(build_info))
    if not placeholders:
        return
    commit = _git("rev-parse", "--short", "HEAD")
    head = f"This build: version {app.config.release}"
    head += f", commit {commit}" if commit else ""
    head += f", built {date.today().isoformat()}. "
    para = nodes.paragraph("", "", *_inline(head + " ".join(summary_sentences(app.env))), classes=["lossbook-build"])
    for node in placeholders:
        node.replace_self(para.deepcopy())


def on_config_inited(app: Sphinx, config) -> None:
    # Jupyter Book sets only html_title from `title:`; the PDF's file name and the BibTeX entry use `project`.
    if config.html_title and "project" not in config._raw_config:
        config.project = config.html_title
    version = book_version()
    config.version = config.release = version
    commit = _git("rev-parse", "--short", "HEAD")
    footer = f"Version {version}" + (f" (commit {commit})" if commit else "")
    options = dict(config.html_theme_options or {})
    extra = options.get("extra_footer", "")
    options["extra_footer"] = f"<p>{footer}. {extra}</p>" if extra else f"<p>{footer}.</p>"
    config.html_theme_options = options
    # Without a default, pydata-sphinx-theme logs "Got invalid theme mode" as a console error on a first visit.
    config.html_context = {"default_mode": "auto", **(config.html_context or {})}


def on_page_context(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    if doctree is not None and pagename in app.env.found_docs:
        source = Path(app.env.doc2path(pagename))
        try:
            rel = source.resolve().relative_to(ROOT).as_posix()
        except ValueError:
            rel = ""
        committed = last_commit_date(rel) if rel else ""
        if committed and context.get("last_updated"):
            context["last_updated"] = committed
    # MathJax (2 MB) only on pages with math: Sphinx also loads it on a page whose toctree includes pages
    # with math (the landing page), where nothing is typeset.
    no_math = 'class="math' not in context.get("body", "") and "mjx" not in context.get("body", "")
    scripts, seen = [], set()
    for script in context.get("script_files", []):
        filename = str(getattr(script, "filename", script) or "")
        if no_math and ("mathjax" in filename.lower() or "MathJax" in str(getattr(script, "attributes", ""))):
            continue
        key = (filename, tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            scripts.append(script)
    if "script_files" in context:
        context["script_files"][:] = scripts


FONTAWESOME_JS = re.compile(r'\s*<script src="[^"]*_static/vendor/fontawesome/[^"]*/js/all\.min\.js[^"]*"></script>')


def drop_fontawesome_js(app: Sphinx, exception: Exception | None) -> None:
    """Remove FontAwesome's 1.5 MB script from every page: the theme also loads its CSS and web fonts, which
    draw the same icons, so the script only swapped them for SVGs. (Written into the theme's template, so
    it is removed from the written pages.)"""
    if exception is not None or app.builder.format != "html":
        return
    for page in Path(app.outdir).rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        cut = FONTAWESOME_JS.sub("", text)
        if cut != text:
            page.write_text(cut, encoding="utf-8")


def setup(app: Sphinx) -> dict:
    app.add_node(build_info)
    app.add_directive("lossbook-build-info", BuildInfoDirective)
    app.add_directive("lossbook-bibtex", BibtexDirective)
    app.connect("config-inited", on_config_inited)
    app.connect("doctree-read", on_doctree_read)
    app.connect("env-purge-doc", on_purge)
    app.connect("env-merge-info", on_merge)
    app.connect("doctree-resolved", on_doctree_resolved)
    app.connect("html-page-context", on_page_context, priority=900)
    app.connect("build-finished", drop_fontawesome_js)  # after the theme's handlers add scripts
    return {"parallel_read_safe": True, "parallel_write_safe": True, "env_version": 2}
