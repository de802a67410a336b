"""``WorkflowStream.abort`` / ``hang_up_at`` over a real socket: closing a response from another
thread does not wake a read blocked on it (it returns with the next bytes: a 10 s ping, or never
on a silent stream); shutting the socket down does."""

from __future__ import annotations

import time

import pytest

from dify_provider.client import ClientConfig, DifyClient, DifyStreamError
from dify_provider.testing import DifyEmulator, Fault, Scenario

RUN = "POST /workflows/run"


def client_for(emu: DifyEmulator) -> DifyClient:
    return DifyClient(ClientConfig(api_key=emu.api_key("echo"), base_url=emu.base_url))


@pytest.mark.parametrize("stream_kind", ["silent", "pinging"])
def test_a_deadline_wakes_a_blocked_read_at_once(dify_emulator: DifyEmulator, stream_kind: str) -> None:
    dify_emulator.script("echo", Scenario(hold=True))
    if stream_kind == "silent":  # no event and no ping, for good: the client would wait its 45 s
        dify_emulator.inject(Fault.silent_stream(after_events=2, endpoint=RUN))
    else:  # the next frame is a ping 8 s away
        dify_emulator.configure(ping_interval=8.0)
    with client_for(dify_emulator) as client:
        stream = client.run_workflow({"text": "x"}, response_mode="streaming")
        events: list[str] = []
        began = time.monotonic()
        with stream.hang_up_at(time.time() + 0.5) as deadline, pytest.raises(DifyStreamError):
            events.extend(event.event for event in stream)
        took = time.monotonic() - began
    assert deadline.fired
    assert stream.aborted
    assert events[0] == "workflow_started"
    assert took < 3.0  # 0.5 s and a start-up, not the next ping or the inactivity limit
    dify_emulator.finish(stream.workflow_run_id or "")


def test_a_deadline_not_reached_changes_nothing(dify_emulator: DifyEmulator) -> None:
    with client_for(dify_emulator) as client:
        stream = client.run_workflow({"text": "x"}, response_mode="streaming")
        with stream.hang_up_at(time.time() + 60) as deadline:
            events = [event.event for event in stream]
    assert not deadline.fired
    assert not stream.aborted
    assert events[-1] == "workflow_finished"
    assert stream.finished


def test_abort_before_the_stream_opens_ends_it_cleanly(dify_emulator: DifyEmulator) -> None:
    with client_for(dify_emulator) as client:
        stream = client.run_workflow({"text": "x"}, response_mode="streaming")
        stream.abort()
        with pytest.raises(DifyStreamError, match="hung up by this client"):
            next(iter(stream))
