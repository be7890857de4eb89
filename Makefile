# Set-up and the commands the README and CI use. `make quickstart` and `make test` both install
# everything first (a virtual environment in .venv), so they are the only two commands a fresh
# machine needs.
PYTHON ?= python3
VENV ?= .venv
# Extras to install (comma-separated; empty: none). The Docker images set their own (no `test`).
EXTRAS ?= test
# The tested versions (torch's exact pin among them); pyproject.toml only has ranges.
CONSTRAINTS ?= constraints.txt
# Where torch comes from. Empty: the configured package index (on the project's machines that gives
# the local CPU build). Docker sets https://download.pytorch.org/whl/cpu or .../cu126.
TORCH_INDEX ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup quickstart test test-fast bench clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(if $(TORCH_INDEX),$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) torch --index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e ".$(if $(EXTRAS),[$(EXTRAS)])"
	touch $(STAMP)

setup: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/curate run quickstart

# Everything, the slow tests included (CI runs this).
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "slow or not slow"

# Without the tests marked slow.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf out .pytest_cache
