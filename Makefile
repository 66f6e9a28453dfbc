# Two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --quiet --constraint constraints.txt

.PHONY: demo test test-fast lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamp files so that a second run does not reinstall anything.
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) torch==2.13.0
	$(PIP) -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) -e '.[dev]'
	touch $@

# The C++ kernel of deformable convolution's sampling, with the system compiler (cnnlab/layers/native.py).
# Optional: without a compiler the pure-PyTorch path runs, so a failed build is reported, not fatal.
NATIVE := src/cnnlab/layers/csrc/deform_sample.cpp
$(VENV)/.native: $(VENV)/.installed $(NATIVE)
	$(BIN)/python -c "from cnnlab.layers import native; raise SystemExit(native.main())" || echo "make: continuing without the deformable convolution kernel"
	touch $@

demo: $(VENV)/.installed $(VENV)/.native
	$(BIN)/cnnlab train

test: $(VENV)/.installed-dev $(VENV)/.native
	$(BIN)/python -m pytest

# The tests that neither train nor start processes: under a minute, for the edit-test loop.
test-fast: $(VENV)/.installed-dev $(VENV)/.native
	$(BIN)/python -m pytest -m "not slow"

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# docs/results.md from the recorded JSON (benchmarks/results/, docs/figures/), and docs/papers.md from
# the paper recipes registered beside the models (this one imports cnnlab, hence the virtual env).
.PHONY: results
results: $(VENV)/.installed
	$(BIN)/python benchmarks/render.py

clean:
	rm -rf $(VENV) build src/*.egg-info src/cnnlab/layers/_native .pytest_cache .ruff_cache
