# One entry point for people and CI: every target sets up .venv itself.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The suite spreads over the cores, a file per process at a time: a file's module-scoped fixtures
# (a generated database, a worker) are built once, and each process has a broker of its own.
PARALLEL ?= -n auto --dist loadfile

.DEFAULT_GOAL := help
.PHONY: help setup tools run test test-fast lint format typecheck bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -c 'from agents.core.shard_kernel import compile_kernel; compile_kernel()'
	touch $@

setup: $(STAMP)  ## create .venv and install the project with its dev tools

tools:  ## install what the tests run (Debian's prometheus: promtool, the server; docker-compose) if missing
	@sh config/install-tools.sh

run: $(STAMP)  ## run the whole pipeline on a built-in demo (embedded broker unless PERSONAS_BROKER is set)
	$(BIN)/personas demo

test: $(STAMP) tools  ## lint, type-check, then the whole test suite (slow broker tests included)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest $(PARALLEL)

test-fast: $(STAMP) tools  ## the tests that need no broker
	$(BIN)/python -m pytest $(PARALLEL) -m 'not slow'

lint: $(STAMP)  ## ruff
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .

format: $(STAMP)  ## ruff format and autofix
	$(BIN)/python -m ruff format .
	$(BIN)/python -m ruff check --fix .

typecheck: $(STAMP)  ## mypy (strict)
	$(BIN)/python -m mypy

bench: $(STAMP)  ## benchmarks, printed as ratios to a baseline measured in the same run
	$(BIN)/python -m bench

clean:  ## remove .venv, caches and demo data
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis var *-data
