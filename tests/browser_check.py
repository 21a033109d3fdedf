"""Open every page of the built book in headless Chromium and fail on what a reader would see broken.

Usage: python tests/browser_check.py BUILD_HTML_DIR [--screenshots DIR] [--browser PATH]

For each HTML page (served from 127.0.0.1, external requests blocked as on an offline machine):
- an executed cell that shows an error output or a Python traceback;
- an image that does not load;
- an internal link (or #anchor) that points nowhere;
- math left as raw TeX (MathJax must typeset it from the book's own _static/, without internet);
- on notebook pages: the Colab and Binder launch buttons must be present.
A full-page screenshot of each page is saved. Exit status 1 if any page fails.

The browser: ``--browser PATH``, else ``$CHROME_PATH``, else the first of ``chromium`` (Debian),
``chromium-browser``, ``google-chrome`` / ``google-chrome-stable`` (GitHub's hosted Ubuntu runners)
and ``chrome`` on the PATH, else the Chromium that ``playwright install chromium`` downloaded.
"""

from __future__ import annotations

import argparse
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
  out.title = document.title;
  return out;
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


def run_checks(root: Path, shots: Path, browser_path: str | None = None) -> list[str]:
    """Check every page under ``root``; print a line per page and return the list of problems."""
    pages = sorted(p for p in root.rglob("*.html") if not SKIP_DIRS.intersection(p.relative_to(root).parts))
    if not pages:
        return [f"no HTML pages under {root}"]
    shots.mkdir(parents=True, exist_ok=True)
    server, base = _serve(root)
    failures: list[str] = []
    blocked: set[str] = set()
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
            context = browser.new_context(viewport={"width": 1280, "height": 900})

            def route(r):
                if r.request.url.startswith(base) or r.request.url.startswith("data:"):
                    r.continue_()
                else:
                    blocked.add(urlparse(r.request.url).netloc)
                    r.abort()

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
                page = context.new_page()
                bad_responses: list[str] = []
                page.on("response", lambda r, bad=bad_responses: r.status >= 400 and r.url.startswith(base)
                        and bad.append(f"{r.status} {r.url[len(base):]}"))
                page.goto(base + rel, wait_until="load")
                info = page.evaluate(PAGE_PROBE)
                problems = [f"error output: {e!r}" for e in info["errors"]]
                problems += [f"traceback: {t!r}" for t in info["tracebacks"]]
                problems += [f"broken image: {s}" for s in info["brokenImages"]]
                problems += [f"HTTP {r}" for r in bad_responses]
                problems += [f"untypeset math: {m!r}" for m in info["untypeset"]]
                raw = RAW_TEX.search(info["text"])
                if raw:
                    start = max(raw.start() - 40, 0)
                    problems.append(f"raw TeX in text: {info['text'][start:raw.end() + 40]!r}")
                problems += sorted({p for h in info["links"] if (p := _check_link(root, base, page_path, h))})
                if info["isNotebook"] and info["figureCount"] == 0:
                    problems.append("notebook page without any rendered figure (a non-inline matplotlib backend?)")
                if info["isNotebook"] and not (info["colab"] and info["binder"]):
                    problems.append("notebook page without Colab and Binder launch buttons")
                shot = shots / (rel.replace("/", "__").removesuffix(".html") + ".png")
                page.screenshot(path=str(shot), full_page=True)
                status = "FAIL" if problems else "ok"
                print(f"{status:4s} {rel}: {info['figureCount']} figures, {info['mathCount']} math, "
                      f"{len(info['links'])} links, {len(info['stderr'])} stderr outputs -> {shot.name}")
                failures += [f"{rel}: {p}" for p in problems]
                page.close()
            browser.close()
    finally:
        server.shutdown()
    if blocked:
        print(f"external hosts requested (blocked, as offline): {', '.join(sorted(blocked))}")
    print(f"{len(pages)} pages checked, {len(failures)} problems")
    for f in failures:
        print("  " + f)
    return failures


SELF_TEST_PAGES = {
    "good.html": '<main><p>fine</p><a href="bad.html#here">x</a><img src="pixel.png"></main>',
    "bad.html": '<main id="here"><p>raw \\frac{a}{b} left here</p><img src="missing.png">'
    '<a href="nowhere.html">x</a><a href="good.html#nope">y</a>'
    '<div class="cell"><div class="cell_output"><div class="output traceback">Traceback (most recent call last):'
    "</div></div></div></main>",
}
SELF_TEST_EXPECTED = [
    "bad.html: error output",
    "bad.html: traceback",
    "bad.html: broken image: missing.png",
    "bad.html: raw TeX in text",
    "bad.html: link to missing nowhere.html",
    "bad.html: link to missing anchor good.html#nope",
    "bad.html: notebook page without any rendered figure",
    "bad.html: notebook page without Colab and Binder launch buttons",
]


def self_test(tmp: Path, browser_path: str | None = None) -> int:
    """Check the checker: a fake site with one clean and one broken page must give exactly the
    expected problems (so a checker that silently passes everything fails CI)."""
    import base64

    site = tmp / "site"
    site.mkdir(parents=True, exist_ok=True)
    for name, body in SELF_TEST_PAGES.items():
        (site / name).write_text(f"<!doctype html><html><head><title>{name}</title></head><body>{body}</body></html>")
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
    failures = run_checks(args.html.resolve(), args.screenshots, browser_path)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
