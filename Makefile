# The two commands of the README: `make reproduce` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup reproduce reproduce-full test lint lab lab-check clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11 ...'"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -e ".[dev,export]"
	touch $(STAMP)

setup: $(STAMP)

# MINUTES=60 keeps within an hour: the key comparisons first, the reports from what finished.
reproduce: $(STAMP)
	$(PY) -m ocdlib reproduce --profile cpu $(if $(MINUTES),--minutes $(MINUTES))
	$(PY) -m ocdlib readme

# Every row of the cpu grid (ablations, reduced heads, whole-body regression, the
# investigations), into reports/cpu_full/; reuses the runs of `make reproduce`.
reproduce-full: $(STAMP)
	$(PY) -m ocdlib reproduce --profile cpu_full

test: $(STAMP)
	$(VENV)/bin/ruff check ocdlib tests notebooks
	$(VENV)/bin/ruff format --check ocdlib tests notebooks
	$(VENV)/bin/pytest -n 2 tests
	rm -rf .cache/nbval
	OCDLIB_PROFILE=smoke OCDLIB_TRAIN_MISSING=1 \
	OCDLIB_DATA=$(CURDIR)/.cache/nbval/data OCDLIB_RUNS=$(CURDIR)/.cache/nbval/runs \
	OCDLIB_REPORTS=$(CURDIR)/.cache/nbval/reports \
	$(VENV)/bin/pytest -n 2 --dist loadfile --nbval-lax --nbval-current-env notebooks

lint: $(STAMP)
	$(VENV)/bin/ruff check --fix ocdlib tests
	$(VENV)/bin/ruff format ocdlib tests

# JupyterLab refuses to run as root (containers) unless told it may.
lab: $(STAMP)
	$(VENV)/bin/jupyter lab $$([ "$$(id -u)" = 0 ] && echo --allow-root) notebooks

# 06_results.ipynb opened in a real JupyterLab in headless Chromium (Debian's package),
# every cell run from the run cache and the records; fails on an error, a missing row or
# no figure; saves docs/lab_check.png. Minutes; not part of `make test`.
lab-check: $(STAMP)
	command -v chromium >/dev/null || apt-get install -y chromium
	$(PY) -m pip install --quiet playwright
	$(PY) scripts/lab_check.py $(if $(PROFILE),--profile $(PROFILE))

clean:
	rm -rf $(VENV) runs data .cache
