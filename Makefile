# Two commands for a fresh machine: `make demo` and `make test`. Both run `setup` first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU wheel lies on this machine's disk; without the pin pip would fetch a 5 GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.cnnkit-setup

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: setup
	$(BIN)/cnnkit demo

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
