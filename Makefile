# leanbits: `make demo` runs the main job end to end on MNIST, `make test` runs the tests.
# Both create .venv and install what they need (torch pinned to the CPU build by
# constraints.txt).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
BASE_STAMP := $(VENV)/.installed-base
DEV_STAMP  := $(VENV)/.installed-dev

.PHONY: demo test install dev lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(BASE_STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) install --quiet -c constraints.txt torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e .
	touch $@

$(DEV_STAMP): $(BASE_STAMP)
	$(PIP) install --quiet -c constraints.txt -e '.[dev]'
	touch $@

install: $(BASE_STAMP)

dev: $(DEV_STAMP)

demo: $(BASE_STAMP)
	$(BIN)/leanbits data fetch mnist
	$(BIN)/leanbits demo

test: $(DEV_STAMP)
	$(BIN)/lint-imports
	$(BIN)/leanbits data fetch mnist
	$(BIN)/python -m pytest

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports

bench: $(DEV_STAMP)
	$(BIN)/python benchmarks/train_overhead.py

clean:
	rm -rf $(VENV) runs .pytest_cache
