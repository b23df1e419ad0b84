# The two commands of the README. Each sets itself up on a fresh machine: a .venv, the CPU build of
# torch (unless a torch is already installed there, e.g. a CUDA build), then vtok with its test extras.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
# The default run leaves out the tests marked slow (every documented command, the inference CLI, torchrun
# encodes); CI runs them all with PYTEST_ARGS= (see .ci/run).
PYTEST_ARGS ?= -m "not slow"

.PHONY: demo test lint setup clean

setup: $(VENV)/.vtok-installed

$(VENV)/.vtok-installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) $(TORCH_SPEC)
	$(PIP) -e ".[test]"
	touch $@

demo: setup
	$(VENV)/bin/vtok demo

test: setup lint
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check vtok tests bench
	$(VENV)/bin/ruff format --check vtok tests bench

clean:
	rm -rf $(VENV) outputs .pytest_cache
