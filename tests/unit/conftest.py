"""Fixtures for the client unit tests (the top-level tests/conftest.py is not ours to edit)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import respx
import tenacity

from ._harness import FakeClock, Harness


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    """Every HTTP request in a test goes to this router; unmatched requests fail the test."""
    # using="httpx" mocks at the transport level: half the per-test cost of the httpcore default.
    with respx.mock(assert_all_called=False, assert_all_mocked=True, using="httpx") as mock:
        yield mock


@pytest.fixture(params=["sync", "async"])
def harness(request: pytest.FixtureRequest, router: respx.MockRouter) -> Harness:
    """Both clients, one test body: each test using this runs once per flavour."""
    return Harness(kind=request.param)


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """Replaces ``time`` inside tenacity only; give it to ``Harness.with_clock``."""
    clock = FakeClock()
    monkeypatch.setattr(tenacity, "time", clock)
    return clock
