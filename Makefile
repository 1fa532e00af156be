# Two commands on a fresh machine: `make run` and `make test`. Everything else is installed here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check
YJS_CLIENTS := tests/node/yjs/node_modules/.package-lock.json

.PHONY: run test lint typecheck unit integration bench-events bench-audit bench-api bench-collab clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(PIP) -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[dev]'
	touch $@

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[dev,bench]'
	touch $@

run: $(VENV)/.installed-run
	$(BIN)/chronohub serve

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

test: lint typecheck $(YJS_CLIENTS)
	$(BIN)/pytest

unit: $(VENV)/.installed-dev
	$(BIN)/pytest tests/unit

integration: $(VENV)/.installed-dev $(YJS_CLIENTS)
	$(BIN)/pytest tests/integration

bench-events: $(VENV)/.installed-bench
	$(BIN)/python bench/event_store.py

bench-audit: $(VENV)/.installed-bench
	$(BIN)/python bench/audit.py

# configurable-http-proxy, which the JupyterHub that bench-api measures starts (node >= 20)
bench/node_modules/.package-lock.json: bench/package.json bench/package-lock.json
	npm install --prefix bench --no-audit --no-fund
	touch $@

bench-api: $(VENV)/.installed-bench bench/node_modules/.package-lock.json
	$(BIN)/python bench/rest_api.py

# Real Yjs clients (yjs, y-websocket, ws) that the collab interop tests run (node >= 20)
$(YJS_CLIENTS): tests/node/yjs/package.json tests/node/yjs/package-lock.json
	npm ci --prefix tests/node/yjs --no-audit --no-fund
	touch $@

# The collab benchmark's Node peer (@y/websocket-server) and its client driver (ws, yjs)
bench/collab/node_modules/.package-lock.json: bench/collab/package.json bench/collab/package-lock.json
	npm ci --prefix bench/collab --no-audit --no-fund
	touch $@

bench-collab: $(VENV)/.installed-bench bench/collab/node_modules/.package-lock.json
	$(BIN)/python bench/collab.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
