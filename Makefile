# Two commands on a fresh machine: `make run` and `make test`. Everything else is installed here.
# Users' servers and kernels run this environment's programs (jupyterhub-singleuser, ipykernel)
# as their own system accounts, so its interpreter must be one every account can run: pyenv's
# under /root (mode 0700) is not. Debian's python3.11 or newer is, where present.
PYTHON ?= $(firstword $(wildcard /usr/bin/python3.1[1-9]) python3)
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check
# the Node.js clients the interop tests run (configurable-http-proxy, @jupyter/ydoc, Yjs)
YJS_CLIENTS := tests/node/yjs/node_modules/.package-lock.json
NODE_TEST_CLIENTS := tests/node/chp/node_modules/.package-lock.json \
                     tests/node/ydoc/node_modules/.package-lock.json \
                     $(YJS_CLIENTS)

# Debian packages the tests use: Chromium, which the newcomer's-journey test drives through
# Playwright (a browser that Playwright would download is not to be had on every machine), and
# bubblewrap, the sandbox of a hub that is not root; nginx, PostgreSQL and logrotate, which the
# reference deployment in deploy/nginx/ uses and its test runs (Debian 12's postgresql is 15);
# ansible and ansible-lint (Debian's: the collections the playbook uses come with ansible) run
# and check the playbook of deploy/ansible/; docker-compose (Debian's) validates deploy/compose/
# (its `config` needs no Docker engine); OpenLDAP's slapd, the directory ldapauthenticator's
# test logs in against
DEBIAN_TOOLS := /usr/bin/chromium /usr/bin/bwrap /usr/sbin/nginx /usr/lib/postgresql/15/bin/initdb \
                /usr/sbin/logrotate /usr/bin/ansible-playbook /usr/bin/ansible-lint \
                /usr/bin/docker-compose /usr/sbin/slapd
/usr/bin/chromium: PACKAGE = chromium
/usr/bin/bwrap: PACKAGE = bubblewrap
/usr/sbin/nginx: PACKAGE = nginx
/usr/lib/postgresql/15/bin/initdb: PACKAGE = postgresql
/usr/sbin/logrotate: PACKAGE = logrotate
/usr/bin/docker-compose: PACKAGE = docker-compose
/usr/bin/ansible-playbook: PACKAGE = ansible
/usr/bin/ansible-lint: PACKAGE = ansible-lint
/usr/sbin/slapd: PACKAGE = slapd

.PHONY: run test lint typecheck docs unit integration clean frontend faults
.PHONY: bench-events bench-audit bench-api bench-spawn bench-collab bench-git bench-publish
.PHONY: bench-browser bench-scale

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

# The hub's browser bundle (frontend/: TypeScript, esbuild, from frontend/package-lock.json;
# node >= 20): content-hashed files and their manifest in hub/web/static/app/, which the hub
# serves under /hub/static/app/ (the collaborative notebook page's script)
FRONTEND := hub/web/static/app/manifest.json
FRONTEND_SOURCES := $(wildcard frontend/src/*.ts) frontend/build.mjs frontend/tsconfig.json

frontend/node_modules/.package-lock.json: frontend/package.json frontend/package-lock.json
	npm ci --prefix frontend --no-audit --no-fund
	touch $@

$(FRONTEND): frontend/node_modules/.package-lock.json $(FRONTEND_SOURCES)
	cd frontend && node_modules/.bin/tsc --noEmit -p . && node build.mjs

frontend: $(FRONTEND)

# options for `chronohub serve`, e.g. make run ARGS="--port 8010"
ARGS ?=
run: $(VENV)/.installed-run $(FRONTEND)
	$(BIN)/chronohub serve $(ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

# the documentation's strict build comes before the suite: a broken link, or a configuration
# reference that hub/settings.py no longer matches, fails in seconds rather than at the end.
# The suite runs on one pytest-xdist worker per core, a module's tests on one worker
# (docs/testing.md: each worker has its own PostgreSQL and its own ports); plain `pytest`
# runs it in one process.
test: lint typecheck $(NODE_TEST_CLIENTS) $(DEBIAN_TOOLS) $(FRONTEND)
	$(BIN)/mkdocs build --strict
	$(BIN)/pytest -n auto --dist loadscope

# The documentation site (mkdocs.yml): the configuration reference written anew from
# hub/settings.py, then docs/ and README.md built into site/; open site/index.html
docs: $(VENV)/.installed-dev
	$(BIN)/python docs/tools/config_reference.py
	$(BIN)/mkdocs build --strict

unit: $(VENV)/.installed-dev
	$(BIN)/pytest -m "not integration"

integration: $(VENV)/.installed-dev $(NODE_TEST_CLIENTS) $(FRONTEND)
	$(BIN)/pytest -m integration

# Faults on a real hub (database stalled, postmaster killed, slow, disk full; hub killed under
# API writes and under git pushes): one JSON line with, per case, acknowledged writes lost and
# recovery time (the disk-full case needs root)
faults: $(VENV)/.installed-dev
	$(BIN)/python -m tests.integration.db_faults

bench-events: $(VENV)/.installed-bench
	$(BIN)/python -m bench.event_store

bench-audit: $(VENV)/.installed-bench
	$(BIN)/python -m bench.audit

# git's smart HTTP through the hub beside native git over file:// (needs the git CLI)
bench-git: $(VENV)/.installed-bench
	$(BIN)/python -m bench.git_http

# from a push to the publishing service's HTML, beside nbconvert alone on the same notebooks
bench-publish: $(VENV)/.installed-bench
	$(BIN)/python -m bench.publish

# the collaborative notebook page in Debian's Chromium: ready cold and warm, keystroke latency
# (ARGS: e.g. --runs 10, or --chromium-arg=<flag> to try a browser condition side by side)
bench-browser: $(VENV)/.installed-bench $(FRONTEND) /usr/bin/chromium
	$(BIN)/python -m bench.browser $(ARGS)

# one hub process at 10,000 users, 1,000 concurrent clients, 1,000 rooms, 100 clones and a
# 10-million-event log, each figure beside its target (ARGS=--small: 1/10 of each, quicker)
bench-scale: $(VENV)/.installed-bench
	$(BIN)/python -m bench.scale $(ARGS)

# configurable-http-proxy, which the JupyterHub that bench-api measures starts (node >= 20)
bench/node_modules/.package-lock.json: bench/package.json bench/package-lock.json
	npm install --prefix bench --no-audit --no-fund
	touch $@

bench-api: $(VENV)/.installed-bench bench/node_modules/.package-lock.json
	$(BIN)/python -m bench.rest_api

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
	$(BIN)/python -m bench.spawn_proxy

# Real Yjs clients (yjs, y-websocket, ws) that the collab interop tests run (node >= 20)
$(YJS_CLIENTS): tests/node/yjs/package.json tests/node/yjs/package-lock.json
	npm ci --prefix tests/node/yjs --no-audit --no-fund
	touch $@

# The collab benchmark's Node peer (@y/websocket-server) and its client driver (ws, yjs)
bench/collab_node/node_modules/.package-lock.json: bench/collab_node/package.json bench/collab_node/package-lock.json
	npm ci --prefix bench/collab_node --no-audit --no-fund
	touch $@

bench-collab: $(VENV)/.installed-bench bench/collab_node/node_modules/.package-lock.json
	$(BIN)/python -m bench.collab

$(DEBIAN_TOOLS):
	@if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(PACKAGE); \
	else \
		echo "the tests need Debian's $(PACKAGE): sudo apt-get install $(PACKAGE)"; exit 1; \
	fi

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache site
