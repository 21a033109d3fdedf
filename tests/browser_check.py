"""Open every page of the built book in headless Chromium and fail on what a reader would see broken.

Usage: python tests/browser_check.py BUILD_HTML_DIR [--screenshots DIR] [--browser PATH]

Every HTML page is served from 127.0.0.1 (external requests blocked, as on an offline machine) and
opened at 1366 x 900 (a laptop) and at 400 px wide (a phone: mobile emulation, touch). A page fails on
- an executed cell that shows an error output or a Python traceback;
- a warning (``UserWarning:``, ``FutureWarning:``, ...) or a temporary path (``/tmp/...``,
  ``<ipykernel ...>``) in a cell's output: build machinery that leaked onto the page;
- a code cell or an output wider than its box at 1366 px (the reader would have to scroll it, and
  print cuts it off), collapsed cells opened first;
- a page wider than the screen at 400 px (the whole page pans sideways on a phone);
- a console error or an uncaught exception, at either width;
- a figure without a caption, or whose alt text is empty or a file name; a table without a caption;
- an image that does not load; an internal link (or #anchor) that points nowhere;
- math left as raw TeX (MathJax must typeset it from the book's own _static/, without internet), and
  raw TeX in a link's text (``\\ln C`` copied from a section title);
- on notebook pages: the Colab and Binder launch buttons must be present.
On the first prose page and the first notebook page, the primary sidebar's toggle must work: at 400 px
it opens the sidebar and closes it again, at 1366 px it hides the sidebar and shows it again.
Full-page screenshots of each page at both widths are saved (and of the opened mobile sidebar).
Exit status 1 if any page fails.

The browser: ``--browser PATH``, else ``$CHROME_PATH``, else the first of ``chromium`` (Debian),
``chromium-browser``, ``google-chrome`` / ``google-chrome-stable`` (GitHub's hosted Ubuntu runners)
and ``chrome`` on the PATH, else the Chromium that ``playwright install chromium`` downloaded.
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import http.server
import os
import re
import shutil
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urlparse

from playwright.sync_api import sync_playwright

SKIP_DIRS = {"_static", "_sources", "_images", "_sphinx_design_static", "_panels_static"}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
REDIRECT = re.compile(r'<meta http-equiv="Refresh" content="0; url=([^"]+)"', re.I)
RAW_TEX = re.compile(r"\\(frac|sum|mathbb|mathrm|operatorname|left|right|partial|log|exp)\b|\$\$")
RAW_TEX_IN_LINK = re.compile(r"\\[A-Za-z]+|\$")
# Build machinery that must not reach a reader: Python warnings and temporary paths in cell outputs.
OUTPUT_WARNING = re.compile(r"\b[A-Z]\w*Warning: ")
TEMP_PATH = re.compile(r"(?<![\w.])/tmp/\S*|/var/folders/\S+|\\AppData\\Local\\Temp\S*|<ipykernel[^>]*>")
# alt text that is only a file name or a path, as Sphinx writes when a figure has none
FILENAME_ALT = re.compile(r"^\S*[/\\]\S*$|^\S+\.(png|jpe?g|svg|gif|webp)$", re.I)
MATHJAX_DONE = "async () => { if (window.MathJax && MathJax.startup) await MathJax.startup.promise; }"
DESKTOP = {"width": 1366, "height": 900}
MOBILE = {"width": 400, "height": 860}

PAGE_PROBE = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  const out = {};
  out.errors = Array.from(document.querySelectorAll(
      '.cell_output .output.traceback, .cell_output .output.error, .cell_output [class*="ipythontb"]'))
      .map(e => e.innerText.slice(0, 300));
  out.tracebacks = Array.from(document.querySelectorAll('.cell_output'))
      .map(e => e.innerText).filter(t => t.includes('Traceback (most recent call last)'))
      .map(t => t.slice(0, 300));
  out.stderr = Array.from(document.querySelectorAll('.cell_output .output.stderr'))
      .map(e => e.innerText.slice(0, 200));
  out.brokenImages = Array.from(document.images)
      .filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.getAttribute('src'));
  out.imageCount = document.images.length;
  out.figureCount = Array.from(document.querySelectorAll('.cell_output img')).length;
  out.links = Array.from(document.querySelectorAll('a[href]')).map(a => a.href);
  const maths = Array.from(document.querySelectorAll('.math'));
  out.mathCount = maths.length;
  out.untypeset = maths.filter(m => !m.querySelector('mjx-container')).map(m => m.innerText.slice(0, 80));
  const main = document.querySelector('main') || document.body;
  const clone = main.cloneNode(true);
  clone.querySelectorAll('pre, code, .highlight, mjx-container, script, style, .cell_output').forEach(e => e.remove());
  out.text = clone.innerText;
  out.colab = Array.from(document.querySelectorAll('a[href*="colab.research.google.com"]')).map(a => a.href);
  out.binder = Array.from(document.querySelectorAll('a[href*="mybinder.org"]')).map(a => a.href);
  out.isNotebook = !!document.querySelector('.cell');
  out.plots = Array.from(document.querySelectorAll('.cell_input'))
      .some(e => ['plt.', '.plot(', '.imshow('].some(k => e.innerText.includes(k)));
  out.title = document.title;
  const outputs = Array.from(document.querySelectorAll('.cell_output')).map(e => e.innerText);
  out.outputText = outputs.join('\\n');
  out.rawTexLinks = Array.from(document.querySelectorAll('main a, article a'))
      .filter(a => !a.querySelector('mjx-container, code')).map(a => a.innerText.trim());
  const content = document.querySelector('article.bd-article, article') || document.querySelector('main')
                  || document.body;
  out.figures = Array.from(content.querySelectorAll('img'))
      .filter(img => !img.closest('.bd-sidebar, .bd-header, .bd-header-article, header, nav, .navbar-brand, '
                                  + '.dropdown, .btn, button'))
      .map(img => {
        const fig = img.closest('figure, .figure');
        const cap = fig && fig.querySelector('figcaption, .caption');
        return {src: img.getAttribute('src'), alt: (img.getAttribute('alt') || '').trim(),
                caption: cap ? cap.innerText.trim() : ''};
      });
  out.tables = Array.from(content.querySelectorAll('table'))
      .filter(t => !t.closest('.highlight, .indextable, .bd-sidebar, .footnote, .citation')
                   && !t.classList.contains('indextable'))
      .map(t => {
        const cap = t.querySelector('caption');
        const fig = t.closest('figure, .figure, .table-wrapper');
        const other = fig && fig.querySelector('figcaption, .caption');
        return {caption: ((cap && cap.innerText) || (other && other.innerText) || '').trim(),
                head: t.innerText.trim().slice(0, 60)};
      });
  return out;
}"""

# Opens every collapsed cell, then lists the code and output boxes whose content is wider than the box.
OVERFLOW_PROBE = """() => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  const wide = (e) => e.scrollWidth > e.clientWidth + 1 && e.clientWidth > 0;
  const longest = (e) => (e.innerText || '').split('\\n').reduce((a, b) => (b.length > a.length ? b : a), '');
  const report = (e, kind) => ({kind, excess: e.scrollWidth - e.clientWidth, line: longest(e).slice(0, 90)});
  const code = Array.from(document.querySelectorAll('.cell_input pre, .cell_input .highlight'))
      .filter(wide).map(e => report(e, 'code'));
  const outputs = Array.from(document.querySelectorAll('.cell_output pre, .cell_output > .output, .cell_output table'))
      .filter(e => wide(e) || (e.tagName === 'TABLE' && e.getBoundingClientRect().width
                                 > e.closest('.cell_output').getBoundingClientRect().width + 1))
      .map(e => report(e, 'output'));
  return code.concat(outputs);
}"""

# At a phone's width: is the page wider than the screen, and which element sticks out furthest?
PAGE_WIDTH_PROBE = """() => {
  const width = document.documentElement.clientWidth;
  const total = document.documentElement.scrollWidth;
  let worst = null;
  if (total > width + 1) {
    const clipped = (e) => {  // inside a box that scrolls or clips: not what widens the page
      for (let a = e.parentElement; a && a !== document.body; a = a.parentElement) {
        if (getComputedStyle(a).overflowX !== 'visible') return true;
      }
      return false;
    };
    for (const e of document.querySelectorAll('main *')) {
      const r = e.getBoundingClientRect();
      if (r.right > width + 1 && (!worst || r.right > worst.right) && getComputedStyle(e).position !== 'fixed'
          && !clipped(e)) {
        worst = {right: Math.round(r.right), tag: e.tagName.toLowerCase(), text: (e.innerText || '').slice(0, 60)};
      }
    }
  }
  return {width, total, worst};
}"""

# The primary sidebar: is it on screen? (PST/sphinx-book-theme's .bd-sidebar-primary, or #pst-primary-sidebar)
SIDEBAR_STATE = """() => {
  const bar = document.querySelector('#pst-primary-sidebar, .bd-sidebar-primary');
  if (!bar) return {exists: false, open: false};
  const r = bar.getBoundingClientRect();
  const style = getComputedStyle(bar);
  const open = style.display !== 'none' && style.visibility !== 'hidden' && r.width > 40 && r.right > 40
               && r.left > -5 && r.left < window.innerWidth - 40;
  return {exists: true, open};
}"""

# The visible primary-sidebar toggle, as a selector-free handle: its centre on screen.
TOGGLE_PROBE = """() => {
  const visible = Array.from(document.querySelectorAll(
      '.primary-toggle, label[for="__primary"], button[aria-label*="primary sidebar" i]'))
    .filter(e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0
                   && getComputedStyle(e).visibility !== 'hidden'; });
  if (!visible.length) return null;
  const r = visible[0].getBoundingClientRect();
  const x = r.left + r.width / 2, y = r.top + r.height / 2;
  const top = document.elementFromPoint(x, y);
  return {x, y, onTop: !!top && (visible[0] === top || visible[0].contains(top) || top.contains(visible[0]))};
}"""


def find_browser(explicit: str | None = None) -> str | None:
    """The Chromium-family executable to drive (see the module docstring); None means playwright's own."""
    for candidate in (explicit, os.environ.get("CHROME_PATH")):
        if candidate:
            found = shutil.which(candidate) or (candidate if Path(candidate).is_file() else None)
            if not found:
                raise FileNotFoundError(f"browser {candidate!r} not found")
            return found
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the CI log readable
        pass


@functools.cache
def _ids(path: Path) -> frozenset[str]:
    return frozenset(re.findall(r'\bid="([^"]+)"', path.read_text(errors="replace")))


def _check_link(root: Path, base: str, page: Path, href: str) -> str | None:
    """Return a problem description for a broken internal link, else None."""
    if not href.startswith(base):
        return None  # external: not checked offline
    parsed = urlparse(href)
    rel = unquote(parsed.path[len(urlparse(base).path):])
    target = root / rel if rel else page
    if target.is_dir():
        target = target / "index.html"
    if not target.exists():
        return f"link to missing {rel}"
    if parsed.fragment and target.suffix == ".html" and parsed.fragment not in _ids(target):
        return f"link to missing anchor {rel or page.name}#{parsed.fragment}"
    return None


def content_problems(info: dict) -> list[str]:
    """What PAGE_PROBE found wrong on one page (at the desktop width)."""
    problems = [f"error output: {e!r}" for e in info["errors"]]
    problems += [f"traceback: {t!r}" for t in info["tracebacks"]]
    problems += [f"broken image: {s}" for s in info["brokenImages"]]
    problems += [f"untypeset math: {m!r}" for m in info["untypeset"]]
    raw = RAW_TEX.search(info["text"])
    if raw:
        start = max(raw.start() - 40, 0)
        problems.append(f"raw TeX in text: {info['text'][start:raw.end() + 40]!r}")
    for text in info["rawTexLinks"]:
        if tex := RAW_TEX_IN_LINK.search(text):
            problems.append(f"raw TeX in link text: {text[max(tex.start() - 60, 0) : tex.end() + 20]!r}")
    for pattern, what in ((OUTPUT_WARNING, "warning in output"), (TEMP_PATH, "temporary path in output")):
        for hit in sorted({m.group(0) for m in pattern.finditer(info["outputText"])})[:3]:
            line = next(x for x in info["outputText"].splitlines() if hit in x)
            problems.append(f"{what}: {line.strip()[:120]!r}")
    for fig in info["figures"]:
        if not fig["caption"]:
            problems.append(f"figure without caption: {fig['src']}")
        if not fig["alt"] or FILENAME_ALT.match(fig["alt"]):
            problems.append(f"figure whose alt text is a file name or empty: {fig['src']} (alt={fig['alt']!r})")
    problems += [f"table without caption: {t['head']!r}" for t in info["tables"] if not t["caption"]]
    if info["isNotebook"] and info["plots"] and info["figureCount"] == 0:  # it plots, nothing shows
        problems.append("notebook page without any rendered figure (a non-inline matplotlib backend?)")
    if info["isNotebook"] and not (info["colab"] and info["binder"]):
        problems.append("notebook page without Colab and Binder launch buttons")
    return problems


def check_toggle(page, width: int, shot: Path) -> list[str]:
    """Click the primary sidebar's toggle twice; the sidebar must change state each time.

    Phone width: closed, then open (screenshot), then closed again (by the toggle, or by the overlay
    when the opened sidebar covers the toggle, as the theme intends). Laptop width: open, hidden, open.
    """
    where = f"sidebar toggle at {width} px"
    state = page.evaluate(SIDEBAR_STATE)
    toggle = page.evaluate(TOGGLE_PROBE)
    if not state["exists"]:
        return [f"{where}: no primary sidebar on the page"]
    if toggle is None:
        return [f"{where}: no visible toggle button"]
    before = state["open"]
    page.mouse.click(toggle["x"], toggle["y"])
    page.wait_for_timeout(1000)  # the theme animates the sidebar
    after = page.evaluate(SIDEBAR_STATE)["open"]
    if after == before:
        return [f"{where}: clicking it does not {'hide' if before else 'open'} the sidebar"]
    if after:
        page.screenshot(path=str(shot))
    toggle = page.evaluate(TOGGLE_PROBE)
    if toggle and toggle["onTop"]:
        page.mouse.click(toggle["x"], toggle["y"])
    else:  # the opened drawer covers the toggle: click the overlay beside it
        page.mouse.click(page.viewport_size["width"] - 8, page.viewport_size["height"] // 2)
    page.wait_for_timeout(1000)  # the theme animates the sidebar
    if page.evaluate(SIDEBAR_STATE)["open"] != before:
        undone = "close" if after else "come back"
        return [f"{where}: the sidebar {'opens' if after else 'hides'} but does not {undone}"]
    return []


def _watch(page, base: str, sink: list[str]) -> None:
    """Collect console errors, uncaught exceptions and failed same-site requests of ``page`` into ``sink``."""

    def on_console(msg):
        if msg.type != "error":
            return
        url = (msg.location or {}).get("url", "")
        if "net::ERR_FAILED" in msg.text and url and not url.startswith(base):
            return  # an external request this check blocked on purpose (offline)
        sink.append(f"console error: {msg.text[:160]}")

    page.on("console", on_console)
    page.on("pageerror", lambda err: sink.append(f"uncaught exception: {str(err)[:160]}"))
    page.on("response", lambda r: r.status >= 400 and r.url.startswith(base)
            and sink.append(f"HTTP {r.status} {r.url[len(base):]}"))


def run_checks(root: Path, shots: Path, browser_path: str | None = None, only: str | None = None) -> list[str]:
    """Check every page under ``root`` (or those matching the glob ``only``); print a line per page and
    return the list of problems."""
    pages = sorted(p for p in root.rglob("*.html") if not SKIP_DIRS.intersection(p.relative_to(root).parts))
    if only:
        pages = [p for p in pages if fnmatch.fnmatch(p.relative_to(root).as_posix(), only)]
    if not pages:
        return [f"no HTML pages under {root}"]
    (shots / "mobile").mkdir(parents=True, exist_ok=True)
    server, base = _serve(root)
    failures: list[str] = []
    blocked: set[str] = set()
    toggled: set[bool] = set()  # page kinds (notebook or not) whose sidebar toggle was tried
    try:
        with sync_playwright() as pw:
            try:
                browser = pw.chromium.launch(executable_path=browser_path, args=CHROMIUM_ARGS)
            except Exception as err:  # playwright's own browser missing, or the one given does not start
                raise SystemExit(
                    f"cannot start a browser ({browser_path or 'playwright chromium'}): {err}\n"
                    "Install Chromium (Debian: apt-get install chromium), set CHROME_PATH, "
                    "or run `python -m playwright install chromium`."
                ) from None
            desktop = browser.new_context(viewport=DESKTOP)
            mobile = browser.new_context(viewport=MOBILE, is_mobile=True, has_touch=True, device_scale_factor=1)

            def route(r):
                if r.request.url.startswith(base) or r.request.url.startswith("data:"):
                    r.continue_()
                else:
                    blocked.add(urlparse(r.request.url).netloc)
                    r.abort()

            for context in (desktop, mobile):
                context.route("**/*", route)
            for page_path in pages:
                rel = page_path.relative_to(root).as_posix()
                redirect = REDIRECT.search(page_path.read_text(errors="replace"))
                if redirect:  # e.g. the root index.html that jupyter-book writes: check its target only
                    target = (page_path.parent / redirect.group(1)).resolve()
                    ok = target.is_file()
                    print(f"{'ok' if ok else 'FAIL':4s} {rel}: redirect to {redirect.group(1)}")
                    if not ok:
                        failures.append(f"{rel}: redirect to missing {redirect.group(1)}")
                    continue
                name = rel.replace("/", "__").removesuffix(".html")
                # laptop width: content, overflow of code and outputs, links
                page = desktop.new_page()
                problems: list[str] = []
                _watch(page, base, problems)
                page.goto(base + rel, wait_until="load")
                info = page.evaluate(PAGE_PROBE)
                problems += content_problems(info)
                problems += sorted({p for h in info["links"] if (p := _check_link(root, base, page_path, h))})
                shot = shots / f"{name}.png"
                page.screenshot(path=str(shot), full_page=True)
                wide = page.evaluate(OVERFLOW_PROBE)
                for w in wide[:5]:
                    problems.append(f"{w['kind']} wider than its box by {w['excess']} px: {w['line']!r}")
                if len(wide) > 5:
                    problems.append(f"... and {len(wide) - 5} more code or output boxes wider than their box")
                try_toggle = info["isNotebook"] not in toggled
                if try_toggle:
                    problems += check_toggle(page, DESKTOP["width"], shots / f"nav-{name}-desktop-toggled.png")
                page.close()
                # phone width: the page fits the screen, the sidebar opens, no console errors
                page = mobile.new_page()
                phone: list[str] = []
                _watch(page, base, phone)
                page.goto(base + rel, wait_until="load")
                page.evaluate(MATHJAX_DONE)
                fit = page.evaluate(PAGE_WIDTH_PROBE)
                if fit["total"] > fit["width"] + 1:
                    worst = fit["worst"] or {}
                    phone.append(f"page wider than the viewport at {MOBILE['width']} px: {fit['total']} px "
                                 f"(furthest: <{worst.get('tag')}> to {worst.get('right')} px, "
                                 f"{worst.get('text', '')!r})")
                page.screenshot(path=str(shots / "mobile" / f"{name}.png"), full_page=True)
                if try_toggle:
                    phone += check_toggle(page, MOBILE["width"], shots / f"nav-{name}-mobile-open.png")
                    toggled.add(info["isNotebook"])
                page.close()
                problems = list(dict.fromkeys(problems + phone))  # the same problem seen at both widths once
                status = "FAIL" if problems else "ok"
                print(f"{status:4s} {rel}: {info['figureCount']} figures, {info['mathCount']} math, "
                      f"{len(info['links'])} links, {len(info['stderr'])} stderr outputs -> {shot.name}")
                failures += [f"{rel}: {p}" for p in problems]
            browser.close()
    finally:
        server.shutdown()
    if blocked:
        print(f"external hosts requested (blocked, as offline): {', '.join(sorted(blocked))}")
    print(f"{len(pages)} pages checked, {len(failures)} problems")
    for f in failures:
        print("  " + f)
    return failures


# A fake two-page site. good.html is what a page should be: a sidebar whose toggle works at both
# widths, a captioned figure with real alt text, a captioned table. bad.html plants one of each
# problem the check must report (the 130-character line is issue 23's "break it on purpose").
_SIDEBAR_CSS = (
    "<style>body{margin:0} main{max-width:700px;margin-left:260px} pre{overflow:auto}"
    ".bd-sidebar-primary{position:fixed;left:0;top:0;width:250px;height:100%;background:#eee}"
    ".primary-toggle{position:fixed;right:10px;top:10px;width:40px;height:30px}"
    "@media (max-width:959px){main{margin-left:0} .bd-sidebar-primary{display:none}"
    " body.toggled .bd-sidebar-primary{display:block}}"
    "@media (min-width:960px){body.toggled .bd-sidebar-primary{display:none}}</style>"
)
_WORKING_TOGGLE = (
    '<div class="bd-sidebar-primary">contents</div><button class="primary-toggle" '
    "onclick=\"document.body.classList.toggle('toggled')\">=</button>"
)
_DEAD_TOGGLE = '<div class="bd-sidebar-primary">contents</div><button class="primary-toggle">=</button>'
_LONG_LINE = "x = " + "1 + " * 31 + "1"  # 130 characters
SELF_TEST_PAGES = {
    "good.html": _SIDEBAR_CSS + _WORKING_TOGGLE + '<main><p>fine</p><a href="bad.html#here">x</a>'
    '<figure><img src="pixel.png" alt="A single grey pixel."><figcaption>Figure 1: a pixel.</figcaption></figure>'
    "<table><caption>Table 1: one cell.</caption><tr><td>1</td></tr></table></main>",
    "bad.html": _SIDEBAR_CSS + _DEAD_TOGGLE + '<main id="here"><p>raw \\frac{a}{b} left here</p>'
    '<img src="missing.png"><img src="pixel.png" alt="_images/95b8.png">'
    '<a href="nowhere.html">x</a><a href="good.html#nope">y</a><a href="good.html">the \\ln C check</a>'
    "<table><tr><td>uncaptioned</td></tr></table>"
    '<div style="width:620px;height:4px"></div>'
    '<div class="cell"><div class="cell_input"><pre>' + _LONG_LINE + "\nplt.show()</pre></div>"
    '<div class="cell_output"><div class="output traceback">Traceback (most recent call last):</div>'
    '<pre>/tmp/ipykernel_1/123.py:17: FutureWarning: planted\nwrote /tmp/tmpab12/cifar10_demo.json</pre>'
    "<pre>" + "y" * 200 + "</pre></div></div>"
    "<script>console.error('planted console error')</script></main>",
}
SELF_TEST_EXPECTED = [
    "bad.html: error output",
    "bad.html: traceback",
    "bad.html: broken image: missing.png",
    "bad.html: raw TeX in text",
    "bad.html: raw TeX in link text",
    "bad.html: link to missing nowhere.html",
    "bad.html: link to missing anchor good.html#nope",
    "bad.html: notebook page without any rendered figure",
    "bad.html: notebook page without Colab and Binder launch buttons",
    "bad.html: warning in output",
    "bad.html: temporary path in output",
    "bad.html: figure without caption",
    "bad.html: figure whose alt text is a file name",
    "bad.html: table without caption",
    "bad.html: code wider than its box",
    "bad.html: output wider than its box",
    "bad.html: console error",
    "bad.html: HTTP 404",
    f"bad.html: page wider than the viewport at {MOBILE['width']} px",
    f"bad.html: sidebar toggle at {DESKTOP['width']} px",
    f"bad.html: sidebar toggle at {MOBILE['width']} px",
]


def self_test(tmp: Path, browser_path: str | None = None) -> int:
    """Check the checker: a fake site with one clean and one broken page must give exactly the
    expected problems (so a checker that silently passes everything fails CI)."""
    import base64

    site = tmp / "site"
    site.mkdir(parents=True, exist_ok=True)
    for name, body in SELF_TEST_PAGES.items():
        head = f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{name}</title>'
        (site / name).write_text(f"<!doctype html><html><head>{head}</head><body>{body}</body></html>")
    (site / "pixel.png").write_bytes(base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="))
    found = run_checks(site, tmp / "shots", browser_path)
    missing = [e for e in SELF_TEST_EXPECTED if not any(f.startswith(e) for f in found)]
    unexpected = [f for f in found if not f.startswith("bad.html")]
    if missing or unexpected:
        print(f"SELF-TEST FAILED: missing {missing}, unexpected {unexpected}")
        return 1
    print(f"self-test ok: the {len(SELF_TEST_EXPECTED)} planted problems were all reported")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path, nargs="?", help="the built HTML folder, e.g. _build/html")
    parser.add_argument("--screenshots", type=Path, default=Path("_build/screenshots"), help="where to save PNGs")
    parser.add_argument("--self-test", action="store_true", help="first check that planted problems are caught")
    parser.add_argument("--browser", help="Chromium/Chrome executable (default: $CHROME_PATH, then the PATH)")
    parser.add_argument("--only", help="check only the pages whose path matches this glob, e.g. 'book/*'")
    args = parser.parse_args()
    browser_path = find_browser(args.browser)
    print(f"browser: {browser_path or 'playwright chromium'}")
    if args.self_test:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            if self_test(Path(tmp), browser_path):
                return 1
    if args.html is None:
        return 0 if args.self_test else parser.error("give the HTML folder (or --self-test)")
    failures = run_checks(args.html.resolve(), args.screenshots, browser_path, args.only)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
