# Fresh-machine set-up plus the job. Everything lives in a local .venv.
# torch is pinned to the 2.13.0 CPU wheel first, so nothing pulls CUDA packages.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint docs setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev,scale]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/safecircuits demo

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# ruff over the code and tests, mypy over the package (its settings are in pyproject.toml).
lint: $(STAMP)
	$(VENV)/bin/ruff check safecircuits tests benchmarks
	$(VENV)/bin/mypy safecircuits

# HTML API reference from the docstrings (pdoc), offline, into docs/api/ (not committed).
docs: $(STAMP)
	rm -rf docs/api
	$(PY) docs/build_api.py docs/api

clean:
	rm -rf $(VENV) demo_out .pytest_cache .ruff_cache .mypy_cache docs/api
