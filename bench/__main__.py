"""``python -m bench`` (``make bench``; ``make bench ARGS=--quick`` for the two-minute version)."""

from bench.cli import main

raise SystemExit(main())
