# The two commands of README.md: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint typecheck unit system-deps venv benchmarks

$(BIN)/.installed: pyproject.toml constraints.txt $(wildcard src/afterbeep/telephony/media/*.c)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

venv: $(BIN)/.installed

run: venv
	$(BIN)/afterbeep serve

system-deps:
	./scripts/install-system-deps.sh

lint: venv
	$(BIN)/ruff check src tests benchmarks scripts

typecheck: venv
	$(BIN)/mypy

# Two workers (these are 2-core machines and most of the suite waits on real-time audio),
# one test file per worker at a time so a file's peers and fixtures stay together, handed out
# in the order tests/conftest.py sorts them (the slowest files first) rather than xdist's
# (the files with most tests first, which left the long few-test files for the end).
# Three workers (session 16): tests/e2e took 354 s at load 6-13 against 401 s with two at load
# 2-7, but the cluster's kill -9 test then failed beside schemathesis (Kamailio's probes of the
# surviving node timed out: 503 No Node Available); two until that holds under load.
# Each file's seconds go to .pytest_cache/file-durations.txt (tests/file_durations.py), the
# figures for tests/slowest_files.txt; the summary says when each worker ended.
unit: venv system-deps
	AFTERBEEP_TEST_DURATIONS=.pytest_cache/file-durations.txt $(BIN)/pytest -n 2 --dist loadfile --no-loadscope-reorder

# System packages first: gcc and Python's headers must be there when the venv builds the
# media path's C extensions (they are optional to `pip install`, so a missing gcc only warns).
test: system-deps lint typecheck unit
