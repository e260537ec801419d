# make run   sets up .venv, then serves the service on http://127.0.0.1:5000
# make test  sets up .venv and node_modules, then runs every test (unit, contract, end to end,
#            schemathesis against gunicorn, the /docs page in headless chromium)
# make lint  ruff (lint and format) and mypy, as CI runs them

VENV := .venv
PYTHON := $(VENV)/bin/python

.PHONY: run test lint

run: $(VENV)/.installed-run
	bin/run

test: $(VENV)/.installed-test node_modules/.installed
	$(PYTHON) -m pytest

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

$(VENV)/.installed-run: requirements.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.installed-test: requirements.txt requirements-dev.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@ $(VENV)/.installed-run

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@
