# Two commands on a fresh machine: `make run` and `make test`. Everything else is installed here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check
# the Node.js clients the interop tests run (configurable-http-proxy, @jupyter/ydoc, Yjs)
YJS_CLIENTS := tests/node/yjs/node_modules/.package-lock.json
NODE_TEST_CLIENTS := tests/node/chp/node_modules/.package-lock.json \
                     tests/node/ydoc/node_modules/.package-lock.json \
                     $(YJS_CLIENTS)

.PHONY: run test lint typecheck unit integration clean
.PHONY: bench-events bench-audit bench-api bench-spawn bench-collab

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

test: lint typecheck $(NODE_TEST_CLIENTS)
	$(BIN)/pytest

unit: $(VENV)/.installed-dev
	$(BIN)/pytest tests/unit

integration: $(VENV)/.installed-dev $(NODE_TEST_CLIENTS)
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

# JupyterLab's notebook model (@jupyter/ydoc) for the shared-execution interop tests (node >= 20)
tests/node/ydoc/node_modules/.package-lock.json: tests/node/ydoc/package.json tests/node/ydoc/package-lock.json
	npm ci --prefix tests/node/ydoc --no-audit --no-fund
	touch $@

# configurable-http-proxy, which the CHP adapter tests run (node >= 20)
tests/node/chp/node_modules/.package-lock.json: tests/node/chp/package.json tests/node/chp/package-lock.json
	npm install --prefix tests/node/chp --no-audit --no-fund
	touch $@

# spawn overhead and proxy throughput beside JupyterHub and configurable-http-proxy
bench-spawn: $(VENV)/.installed-bench bench/node_modules/.package-lock.json
	$(BIN)/python bench/spawn_proxy.py

# Real Yjs clients (yjs, y-websocket, ws) that the collab interop tests run (node >= 20)
$(YJS_CLIENTS): tests/node/yjs/package.json tests/node/yjs/package-lock.json
	npm ci --prefix tests/node/yjs --no-audit --no-fund
	touch $@

# The collab benchmark's Node peer (@y/websocket-server) and its client driver (ws, yjs)
bench/collab/node_modules/.package-lock.json: bench/collab/package.json bench/collab/package-lock.json
	npm ci --prefix bench/collab --no-audit --no-fund
	touch $@

bench-collab: $(VENV)/.installed-bench bench/collab/node_modules/.package-lock.json
	$(BIN)/python bench/collab_rooms.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
