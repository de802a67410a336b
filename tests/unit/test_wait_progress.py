"""The generic waiting core's progress lines (``Snapshot.progress`` + ``WaitLogger``), backend-free.

A waiting run's progress lines replace its per-poll message and each distinct line is shown once
per wait; a backend without progress lines (Dify) logs exactly as before.
"""

from __future__ import annotations

import logging

import pytest

from dify_provider.client.status import Reason, Verdict
from dify_provider.client.waiting import Snapshot, WaitLogger


def waiting(*progress: str, reason: Reason = Reason.RUNNING, message: str = "run r is running") -> Snapshot:
    return Snapshot(Verdict.WAIT, reason, "r", message, "running", {}, tuple(progress))


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records]


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> logging.Logger:
    caplog.set_level(logging.INFO, logger="wait")
    return logging.getLogger("wait")


def test_without_progress_lines_every_poll_logs_its_message(log: logging.Logger,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    say = WaitLogger(log)
    assert say(waiting()) is False
    say(waiting())
    assert lines(caplog) == [("INFO", "run r is running")] * 2  # Dify's behaviour, unchanged


def test_progress_lines_are_shown_once_and_replace_the_message(log: logging.Logger,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    say = WaitLogger(log)
    assert say(waiting("log a", "10%")) is True
    assert say(waiting("log a", "10%")) is False  # nothing moved: nothing logged
    assert say(waiting("log a", "log b", "40%")) is True
    assert lines(caplog) == [("INFO", "log a"), ("INFO", "10%"), ("INFO", "log b"), ("INFO", "40%")]


def test_warnings_still_apply_with_progress(log: logging.Logger, caplog: pytest.LogCaptureFixture) -> None:
    say = WaitLogger(log)
    say(waiting("log a", reason=Reason.UNKNOWN_STATUS, message="odd status"))
    say(waiting("log a", reason=Reason.UNKNOWN_STATUS, message="odd status"))
    say(waiting(reason=Reason.ERROR, message="503, still waiting"))
    assert lines(caplog) == [("INFO", "log a"), ("WARNING", "odd status"), ("WARNING", "503, still waiting")]


def test_memory_carries_over_to_a_new_logger(log: logging.Logger, caplog: pytest.LogCaptureFixture) -> None:
    first = WaitLogger(log)
    first(waiting("log a", "10%"))
    memory = first.shown()
    assert all(len(digest) == 16 for digest in memory)  # digests, not the lines themselves
    caplog.clear()
    second = WaitLogger(log, memory)  # e.g. the next poke of a rescheduled sensor
    second(waiting("log a", "log b", "10%"))
    assert lines(caplog) == [("INFO", "log b")]


def test_final_lines_are_shown_without_the_message(log: logging.Logger, caplog: pytest.LogCaptureFixture) -> None:
    say = WaitLogger(log)
    say(waiting("log a"))
    done = Snapshot(Verdict.SUCCESS, Reason.SUCCEEDED, "r", "succeeded", "succeeded", {}, ("log a", "log z"))
    assert say.show_progress(done) is True
    assert lines(caplog) == [("INFO", "log a"), ("INFO", "log z")]


def test_memory_is_bounded(log: logging.Logger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(WaitLogger, "MAX_REMEMBERED", 3)
    say = WaitLogger(log)
    say(waiting("a", "b", "c", "d", "e"))
    assert len(say.shown()) == 3


def test_repeat_after_throttles_an_unchanged_running_line(log: logging.Logger,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    say = WaitLogger(log, repeat_after=60, clock=lambda: now[0])
    for t in (0, 2, 30, 59.9):  # unchanged: said once
        now[0] = t
        say(waiting())
    now[0] = 60
    say(waiting())  # a minute later: said again, so a watcher knows the wait is alive
    now[0] = 61
    say(waiting(message="run r is running (node 2)"))  # a changed line: said at once
    say(waiting(reason=Reason.ERROR, message="transient error"))  # errors are never throttled
    say(waiting(reason=Reason.ERROR, message="transient error"))
    assert lines(caplog) == [("INFO", "run r is running")] * 2 + [("INFO", "run r is running (node 2)")] + [
        ("WARNING", "transient error")] * 2

