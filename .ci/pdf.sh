#!/usr/bin/env bash
# The book as a PDF: Jupyter Book's LaTeX builder (Sphinx's, with sphinx-jupyterbook-latex) and
# xelatex from TeX Live, on the same executed notebooks as the HTML (the execution cache is shared
# when --out is the HTML build's output folder).
#
#   bash .ci/pdf.sh [--install] [--chapter FILE] [--out DIR]
#
#   --install       install TeX Live with apt-get first when xelatex or latexmk is missing (Debian/Ubuntu;
#                   sudo when not root)
#   --chapter FILE  only the landing page, the reference pages and this chapter (e.g.
#                   notebooks/03_weighted_cross_entropy): CI's cheap check that the LaTeX route works
#   --out DIR       Jupyter Book's --path-output (default: the repository root, as `make book`)
#
# Mode: whatever LOSSBOOK_QUICK says (the Makefile's `pdf` target builds the full book, like `make book`).
# Prints the PDF's path, its page count and the build time; exits non-zero when no PDF was written.
set -euo pipefail
cd "$(dirname "$0")/.."

install=0 chapter="" out="." toc=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --install) install=1 ;;
    --chapter) chapter=$2; shift ;;
    --out) out=$2; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

if [[ $install -eq 1 ]] && ! { command -v xelatex && command -v latexmk && kpsewhich fncychap.sty && fc-list | grep -q DejaVuSansMono; } >/dev/null 2>&1; then
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends make latexmk \
    texlive-latex-recommended texlive-latex-extra texlive-fonts-recommended texlive-xetex \
    texlive-plain-generic tex-gyre fonts-freefont-otf fonts-dejavu-core lmodern
fi
command -v xelatex >/dev/null && command -v latexmk >/dev/null \
  || { echo "xelatex/latexmk not found: run bash .ci/pdf.sh --install (or install TeX Live)"; exit 1; }

JB=${JB:-.venv/bin/jupyter-book}
args=(build . --builder pdflatex --path-output "$out" --keep-going)
if [[ -n $chapter ]]; then
  toc=$(mktemp --suffix=.yml)
  cat >"$toc" <<YAML
format: jb-book
root: book/intro
parts:
  - caption: Getting started
    chapters:
      - file: book/setup
  - caption: Chapters
    numbered: true
    chapters:
      - file: ${chapter%.ipynb}
  - caption: Reference
    chapters:
      - file: book/notation
      - file: book/references
YAML
  args+=(--toc "$toc")
fi

# The HTML build's parsed pages (_build/.doctrees) hold the HTML choice of each output (a table as raw
# HTML, which LaTeX drops); Sphinx would reuse them as they are. Read every page afresh for LaTeX, from
# the same execution cache (nothing is re-executed), and put the HTML build's pages back afterwards.
doctrees="$out/_build/.doctrees"
rm -rf "$doctrees.html"
[[ -d $doctrees ]] && mv "$doctrees" "$doctrees.html"
restore() { rm -rf "$doctrees"; [[ -d $doctrees.html ]] && mv "$doctrees.html" "$doctrees"; [[ -z ${toc:-} ]] || rm -f "$toc"; }
trap restore EXIT

start=$SECONDS
LOSSBOOK_PROGRESS=0 "$JB" "${args[@]}"
latex="$out/_build/latex"
# Sphinx names the file after latex_documents (Jupyter Book's default: book.pdf); publish it as lossbook.pdf.
tex=$(ls -t "$latex"/*.tex 2>/dev/null | head -1)
built="${tex%.tex}.pdf"
[[ -n $tex && -s $built ]] || { echo "no PDF written (see the .log files in $latex)"; exit 1; }
pdf="$latex/lossbook.pdf"
[[ $built -ef $pdf ]] || cp "$built" "$pdf"
pages=$(grep -aoE 'Output written on [^ ]+ \(([0-9]+) pages?' "${tex%.tex}.log" | tail -1 | grep -oE '[0-9]+ page' | cut -d' ' -f1)
echo "PDF: $pdf, ${pages:-?} pages, $(du -h "$pdf" | cut -f1), built in $((SECONDS - start)) s"
