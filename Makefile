# Two commands on a fresh clone: `make repro` (set up, run the pipeline) and `make test` (set up, run the tests).
# Set-up creates .venv from requirements.lock once and again only when the lock or pyproject.toml changes.

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
# DVC runs each stage's `python ...` through the shell: the venv comes first on PATH so it finds vaelab.
RUN := PATH="$(BIN):$$PATH" TF_CPP_MIN_LOG_LEVEL=2
PYTEST_ARGS ?=
# pytest-xdist processes for `make test` and `make test-fast` (auto: one per core; 0 runs in this process).
# --dist loadfile keeps each file's tests, and so its module fixtures (a trained model, a server), on one worker.
TEST_WORKERS ?= auto
PYTEST_PARALLEL := -n $(TEST_WORKERS) --dist loadfile

.PHONY: help setup repro test test-fast lint format ui server generate notebook likelihood sweep promote dashboard compare exps status bench bench-torch lock clean-venv

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: $(STAMP)  ## create .venv and install the pinned dependencies (skipped when up to date)

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "vaelab needs Python 3.11 or newer; $(PYTHON) is $$($(PYTHON) --version 2>&1). Use: make PYTHON=python3.11 ..." >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements.lock
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps -e .
	@touch $@

repro: setup  ## run the DVC pipeline: download, preprocess, train, classifier, evaluate
	$(RUN) dvc repro

test: setup  ## run the whole test suite (what CI runs)
	$(RUN) python -m pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

test-fast: setup  ## the tests not marked slow
	$(RUN) python -m pytest -m "not slow" $(PYTEST_PARALLEL) $(PYTEST_ARGS)

LINTED := src tests bench scripts pipeline
lint: setup  ## ruff (lint and format check) and mypy on src, tests, bench, scripts, pipeline, as pyproject.toml configures; CI runs it
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy

format: setup  ## apply ruff's import order and formatting
	$(BIN)/ruff check --select I --fix $(LINTED)
	$(BIN)/ruff format $(LINTED)

ui: setup  ## the MLflow UI on mlflow.db (or MLFLOW_TRACKING_URI), one worker and no job runner; prints the training-runs view's address
	$(RUN) vaelab ui --host 127.0.0.1 --port 5000

MLFLOW_BACKEND ?= postgresql://postgres@127.0.0.1:5432/vaelab_mlflow
MLFLOW_ARTIFACTS ?= ./mlartifacts-server
server: setup  ## MLflow tracking server on PostgreSQL (database created if missing), proxied artifacts, http://127.0.0.1:5001
	$(RUN) python scripts/tracking_server.py --backend-store-uri $(MLFLOW_BACKEND) --artifacts-destination $(MLFLOW_ARTIFACTS) --host 127.0.0.1 --port 5001

LIKELIHOOD_ARGS ?=
generate: setup  ## samples, morphs, reconstructions or the latent grid from the registry's best model: generated/*.png (GENERATE_ARGS="--n 64 --seed 1", see vaelab generate --help)
	$(RUN) vaelab generate $(GENERATE_ARGS)

# JupyterLab is not in requirements.lock, so `make repro` and `make test` do not install it; the first
# `make notebook` does, from its own pinned list.
NOTEBOOK_STAMP := $(VENV)/.notebook-installed
NOTEBOOK_ARGS ?=  # more `jupyter lab` options, e.g. --no-browser --port 8890
$(NOTEBOOK_STAMP): requirements-notebook.lock $(STAMP)
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements-notebook.lock
	@touch $@

notebook: $(NOTEBOOK_STAMP)  ## JupyterLab on notebooks/explore.ipynb: explore the registry's best model (VAELAB_MODEL=... for another)
	$(RUN) jupyter lab --ip 127.0.0.1 $(if $(filter 0,$(shell id -u)),--allow-root) $(NOTEBOOK_ARGS) notebooks/explore.ipynb

likelihood: setup  ## the paper-grade test NLL of the trained model: K=5000 on all test images (resumable; LIKELIHOOD_ARGS=--samples ...)
	$(RUN) vaelab likelihood $(LIKELIHOOD_ARGS)

WORKERS ?= 1
sweep: setup  ## Optuna study from params.yaml `sweep:` (WORKERS=K for K processes); best params in sweeps/<study>/
	$(RUN) vaelab sweep --workers $(WORKERS)

PROMOTE_ARGS ?=
promote: setup  ## train, evaluate and register the sweep's winner as DVC experiment <study>-trial<N> (PROMOTE_ARGS="STUDY"; once)
	$(RUN) vaelab promote $(PROMOTE_ARGS)

DASHBOARD_ARGS ?=
dashboard: setup  ## optuna-dashboard on the sweep's study with each trial's pictures, http://127.0.0.1:8080 (DASHBOARD_ARGS="--study NAME --port N")
	$(RUN) vaelab dashboard $(DASHBOARD_ARGS)

compare: setup  ## the experiment's runs side by side: table, reports/compare/compare.{csv,png,html}
	$(RUN) vaelab compare --out reports/compare

# `dvc exp show`'s own filters: params that differ between the experiments (--only-changed), the headline
# metrics always (--keep), and no dependency hashes or other metrics (--drop: every column that is neither
# a headline metric nor a dotted param name such as train.z_dim).
# The same expression as vaelab.metric_names.HEADLINE_PATTERN (tests/test_metric_names.py checks it).
HEADLINE := test_neg_elbo_k1_(binarized|grayscale)_nats|test_nll_k\d+_(binarized|grayscale)_nats|sample_fid_classifier
EXPS_SHOW := dvc exp show --no-pager --only-changed --keep '^($(HEADLINE))$$' \
	--drop '^(?!(Experiment|Created|State|$(HEADLINE))$$)(?![a-z_]+\.[a-z_.]+$$).*'
EXPS_ARGS ?=
exps: setup  ## DVC experiments, one row each: the params that differ and the headline metrics (EXPS_ARGS=--md, -A, ...)
	$(RUN) $(EXPS_SHOW) $(EXPS_ARGS)

status: setup  ## what DVC would re-run, and the latest metrics
	$(RUN) dvc status; $(RUN) dvc metrics show

TORCH_VENV ?= .venv-torch

bench: setup  ## benchmark vs plain Keras and PyTorch eager and compiled (about an hour on 2 cores, idle machine): bench/results.{json,md}, README table
	$(RUN) python -m bench.run --mode full --out bench --readme README.md --torch-python $(CURDIR)/$(TORCH_VENV)/bin/python

bench-torch:  ## PyTorch (CPU) in a separate .venv-torch, so `make bench` also measures the PyTorch reference
	@test -x $(TORCH_VENV)/bin/python || $(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/python -m pip install --disable-pip-version-check -q torch==2.13.0 $$(grep '^numpy==' requirements.lock)

lock: setup  ## re-pin requirements.lock from what the venv has now
	{ echo "# Exact versions installed by \`make\` (pip install -r requirements.lock). Regenerate with \`make lock\`."; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v '^vaelab' | grep -vxF -f requirements-notebook.lock; } > requirements.lock.tmp && mv requirements.lock.tmp requirements.lock

clean-venv:  ## remove the virtual environment
	rm -rf $(VENV)
