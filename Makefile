# Every target installs what it needs: a fresh clone needs only python3 (3.11+) and make.
PYTHON ?= python3
VENV := .venv
# The lowest Airflow this package declares; `make test-min` proves the claim.
AIRFLOW_MIN := 2.11.0
# The newest patch of every other supported Airflow minor; `make test` runs the newest of all.
AIRFLOW_COMPAT ?= 2.11.2 3.0.6 3.1.8 3.2.2
# Where `make e2e-compat` runs the e2e's REST part (a real triggerer is where 3.0 differs most).
AIRFLOW_E2E_COMPAT ?= 3.0.6
# The Airflow of `make e2e-distributed` (with its celery and postgres extras, in its own venv).
AIRFLOW_DISTRIBUTED ?= 3.3.2
UV := $(VENV)/bin/uv
# Caps an Airflow minor needs at install time for tests (what its own constraint files would pin),
# one file per minor: tests/constraints/airflow-<major.minor>.txt. Users' installs are not capped.
CONSTRAINTS = $(wildcard tests/constraints/airflow-$(basename $(1)).txt)

.PHONY: install test lint test-min test-compat demo e2e e2e-compat e2e-distributed bench clean

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

## make test: install, lint, type-check and run every test on the newest Airflow.
test: lint
	$(VENV)/bin/pytest -q

# One venv per Airflow version: .venv-airflow-<version>.
.venv-airflow-%/.installed: pyproject.toml $(wildcard tests/constraints/*.txt) | $(UV)
	test -x .venv-airflow-$*/bin/python || $(PYTHON) -m venv .venv-airflow-$*
	$(UV) pip install --python .venv-airflow-$*/bin/python -q -e ".[test]" "apache-airflow==$*" \
		$(addprefix -c ,$(call CONSTRAINTS,$*))
	touch $@

## make test-min: the same suite on the lowest Airflow version the package declares.
test-min: .venv-airflow-$(AIRFLOW_MIN)/.installed
	@scripts/suite-on-airflow.sh $(AIRFLOW_MIN)

## make test-compat: the same suite on the newest patch of every other supported minor
## (AIRFLOW_COMPAT="3.1.8" for one), two at a time (COMPAT_JOBS=1 for one after the other),
## each one's output and duration printed when it ends.
test-compat: $(foreach v,$(AIRFLOW_COMPAT),.venv-airflow-$(v)/.installed)
	@scripts/compat-suites.sh $(AIRFLOW_COMPAT)

## make demo: start the emulator, run example DAG 1 through real Airflow, print outputs and tokens.
demo: install
	$(VENV)/bin/python scripts/demo.py

## make e2e: a running Airflow (api-server, scheduler, dag-processor, triggerer) and headless Chromium.
e2e: install
	$(VENV)/bin/python scripts/e2e.py

## make e2e-compat: the e2e's REST part (no browser) on an older Airflow 3.
e2e-compat: .venv-airflow-$(AIRFLOW_E2E_COMPAT)/.installed
	.venv-airflow-$(AIRFLOW_E2E_COMPAT)/bin/python scripts/e2e.py --rest-only

.venv-distributed/.installed: pyproject.toml | $(UV)
	test -x .venv-distributed/bin/python || $(PYTHON) -m venv .venv-distributed
	$(UV) pip install --python .venv-distributed/bin/python -q -e ".[test]" \
		"apache-airflow[celery,postgres]==$(AIRFLOW_DISTRIBUTED)"
	touch $@

## make e2e-distributed: PostgreSQL, Redis, two Celery workers and two triggerers on loopback,
## and the fault scenarios (killed triggerer / worker / scheduler, Dify outage, kills, load).
e2e-distributed: .venv-distributed/.installed
	.venv-distributed/bin/python scripts/e2e_distributed.py $(ARGS)

## make bench: the benchmarks in bench/ (add ARGS=--quick for the two-minute version).
bench: install
	$(VENV)/bin/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) .venv-airflow-* .venv-distributed .e2e dist build .mypy_cache .ruff_cache
