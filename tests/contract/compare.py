"""Comparing a replayed exchange with its recording, the way a client depends on it.

:func:`compare` returns mismatch lines (``"<where>: <what>"``); none means the emulator answered
like the real server. Compared: HTTP status; ``Content-Type``, ``X-Version`` and
``WWW-Authenticate``; JSON bodies by keys and value types, recursively (``int``, ``float``,
``str``, ``bool``, ``None``, lists, objects all distinct), with exact values only for the keys a
client branches on (:data:`VALUE_KEYS`: statuses, codes, messages, event and node names, counts,
a chat's ``answer`` and its chunks);
JSON strings (run detail ``inputs``) by their decoded shape; node ``inputs``/``outputs``/
``process_data`` as opaque objects (app data, not API shape); HTML bodies exactly; SSE bodies by
event order (pings as ``event: ping``; a prefix where the recorded client hung up early) and each
event's shape against its recorded counterpart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

#: Keys whose values must be equal, not merely of the same type.
VALUE_KEYS = frozenset(
    {
        "event", "status", "code", "message", "error", "mode", "reason", "result", "answer",
        "node_id", "node_type", "type", "text", "from_variable_selector",
        "total_steps", "total_tokens", "exceptions_count", "page", "limit",
        "triggered_from", "created_from", "created_by_role", "session_id",
        "inputs_truncated", "outputs_truncated", "process_data_truncated",
    }
)  # fmt: skip
#: Value keys inside node events only (an app's own title differs; its nodes' do not).
NODE_VALUE_KEYS = frozenset({"title"})
#: Keys of node events whose objects are the app's data: only "an object" is compared.
OPAQUE_NODE_KEYS = frozenset({"inputs", "outputs", "process_data"})
HEADERS = ("content-type", "x-version", "www-authenticate")
#: The tail pydantic appends to its messages names its own version.
PYDANTIC_TAIL = re.compile(r"https://errors\.pydantic\.dev/(\d+\.\d+)/")
PING = "event: ping"


@dataclass
class Replayed:
    """What the emulator answered to one recorded request."""

    status: int
    headers: dict[str, str]
    text: str
    #: For SSE: the frames in order, pings as ``"event: ping"``, data frames decoded.
    frames: list[str | dict[str, Any]] = field(default_factory=list)
    #: The replay hung up before the server ended the stream.
    closed_early: bool = False

    @property
    def is_sse(self) -> bool:
        return self.headers.get("content-type", "").startswith("text/event-stream")

    @property
    def events(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if isinstance(f, dict)]

    @property
    def order(self) -> list[str]:
        return [f if isinstance(f, str) else str(f.get("event")) for f in self.frames]


def parse_sse(raw: bytes) -> list[str | dict[str, Any]]:
    """Complete frames of an SSE body (a trailing partial frame is dropped)."""
    frames: list[str | dict[str, Any]] = []
    for chunk in raw.split(b"\n\n")[:-1]:
        text = chunk.decode()
        if text.startswith("data: "):
            frames.append(json.loads(text[len("data: ") :]))
        elif text:
            frames.append(text)
    return frames


def recorded_frames(sse_text: str) -> list[str | dict[str, Any]]:
    return parse_sse(sse_text.encode())


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _json_string(value: str) -> Any:
    if value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return None
    return None


def compare_shape(recorded: Any, replayed: Any, where: str, *, node_event: bool = False) -> Iterator[str]:
    """Mismatch lines between two JSON values, by keys and types (values for VALUE_KEYS)."""
    key = where.rsplit(".", 1)[-1]
    if _type(recorded) != _type(replayed):
        yield f"{where}: {_type(recorded)} != {_type(replayed)} ({replayed!r:.80})"
        return
    valued = key in VALUE_KEYS or (node_event and key in NODE_VALUE_KEYS)
    if valued and not isinstance(recorded, dict) and recorded != replayed:
        if isinstance(recorded, str) and PYDANTIC_TAIL.sub("", recorded) == PYDANTIC_TAIL.sub("", replayed):
            versions = [m.group(1) for m in (PYDANTIC_TAIL.search(recorded), PYDANTIC_TAIL.search(replayed)) if m]
            yield f"{where}: same text but the pydantic version in its URL: {' != '.join(versions)}"
        else:
            yield f"{where}: {recorded!r} != {replayed!r}"
        return
    if isinstance(recorded, dict):
        if node_event and key in OPAQUE_NODE_KEYS:
            return
        missing, extra = sorted(recorded.keys() - replayed.keys()), sorted(replayed.keys() - recorded.keys())
        if missing or extra:
            yield f"{where}: keys missing {missing} extra {extra}"
        for name in recorded.keys() & replayed.keys():
            yield from compare_shape(recorded[name], replayed[name], f"{where}.{name}", node_event=node_event)
    elif isinstance(recorded, list):
        if not recorded or not replayed:
            if len(recorded) != len(replayed):
                yield f"{where}: {len(recorded)} items != {len(replayed)} items"
            return
        pairs = zip(recorded, replayed, strict=True) if len(recorded) == len(replayed) else (
            (recorded[0], item) for item in replayed
        )
        for i, (rec, rep) in enumerate(pairs):
            yield from compare_shape(rec, rep, f"{where}[{i}]", node_event=node_event)
    elif isinstance(recorded, str):
        rec_json, rep_json = _json_string(recorded), _json_string(replayed)
        if rec_json is not None:
            if rep_json is None:
                yield f"{where}: a JSON string != {replayed!r:.80}"
            else:
                yield from compare_shape(rec_json, rep_json, f"{where}<json>", node_event=node_event)


def compare(recording: dict[str, Any], sse_text: str | None, replayed: Replayed) -> list[str]:
    """Mismatch lines between a recorded exchange and its replay."""
    response = recording["response"]
    lines: list[str] = []
    if response["status"] != replayed.status:
        lines.append(f"status: {response['status']} != {replayed.status}")
    recorded_headers = {name.lower(): value for name, value in response["headers"]}
    for name in HEADERS:
        if recorded_headers.get(name) != replayed.headers.get(name):
            lines.append(f"header {name}: {recorded_headers.get(name)!r} != {replayed.headers.get(name)!r}")
    if "body" in response:
        try:
            body = json.loads(replayed.text)
        except ValueError:
            lines.append(f"body: JSON != {replayed.text[:60]!r}")
        else:
            lines.extend(compare_shape(response["body"], body, "body"))
    elif sse_text is not None:
        lines.extend(_compare_stream(recording, recorded_frames(sse_text), replayed))
    elif response.get("body_text") != replayed.text:
        lines.append(f"body_text: {response.get('body_text', '')[:40]!r}... != {replayed.text[:40]!r}...")
    return lines


def _compare_stream(recording: dict[str, Any], recorded: list[str | dict[str, Any]], replayed: Replayed) -> list[str]:
    order = recording["response"]["event_order"]
    early = recording["response"].get("closed_by_client_early", False)
    got = replayed.order[: len(order)] if early else replayed.order
    if not replayed.is_sse:
        return [f"stream: not an event stream ({replayed.status} {replayed.headers.get('content-type')})"]
    lines = [] if got == order else [f"event order: {order} != {replayed.order}"]
    if early and not replayed.closed_early:
        lines.append("stream: recorded client hung up early; the replay read it to the end")
    for i, (rec, rep) in enumerate(zip(recorded, replayed.frames, strict=False)):
        if isinstance(rec, dict) and isinstance(rep, dict) and rec.get("event") == rep.get("event"):
            node_event = str(rec.get("event", "")).startswith("node_")
            lines.extend(compare_shape(rec, rep, f"frame[{i}]<{rec['event']}>", node_event=node_event))
    return lines
