#!/usr/bin/env bash
# The whole test suite in .venv-airflow-<version> (made by the Makefile), and how long it took.
set -euo pipefail
version=$1
venv=.venv-airflow-$version
"$venv/bin/python" -c "import airflow, sys; v = airflow.__version__; sys.exit(0 if v == '$version' else f'{v} installed, not $version')"
echo "▶ the suite on Airflow $version"
start=$(date +%s)
"$venv/bin/pytest" -q
echo "  Airflow $version: suite passed in $(( $(date +%s) - start )) s"
