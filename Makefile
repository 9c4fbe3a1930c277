# The two commands of the README:
#   make book   set up, then open the book in JupyterLab at notebook 01 (HEADLESS=1 for servers)
#   make test   set up, then run the whole test suite (unit tests + notebooks in fast mode)
# and, to read the book as a website: make site, then python -m http.server -d _build/site
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
# the website (docs/site/conf.py): MathJax is a local copy, so the site never asks a CDN for it
MATHJAX := docs/site/_vendor/mathjax/tex-chtml.js
SITE := _build/site

.PHONY: setup data book test site mathjax lint clean-venv

setup: $(STAMP) data

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23.1"
	$(PY) -m pip install --quiet -e ".[dev,site]"
	touch $(STAMP)

data: $(STAMP)
	$(PY) -m course_lib.data

book: setup
ifeq ($(HEADLESS),)
	$(VENV)/bin/jupyter lab $(ALLOW_ROOT) $(LAB_AT_01)
else
	$(VENV)/bin/jupyter lab $(ALLOW_ROOT) $(LAB_AT_01) --no-browser --ip=127.0.0.1 --port=$(PORT)
endif

test: setup $(MATHJAX)
	$(PY) -m pytest

# MathJax 3.2.2 from npm (npm pack, or the registry over HTTPS without npm), checked against its SHA-512
mathjax: $(MATHJAX)

$(MATHJAX):
	$(PYTHON) docs/site/get_mathjax.py

# the book as an offline website in $(SITE)/, from the notebooks' stored outputs; warnings are errors
site: $(STAMP) $(MATHJAX)
	$(PY) -m sphinx -W --keep-going -E -q -b html -c docs/site -d _build/doctrees . $(SITE)
	@echo "the book is in $(SITE)/: python -m http.server -d $(SITE), then open http://127.0.0.1:8000"

lint: $(STAMP)
	$(VENV)/bin/ruff check course_lib tests benchmarks

clean-venv:
	rm -rf $(VENV)
