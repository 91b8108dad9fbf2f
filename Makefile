# Two commands for a newcomer: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Pinned CLI tools in a venv of their own, apart from the project's dependencies:
# check-jsonschema (validates docker-compose.yml) and grafana-foundation-sdk (Python >= 3.11,
# generates the Grafana dashboard).
TOOLS  ?= .venv-tools
TOOLS_PINS := check-jsonschema==0.39.0 grafana-foundation-sdk==1769699379!11.6.0 pip-tools==7.6.2
COMPILE = $(TOOLS)/bin/pip-compile -q --strip-extras --no-emit-index-url --no-emit-find-links

.PHONY: demo test lint format clean dashboard lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Installs come from the lock files (every package pinned); pyproject.toml keeps the ranges.
# `make lock` resolves the ranges again.
$(VENV)/.runtime: pyproject.toml requirements.lock | $(BIN)/python
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

$(VENV)/.test: pyproject.toml requirements-test.lock $(VENV)/.runtime
	$(BIN)/pip install -q -r requirements-test.lock
	touch $@

$(TOOLS)/.done: Makefile
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q --upgrade pip
	$(TOOLS)/bin/pip install -q $(TOOLS_PINS)
	touch $@

## demo: embedded broker + demo traffic + worker, with a live table of rooms (Ctrl-C stops)
demo: $(VENV)/.runtime
	$(BIN)/livepulse demo

## test: lint, unit tests, then integration tests on the embedded broker and a real worker
test: $(VENV)/.test $(TOOLS)/.done lint
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder

lint: $(VENV)/.test
	$(BIN)/ruff check streams tests bench deploy
	$(BIN)/ruff format --check streams tests bench deploy

format: $(VENV)/.test
	$(BIN)/ruff format streams tests deploy
	$(BIN)/ruff check --fix streams tests deploy

## lock: resolve pyproject.toml's ranges again into requirements.lock and requirements-test.lock
lock: $(TOOLS)/.done
	$(COMPILE) --upgrade -o requirements.lock pyproject.toml
	$(COMPILE) --upgrade --extra test -o requirements-test.lock pyproject.toml

clean:
	rm -rf $(VENV) $(TOOLS) state .pytest_cache .ruff_cache .hypothesis

## dashboard: regenerate deploy/grafana/dashboards/livepulse.json from deploy/grafana/dashboard.py
dashboard: $(TOOLS)/.done
	$(TOOLS)/bin/python deploy/grafana/dashboard.py

## bench: ceiling vs textbook Faust vs LivePulse, then latency and memory (under 20 minutes)
bench: $(VENV)/.test
	$(BIN)/python -m bench.run

## bench-quick: the same on smaller inputs (under 5 minutes)
bench-quick: $(VENV)/.test
	$(BIN)/python -m bench.run --quick

.PHONY: bench bench-quick
