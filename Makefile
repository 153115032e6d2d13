# The only set-up on a fresh machine: `make demo` or `make test` create .venv and install into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-min test-runtime lint demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[torch,dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# The lowest versions pyproject.toml allows, in a second venv (torch/torchvision: the installed build;
# see tools/floor_constraints.py), then the suite. Not part of `make test`.
MIN_VENV := .venv-min
test-min:
	test -x $(MIN_VENV)/bin/python || $(PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install -q --upgrade pip
	$(MIN_VENV)/bin/python tools/floor_constraints.py > $(MIN_VENV)/floors.txt
	$(MIN_VENV)/bin/python -m pip install -q -e ".[torch,dev]" -c $(MIN_VENV)/floors.txt
	$(MIN_VENV)/bin/python -m pip list --format=freeze > $(MIN_VENV)/installed.txt
	$(MIN_VENV)/bin/python -m pytest -q -p no:cacheprovider

# The torch-free runtime (`pip install gridyolo`, no extras) in a third venv: detect and eval of an ONNX
# export there must match the full install. Not part of `make test`.
RUNTIME_VENV := .venv-runtime
test-runtime: $(STAMP)
	rm -rf $(RUNTIME_VENV) .runtime-check
	$(PYTHON) -m venv $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/python -m pip install -q --upgrade pip
	$(RUNTIME_VENV)/bin/python -m pip install -q .
	du -sh $(RUNTIME_VENV)
	$(BIN)/python tools/runtime_check.py $(RUNTIME_VENV)/bin/python .runtime-check

lint: $(STAMP)
	$(BIN)/ruff check .

demo: $(STAMP)
	$(BIN)/gridyolo demo

QUICK ?= 0
bench: $(STAMP)
	QUICK=$(QUICK) $(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(MIN_VENV) $(RUNTIME_VENV) .runtime-check build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
