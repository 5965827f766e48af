SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
MAKEFLAGS += --warn-undefined-variables --no-builtin-rules
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Rebuilt whenever pyproject.toml changes.
STAMP := $(VENV)/.installed-stamp

.PHONY: help venv node-deps browser console-screenshots run test proto proto-check lint breaking fmt check bench bench-quick clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(STAMP) ## Create .venv with lrod and the dev tools

# Reinstalled (npm ci: exactly package-lock.json) whenever package.json or its lock changes.
NODE_STAMP := clients/node/node_modules/.stamp

$(NODE_STAMP): clients/node/package-lock.json clients/node/package.json
	cd clients/node && npm ci --no-audit --no-fund
	touch $@

node-deps: $(NODE_STAMP) ## Install the Node client's packages (clients/node) from its lock file

run: $(STAMP) ## Serve on 127.0.0.1:50051 with SQLite (./lrod.db) and the example jobs
	$(BIN)/lrod serve

# The console's browser tests drive Debian's chromium (Playwright cannot
# download a browser of its own here); installed when missing, as root.
CHROMIUM ?= /usr/bin/chromium

# Outside CI a machine without it (and without root) skips those tests; in CI it fails.
browser: ## Install Debian's chromium for the console's browser tests (when missing)
	test -x $(CHROMIUM) \
		|| { apt-get update -qq && apt-get install -y -qq chromium; } \
		|| { test -z "$${CI:-}" && echo "no chromium: the console's browser tests are skipped"; }

# The suite on this many processes (pytest-xdist; each starts its own
# throwaway PostgreSQL): on two cores it takes about 60% of a serial run.
TEST_PROCESSES ?= 2

test: $(STAMP) node-deps browser ## Run the test suite (SQLite and a throwaway PostgreSQL)
	$(BIN)/pytest -n $(TEST_PROCESSES)

console-screenshots: $(STAMP) browser ## Remake the README's console screenshots (docs/console/)
	LROD_SCREENSHOTS=docs/console $(BIN)/pytest -q tests/console

proto: $(STAMP) ## Regenerate generated/ from proto/
	PY=$(BIN)/python scripts/gen_protos.sh

proto-check: proto ## Fail if generated/ is not what proto/ generates
	git diff --exit-code --stat -- generated/
	test -z "$$(git status --porcelain -- generated/)"

lint: $(STAMP) proto-check ## ruff, mypy --strict, buf lint, buf format, generated code fresh
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/buf lint
	$(BIN)/buf format --diff --exit-code --exclude-path proto/google
	$(MAKE) --no-print-directory breaking

breaking: $(STAMP) ## buf breaking: the protos against the local main branch (the published contract)
	if git rev-parse --verify --quiet main >/dev/null; then \
	  $(BIN)/buf breaking --against '.git#branch=main'; \
	else echo "no local main branch: buf breaking skipped"; fi

fmt: $(STAMP) ## Format Python and protos in place
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench
	$(BIN)/buf format -w --exclude-path proto/google

check: lint test ## Everything CI runs

# The benchmark's extra packages (peer queues, profiler), and Debian's
# redis-server for Celery's broker where it can be installed.
BENCH_STAMP := $(VENV)/.bench-stamp

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	command -v redis-server >/dev/null \
		|| { apt-get update -qq && apt-get install -y -qq redis-server; } \
		|| echo "no redis-server: Celery will be reported as not measured"
	touch $@

bench: $(BENCH_STAMP) ## Run the benchmarks (under 10 min) and write docs/benchmarks.md
	$(BIN)/python -m bench

bench-quick: $(BENCH_STAMP) ## A smoke run of the benchmarks (under 2 min; docs untouched)
	$(BIN)/python -m bench --quick

clean: ## Remove the venv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
