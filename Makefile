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
# JupyterLab refuses to run as root (containers, cloud shells) unless told it is intended
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)
# the file browser shows the whole repository; the book opens at its first chapter
LAB_AT_01 := --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/notebooks/01_noise_scheduler.ipynb

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
	$(VENV)/bin/jupyter lab $(ALLOW_ROOT) $(LAB_AT_01)
else
	$(VENV)/bin/jupyter lab $(ALLOW_ROOT) $(LAB_AT_01) --no-browser --ip=127.0.0.1 --port=$(PORT)
endif

test: setup
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check course_lib tests benchmarks

clean-venv:
	rm -rf $(VENV)
