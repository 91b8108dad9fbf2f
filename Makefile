# Two commands for a newcomer: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test: pyproject.toml $(VENV)/.runtime
	$(BIN)/pip install -q -e '.[test]'
	touch $@

## demo: embedded broker + demo traffic + worker, with a live table of rooms (Ctrl-C stops)
demo: $(VENV)/.runtime
	$(BIN)/livepulse demo

## test: lint, unit tests, then integration tests on the embedded broker and a real worker
test: $(VENV)/.test lint
	$(BIN)/python -m pytest

lint: $(VENV)/.test
	$(BIN)/ruff check streams tests bench
	$(BIN)/ruff format --check streams tests bench

format: $(VENV)/.test
	$(BIN)/ruff format streams tests
	$(BIN)/ruff check --fix streams tests

clean:
	rm -rf $(VENV) state .pytest_cache .ruff_cache .hypothesis

## bench: ceiling vs textbook Faust vs LivePulse, then latency and memory (under 20 minutes)
bench: $(VENV)/.test
	$(BIN)/python -m bench.run

## bench-quick: the same on smaller inputs (under 5 minutes)
bench-quick: $(VENV)/.test
	$(BIN)/python -m bench.run --quick

.PHONY: bench bench-quick
