#!/usr/bin/env bash
# The test suite in .venv-airflow-<version> (made by the Makefile), and how long it took. Left out:
# the parts that never touch Airflow (the emulator's own tests, the recordings' contract test, the
# bench smoke test): they cannot differ between Airflow versions, and `make test` runs them.
set -euo pipefail
version=$1
venv=.venv-airflow-$version
"$venv/bin/python" -c "import airflow, sys; v = airflow.__version__; sys.exit(0 if v == '$version' else f'{v} installed, not $version')"
echo "▶ the suite on Airflow $version"
start=$(date +%s)
"$venv/bin/pytest" -q --ignore=tests/emulator --ignore=tests/contract --ignore=tests/test_bench_smoke.py
echo "  Airflow $version: suite passed in $(( $(date +%s) - start )) s"
