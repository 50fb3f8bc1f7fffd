# refundwatch — developer and CI entry points (CONTRACT.md §1).
#   make demo     everything needed, then the live demo
#   make test     everything needed, then lint + type check + the whole test suite
#   make install  only the virtualenv (.venv/bin/refundwatch)
# Pass extra pytest arguments with PYTEST_ARGS='-k refunds -x', extra demo arguments with DEMO_ARGS.
# The suite runs on PYTEST_WORKERS pytest-xdist workers (default 3; PYTEST_WORKERS=0: one process).

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules

VENV := .venv
BIN := $(VENV)/bin
# Stamp keyed on pyproject.toml's mtime (touch -r): dependencies are reinstalled exactly when it changes.
INSTALL_STAMP := $(VENV)/.refundwatch-installed
# npm ci wipes node_modules, so a stamp inside it disappears with it; keyed on the lockfile.
NPM_STAMP := node_modules/.refundwatch-npm-ci
VENDOR := static/vendor
VENDOR_FILES := $(VENDOR)/htmx.min.js $(VENDOR)/htmx-ext-sse.js
# Only the ones that exist: git does not keep empty directories (bench/ may be empty on a fresh clone).
LINT_PATHS := $(wildcard src tests bench)
PYTEST_ARGS ?=
# Most test time is waiting on subprocesses, so more workers than the two cores still pay off.
PYTEST_WORKERS ?= 3
DEMO_ARGS ?=

.PHONY: help install assets wheel demo test lint fmt services clean distclean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# --- Python --------------------------------------------------------------------------------------

install: $(INSTALL_STAMP) ## create/update .venv with refundwatch and the test tools

$(INSTALL_STAMP): pyproject.toml
	@# Reuse a working .venv (>= 3.11); otherwise build it from python3.11, or python3 if that is new enough.
	@if ! $(BIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then \
	  py=""; \
	  for cand in python3.11 python3; do \
	    if command -v $$cand >/dev/null && $$cand -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then \
	      py=$$cand; break; \
	    fi; \
	  done; \
	  if [ -z "$$py" ]; then echo "make install: Python >= 3.11 not found; install python3.11 (Debian 12: apt-get install -y python3 python3-venv)" >&2; exit 1; fi; \
	  echo "make install: creating $(VENV) with $$($$py -c 'import sys; print(sys.executable)')"; \
	  rm -rf $(VENV); \
	  $$py -m venv $(VENV); \
	fi
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@test -x $(BIN)/refundwatch || { echo "make install: $(BIN)/refundwatch missing after install" >&2; exit 1; }
	@touch -r pyproject.toml $@

# --- Front-end assets (htmx + SSE extension, pinned in package-lock.json; no CDN) -------------------

assets: $(VENDOR_FILES) ## npm ci (when needed) and copy htmx into static/vendor/

$(NPM_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "make assets: npm not found; install Node.js 18+ with npm (Debian: apt-get install -y nodejs npm, or https://nodejs.org/)" >&2; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(VENDOR)/htmx.min.js: $(NPM_STAMP)
	@mkdir -p $(@D)
	cp node_modules/htmx.org/dist/htmx.min.js $@

$(VENDOR)/htmx-ext-sse.js: $(NPM_STAMP)
	@mkdir -p $(@D)
	cp node_modules/htmx-ext-sse/dist/sse.js $@

# The deployable wheel: templates, static files and htmx inside (hatch_build.py runs `make assets`).
wheel: install ## build dist/refundwatch-*.whl, front-end assets included
	$(BIN)/python -m pip wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation -w dist .

# --- The two commands --------------------------------------------------------------------------

demo: install assets ## the live demo (Ctrl-C stops everything it started)
	exec $(BIN)/refundwatch demo $(DEMO_ARGS)

# Lint first: it is the cheapest failure. Services are started before pytest needs them.
test: lint assets services ## lint, type check and the whole test suite
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --durations=25 $(PYTEST_ARGS)

services: ## make sure the local Redis and PostgreSQL answer (starts them if stopped)
	scripts/ensure_services.sh

# --- Conveniences ------------------------------------------------------------------------------

lint: install ## ruff check, ruff format --check, mypy
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

fmt: install ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix $(LINT_PATHS)
	$(BIN)/ruff format $(LINT_PATHS)

clean: ## remove caches, build output and vendored assets (keeps .venv, node_modules and var/)
	rm -rf $(VENDOR) build dist .mypy_cache .ruff_cache .pytest_cache htmlcov .coverage
	find src tests bench -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true
	rm -rf *.egg-info src/*.egg-info

distclean: clean ## also remove .venv, node_modules and var/ (local data; the demo removes its own)
	rm -rf $(VENV) node_modules var
