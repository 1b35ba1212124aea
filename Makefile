# Two commands for a fresh machine: `make demo` and `make test`. Both run `setup` first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU wheel lies on this machine's disk; without the pin pip would fetch a 5 GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.cnnkit-setup

.PHONY: setup demo test test-fast lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]"
	@# The browser tests use a system chromium when there is one (tests/conftest.py), else
	@# Playwright's own download. A failed download is not fatal: only the browser tests need
	@# it, and they then say what to run.
	command -v chromium >/dev/null 2>&1 || $(BIN)/python -m playwright install chromium \
		|| echo "no Chromium: the browser tests will fail; install one, or run: $(BIN)/python -m playwright install chromium"
	touch $(STAMP)

demo: setup
	$(BIN)/cnnkit demo

test: setup
	$(BIN)/python -m pytest -q

# Every test over 5 s is marked slow (tests/, pytest.mark.slow); the rest run in under a minute.
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy src

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
