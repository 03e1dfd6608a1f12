# make repro  - create .venv if missing, install, run the pipeline (dvc repro)
# make test   - create .venv if missing, install with dev tools, lint and run the tests
# make ui     - MLflow UI on http://127.0.0.1:5000
# make netron - the exported model in Netron on http://127.0.0.1:8080

PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
# Stage commands say `python`; this makes it the venv's python.
export PATH := $(BIN):$(PATH)

.PHONY: install repro test lint browser ui netron clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

repro: $(STAMP)
	dvc repro

lint: $(STAMP)
	ruff check .
	ruff format --check .

# Browser tests (Netron) need Chromium; CI installs Debian's, elsewhere they skip without it.
browser:
	@if [ -n "$$CI" ] && ! command -v chromium >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	fi

# Two workers, each taking whole files: a module's fixtures (one pipeline run) stay shared.
test: lint browser
	pytest -n 2 --dist loadfile

ui: $(STAMP)
	cnnpipe ui

netron: $(STAMP)
	cnnpipe netron models/model.onnx

clean:
	rm -rf data models metrics mlflow.db* mlartifacts mlruns
