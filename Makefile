# The two commands of the README: `make reproduce` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup reproduce test lint lab clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11 ...'"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

reproduce: $(STAMP)
	$(PY) -m ocdlib reproduce --profile cpu

test: $(STAMP)
	$(VENV)/bin/ruff check ocdlib tests
	$(VENV)/bin/ruff format --check ocdlib tests
	$(VENV)/bin/pytest -n 2 tests

lint: $(STAMP)
	$(VENV)/bin/ruff check --fix ocdlib tests
	$(VENV)/bin/ruff format ocdlib tests

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks

clean:
	rm -rf $(VENV) runs data .cache
