# The two entry points of the README. Both create the virtual environment themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
NODE_DEPS := federation/node_modules/.package-lock.json

.PHONY: run test lint compose bench clean

$(BIN)/switchover: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# Gateways, composition and graphql-inspector for the federation tests (versions pinned by the lockfile).
$(NODE_DEPS): federation/package.json federation/package-lock.json
	npm ci --prefix federation --no-audit --no-fund --loglevel=error
	touch $@

# `make run DATAPLANE=haproxy`: HAProxy (and Prometheus, for the analyses) carry the traffic when installed.
DATAPLANE ?= builtin

run: $(BIN)/switchover
	$(BIN)/python -m switchover.demo --dataplane $(DATAPLANE)

test: $(BIN)/switchover $(NODE_DEPS)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(BIN)/switchover
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# On demand, not in CI: writes bench/RESULTS.md (about 25 minutes; see bench/README.md).
bench: $(BIN)/switchover
	bench/run.sh

compose: $(BIN)/switchover $(NODE_DEPS)
	$(BIN)/switchover schema compose

clean:
	rm -rf $(VENV) .switchover .pytest_cache federation/node_modules
