"""Benchmarks of airflow-provider-dify against the bundled Dify emulator: what waiting on Dify runs
costs with this provider, and with what users would write without it.

Not a test suite: ``make bench`` (full, ~15 min) or ``make bench ARGS=--quick`` (two minutes).
See ``bench/README_PERFORMANCE.md`` for the published numbers.
"""
