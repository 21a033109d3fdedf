# The book's two commands (see README.md):
#   make book   build the HTML book, executing every notebook in full mode -> _build/html/
#   make test   unit tests + every notebook under nbval, in quick mode
# Both create .venv and install everything on first use. No make (Windows)? README.md spells out
# the same steps with plain pip.
#
# CPU-only machines: `make venv TORCH_INDEX=https://download.pytorch.org/whl/cpu` installs torch and
# torchvision from PyTorch's CPU wheel index first (about 4 GB less than the default CUDA wheels).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH_INDEX ?=

# Data root: an explicit LOSSBOOK_DATA wins; else ../shared/data when it holds MNIST (this
# project's offline machines); else helpers.datasets falls back to ./data (downloaded on demand).
ifeq ($(strip $(LOSSBOOK_DATA)),)
ifneq ($(wildcard ../shared/data/MNIST/raw),)
export LOSSBOOK_DATA := $(abspath ../shared/data)
endif
endif

PYTEST_ARGS ?= -n 2 --dist loadscope --nbval-lax
BOOK_FLAGS  := -W -n --keep-going --builder html

.PHONY: venv test unit book book-quick pdf pdf-chapter check-html lint clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "This book needs Python 3.10 or newer; $(PYTHON) is " + sys.version.split()[0] + ". Run e.g. make PYTHON=python3.12 (macOS: the system python3 is 3.9; install one from python.org or Homebrew).")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(if $(strip $(TORCH_INDEX)),$(BIN)/python -m pip install -q torch torchvision --index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

test: $(STAMP)
	LOSSBOOK_QUICK=1 $(BIN)/python -m pytest $(PYTEST_ARGS) tests notebooks

unit: $(STAMP)
	LOSSBOOK_QUICK=1 $(BIN)/python -m pytest -n 2 tests

# Full mode, always (LOSSBOOK_QUICK=0: a small memory limit must not quietly switch the published book
# to quick mode). A chapter is re-executed when its notebook, the helpers modules it uses, the
# requirements, the library versions or the data source changed (tools/nb_fingerprint.py).
book: $(STAMP)
	LOSSBOOK_PROGRESS=0 LOSSBOOK_QUICK=0 $(BIN)/jupyter-book build . $(BOOK_FLAGS)
	@echo "Book built: open _build/html/index.html"

# CI's build: same sources, quick-mode execution, separate output (and execution cache).
book-quick: $(STAMP)
	LOSSBOOK_PROGRESS=0 LOSSBOOK_QUICK=1 $(BIN)/jupyter-book build . --path-output _build/quick $(BOOK_FLAGS)

# The whole book as a PDF, in full mode like `make book` (whose executed notebooks it reuses):
# _build/latex/lossbook.pdf. Needs TeX Live's xelatex and latexmk (`bash .ci/pdf.sh --install`).
pdf: $(STAMP)
	LOSSBOOK_QUICK=0 JB=$(BIN)/jupyter-book bash .ci/pdf.sh

# CI's cheap check of the PDF route: the landing and reference pages and one chapter, in quick mode,
# reusing `make book-quick`'s executed notebooks: _build/quick/_build/latex/lossbook.pdf.
# PDF_FLAGS=--install installs TeX Live first when it is missing (CI).
PDF_CHAPTER ?= notebooks/03_weighted_cross_entropy
PDF_FLAGS ?=
pdf-chapter: $(STAMP)
	LOSSBOOK_QUICK=1 JB=$(BIN)/jupyter-book bash .ci/pdf.sh $(PDF_FLAGS) --chapter $(PDF_CHAPTER) --out _build/quick

check-html: $(STAMP)
	$(BIN)/python tests/browser_check.py --self-test $(or $(HTML),_build/html) --screenshots $(or $(SHOTS),_build/screenshots)

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf _build
