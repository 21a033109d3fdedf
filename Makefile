# The book's two commands (see README.md):
#   make book   build the HTML book, executing every notebook in full mode -> _build/html/
#   make test   unit tests + every notebook under nbval, in quick mode
# Both create .venv and install everything on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Data root: an explicit LOSSBOOK_DATA wins; else ../shared/data when it holds MNIST (this
# project's offline machines); else helpers.datasets falls back to ./data (downloaded on demand).
ifeq ($(strip $(LOSSBOOK_DATA)),)
ifneq ($(wildcard ../shared/data/MNIST/raw),)
export LOSSBOOK_DATA := $(abspath ../shared/data)
endif
endif

PYTEST_ARGS ?= -n 2 --dist loadscope --nbval-lax
BOOK_FLAGS  := -W -n --keep-going --builder html

.PHONY: venv test unit book book-quick check-html lint clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

test: $(STAMP)
	LOSSBOOK_QUICK=1 $(BIN)/python -m pytest $(PYTEST_ARGS) tests notebooks

unit: $(STAMP)
	LOSSBOOK_QUICK=1 $(BIN)/python -m pytest -n 2 tests

book: $(STAMP)
	LOSSBOOK_PROGRESS=0 $(BIN)/jupyter-book build . $(BOOK_FLAGS)
	@echo "Book built: open _build/html/index.html"

# CI's build: same sources, quick-mode execution, separate output (and execution cache).
book-quick: $(STAMP)
	LOSSBOOK_PROGRESS=0 LOSSBOOK_QUICK=1 $(BIN)/jupyter-book build . --path-output _build/quick $(BOOK_FLAGS)

check-html: $(STAMP)
	$(BIN)/python tests/browser_check.py --self-test $(or $(HTML),_build/html) --screenshots $(or $(SHOTS),_build/screenshots)

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf _build
