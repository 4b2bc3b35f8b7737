# Two commands on a fresh clone: `make repro` (set up, run the pipeline) and `make test` (set up, run the tests).
# Set-up creates .venv from requirements.lock once and again only when the lock or pyproject.toml changes.

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
# DVC runs each stage's `python ...` through the shell: the venv comes first on PATH so it finds vaelab.
RUN := PATH="$(BIN):$$PATH" TF_CPP_MIN_LOG_LEVEL=2
PYTEST_ARGS ?=

.PHONY: help setup repro test test-fast ui status lock clean-venv

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

repro: setup  ## run the DVC pipeline: download, preprocess, train, evaluate
	$(RUN) dvc repro

test: setup  ## run the whole test suite (what CI runs)
	$(RUN) python -m pytest $(PYTEST_ARGS)

test-fast: setup  ## the tests not marked slow
	$(RUN) python -m pytest -m "not slow" $(PYTEST_ARGS)

ui: setup  ## the MLflow UI on the project's tracking store, at http://127.0.0.1:5000
	$(RUN) mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

status: setup  ## what DVC would re-run, and the latest metrics
	$(RUN) dvc status; $(RUN) dvc metrics show

lock: setup  ## re-pin requirements.lock from what the venv has now
	{ echo "# Exact versions installed by \`make\` (pip install -r requirements.lock). Regenerate with \`make lock\`."; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v '^vaelab'; } > requirements.lock.tmp && mv requirements.lock.tmp requirements.lock

clean-venv:  ## remove the virtual environment
	rm -rf $(VENV)
