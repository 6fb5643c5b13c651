# The two entry points a user needs are `make demo` and `make test`; everything they need is
# installed on first use and cached (venv in .venv, Go-built binaries in $(NAAICE_CACHE)).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export NAAICE_CACHE ?= $(HOME)/.cache/naaice
STAMP := $(VENV)/.installed
# C extension modules (setup.py) are built by the editable install: rebuild when they change.
CSRC := $(shell find naa_runtime -name '*.c' 2>/dev/null)

.PHONY: demo test lint typecheck imports pytest bench debs binaries clean lock

# `debs` first (order-only): gcc and the C libraries the extensions link against.
$(STAMP): pyproject.toml requirements.lock setup.py $(CSRC) | debs
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check "uv==0.13.8"
	@$(BIN)/uv pip install -q --python $(BIN)/python -r requirements.lock
	@$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@touch $@

debs:
	@bash hack/ensure-debs.sh

binaries: $(STAMP)
	@$(BIN)/naaice cluster build

demo: $(STAMP) debs binaries
	@$(BIN)/naaice demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

pytest: $(STAMP) debs binaries
	@bash hack/pytest.sh $(PYTEST_ARGS)

test: lint typecheck imports pytest

bench: $(STAMP) debs binaries
	@$(BIN)/uv pip install -q --python $(BIN)/python -r requirements-bench.lock
	@failed=""; for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || failed="$$failed $$b"; done; \
	  if [ -n "$$failed" ]; then echo "missed a floor or failed:$$failed"; exit 1; fi

# Re-pin after editing pyproject.toml's dependencies. Not a file rule on purpose: a fresh clone's
# mtimes must never make `make test` re-resolve against the registry.
lock:
	@test -x $(BIN)/uv || { $(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install -q "uv==0.13.8"; }
	$(BIN)/uv pip compile -q --python-version 3.11 --extra dev pyproject.toml -o requirements.lock
	$(BIN)/uv pip compile -q --python-version 3.11 --extra bench --extra poet -c requirements.lock pyproject.toml -o requirements-bench.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build
	find naa_runtime -name '*.so' -delete
