# Every target installs what it needs: a fresh clone needs only python3 (3.11+) and make.
PYTHON ?= python3
VENV := .venv
VENV_MIN := .venv-min
# The lowest Airflow this package declares; `make test-min` proves the claim.
AIRFLOW_MIN := 3.3.0
UV := $(VENV)/bin/uv

.PHONY: install test lint test-min demo e2e bench clean

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check uv

$(VENV)/.installed: pyproject.toml | $(UV)
	$(UV) pip install --python $(VENV)/bin/python -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy dify_provider

## make test: install, lint, type-check and run every test on the newest Airflow 3.
test: lint
	$(VENV)/bin/pytest -q

## make test-min: the same suite on the lowest Airflow version the package declares.
$(VENV_MIN)/.installed: pyproject.toml | $(UV)
	test -x $(VENV_MIN)/bin/python || $(PYTHON) -m venv $(VENV_MIN)
	$(UV) pip install --python $(VENV_MIN)/bin/python -q -e ".[test]" "apache-airflow==$(AIRFLOW_MIN)"
	touch $@

test-min: $(VENV_MIN)/.installed
	$(VENV_MIN)/bin/python -c "import airflow; assert airflow.__version__ == '$(AIRFLOW_MIN)', airflow.__version__; print('Airflow', airflow.__version__)"
	$(VENV_MIN)/bin/pytest -q

## make demo: start the emulator, run example DAG 1 through real Airflow, print outputs and tokens.
demo: install
	$(VENV)/bin/python scripts/demo.py

## make e2e: a running Airflow (api-server, scheduler, dag-processor, triggerer) and headless Chromium.
e2e: install
	$(VENV)/bin/python scripts/e2e.py

## make bench: the benchmarks in bench/ (add ARGS=--quick for the two-minute version).
bench: install
	$(VENV)/bin/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) $(VENV_MIN) dist build .mypy_cache .ruff_cache
