# The two commands of the README:
#   make book   set up, then open the book in JupyterLab at notebook 01 (HEADLESS=1 for servers)
#   make test   set up, then run the whole test suite (unit tests + notebooks in fast mode)
# Set-up is incremental: the venv is reinstalled only when pyproject.toml changes.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.install-stamp
PORT ?= 8888
HEADLESS ?=

.PHONY: setup data book test lint clean-venv

setup: $(STAMP) data

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23.1"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

data: $(STAMP)
	$(PY) -m course_lib.data

book: setup
ifeq ($(HEADLESS),)
	$(VENV)/bin/jupyter lab notebooks/01_noise_scheduler.ipynb
else
	$(VENV)/bin/jupyter lab --no-browser --ip=127.0.0.1 --port=$(PORT) notebooks/01_noise_scheduler.ipynb
endif

test: setup
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check course_lib tests benchmarks

clean-venv:
	rm -rf $(VENV)
