# Two commands matter: `make demo` and `make test`. Both (re)build .venv first, only when
# pyproject.toml or requirements.lock changed since the last install.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TFTSWEEP_DATA_DIR ?= $(CURDIR)/data

.PHONY: venv demo test test-faults test-fast bench lint format clean

venv: $(STAMP)

# torch first, alone: pip then takes the local CPU build instead of a multi-GB CUDA download.
$(STAMP): pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (or: make PYTHON=/path/to/python3.11)"; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[ml,dev]'
	touch $(STAMP)

# The main job over HTTP: example dataset, `tftsweep serve`, submit, progress, ranking, stop.
demo: $(STAMP)
	$(BIN)/python -m worker.demo

lint: $(STAMP)
	$(BIN)/ruff check core app worker tests bench
	$(BIN)/ruff format --check core app worker tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format core app worker tests bench
	$(BIN)/ruff check --fix core app worker tests bench

# Redis and PostgreSQL (when installed) start on loopback for the production-stack tests.
# pytest exits 5 when it collects nothing; make treats that as the failure it is.
test: lint
	eval "$$(scripts/services.sh)" && $(BIN)/pytest

# Fault injection with real processes (kill -9, restarts, contention); CI runs it after make test.
test-faults: $(STAMP)
	eval "$$(scripts/services.sh)" && $(BIN)/pytest -m faults tests/faults

# Benchmarks 1-10 (see docs/benchmarks.md; 6 needs a GPU: bench/gpu_packing.py); about 30 minutes on 2 cores. Then the report.
bench: $(STAMP)
	$(BIN)/python -m bench.reports_bench
	$(BIN)/python -m bench.api_bench
	$(BIN)/python -m bench.sweep_bench --repeat 3
	$(BIN)/python -m bench.store_bench
	$(BIN)/python -m bench.run_parts_bench
	$(BIN)/python -m bench.run_cache_bench
	$(BIN)/python -m bench.racing_bench
	$(BIN)/python -m bench.report

test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow and not e2e"

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
