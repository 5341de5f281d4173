# The entry points the README names. `make serve` and `make test` are the whole set-up:
# each creates the virtualenv, installs the package and builds the pinned OPA as needed.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
TOOLS  := .tools/bin
HOST   ?= 127.0.0.1
PORT   ?= 5000
DATA   ?= $(CURDIR)/.data

export PATH := $(CURDIR)/$(TOOLS):$(PATH)

.PHONY: setup serve test lint format bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $@

# Built from source with `go install` into ~/.cache/mlflow-secure/tools/opa-vX.Y.Z (shared by
# every clone on the machine), linked into .tools/bin.
$(TOOLS)/opa: $(VENV)/.installed
	$(BIN)/mlflow-secure opa install --link-dir $(TOOLS)

setup: $(VENV)/.installed $(TOOLS)/opa

serve: setup
	@mkdir -p $(DATA)/artifacts
	@echo "mlflow-secure: starting on http://$(HOST):$(PORT) (SQLite and artefacts in $(DATA), managed OPA)."
	@echo "mlflow-secure: GET /health is public; every other route requires credentials."
	$(BIN)/mlflow server --app-name secure \
		--backend-store-uri sqlite:///$(DATA)/mlflow.db \
		--artifacts-destination $(DATA)/artifacts \
		--host $(HOST) --port $(PORT)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The UI tests drive Debian's chromium (never a downloaded browser); installed as root when missing.
test: setup lint
	@test -x /usr/bin/chromium || [ "$$(id -u)" != 0 ] || { DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	$(BIN)/mlflow-secure policy test --dir rego
	$(BIN)/python -m pytest

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	$(TOOLS)/opa fmt --write rego

# MLflow's own REST tests against stock MLflow and the secure server, compared; not part of
# `make test` (about 10 minutes). UPSTREAM_ARGS="--plugin-rev HEAD" etc.: docs/upstream-tests.md.
upstream-test: setup
	$(BIN)/python tests/upstream/run.py $(UPSTREAM_ARGS)

# Performance goals live here, not in timed tests; each prints ratios against stock MLflow.
bench: setup
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,bench]'
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .tools .data
