# Set-up and checks. Every target creates .venv when it is missing, so a fresh clone needs
# only Python 3.11+ and make.
#
# torch is installed first, with a pin you can override (TORCH_SPEC="torch==2.5.1+cu124" ...):
# a plain `torch` requirement on a machine without torch pulls several GB of CUDA wheels.

PYTHON      ?= python3
VENV        ?= .venv
TORCH_SPEC  ?= torch==2.13.0
PIP_FLAGS   ?= --disable-pip-version-check --quiet
PYTEST_ARGS ?=
BENCH_FLAGS ?=

BIN := $(VENV)/bin

.PHONY: help install install-dev demo test lint format bench bench-quick clean

help:
	@echo "make demo    set up .venv and run the quickstart sweep (simulator backend)"
	@echo "make test    set up .venv with dev extras and run the test suite"
	@echo "make lint    ruff (lint + format check) and mypy on the packages"
	@echo "make bench   run the benchmarks in benchmarks/ (make bench-quick: a short run)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamps make re-runs cheap: the project is reinstalled only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install $(PIP_FLAGS) "$(TORCH_SPEC)"
	$(BIN)/pip install $(PIP_FLAGS) -e .
	touch $@

# The test set-up includes the verl extra (about 2 GB, ~70 s): the verl backend's estimator,
# agent loop and launcher are tested on CPU against verl itself.
$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install $(PIP_FLAGS) "$(TORCH_SPEC)"
	$(BIN)/pip install $(PIP_FLAGS) -e ".[dev,verl]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

# The quickstart sweep: 24 simulator trainings over lambda, alpha and beta (about 4 minutes on
# 2 cores), then `front` prints its Pareto front with intervals and the Pass@U-k envelope.
# Re-running it resumes the same sweep in ./bao-runs (a finished sweep returns at once).
demo: install
	$(BIN)/bao-pareto baselines --n-tasks 200 --seed 0
	$(BIN)/bao-pareto sweep configs/quickstart.yaml
	$(BIN)/bao-pareto front quickstart

test: install-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The five benchmarks of docs/benchmarks.md (timings there; `make bench-quick`:
# the same machinery at small sizes, under 10 minutes). Each prints its tables and writes
# benchmarks/results/<name>.json (<name>.quick.json for the quick run).
BENCHMARKS := bench_sweep_efficiency bench_simulator bench_overhead bench_scale bench_pruning

bench: install-dev
	@for name in $(BENCHMARKS); do $(BIN)/python benchmarks/$$name.py $(BENCH_FLAGS) || exit 1; done

bench-quick:
	$(MAKE) bench BENCH_FLAGS=--quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
