"""Record extra exchanges from a live Dify server, in the format of ``recordings/`` (not a test).

    .venv/bin/python tests/contract/record_live.py /path/to/apps.json [http://127.0.0.1:5001]

``apps.json``: ``{name: {"key": ...}}`` for the DSL apps of ``recordings/dsl``. Writes
``recordings-extra/C*.json`` (and ``.sse.txt``), API keys replaced by the placeholders the
recordings use. What it records settles questions the original recordings leave open:

- C0/C1: a slow run streamed to the end (the aggregator's three ``text_chunk``s) and, while it
  sleeps in its http node, ``GET /workflows/logs?limit=1``, which lists it as ``running``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

OUT = Path(__file__).parent / "recordings-extra"
PLACEHOLDERS = {"echo": "app-ECHO-KEY", "slow": "app-SLOW-KEY", "slow2": "app-SLOW2-KEY", "fail": "app-FAIL-KEY",
                "chat": "app-CHAT-KEY"}


def _request(method: str, path: str, key: str, body: dict[str, Any] | None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    return {"method": method, "path": path, "headers": headers, "body": None if body is None else json.dumps(body)}


def _response(response: httpx.Response) -> dict[str, Any]:
    return {
        "status": response.status_code,
        "reason": response.reason_phrase,
        "headers": [[name.decode(), value.decode()] for name, value in response.headers.raw],
    }


def _write(name: str, note: str, request: dict[str, Any], response: dict[str, Any], timing: dict[str, Any],
           keys: dict[str, str], sse: bytes | None = None) -> None:
    record = {"name": name, "note": note, "request": request, "response": response, "timing": timing}
    text = json.dumps(record, indent=1, ensure_ascii=False)
    for real, placeholder in keys.items():
        text = text.replace(real, placeholder)
    OUT.mkdir(exist_ok=True)
    (OUT / f"{name}.json").write_text(text + "\n")
    if sse is not None:
        raw = sse.decode()
        for real, placeholder in keys.items():
            raw = raw.replace(real, placeholder)
        (OUT / f"{name}.sse.txt").write_text(raw)


def main(apps_path: str, root: str = "http://127.0.0.1:5001") -> None:
    apps = json.loads(Path(apps_path).read_text())
    keys = {apps[name]["key"]: placeholder for name, placeholder in PLACEHOLDERS.items() if name in apps}
    slow = apps["slow"]["key"]
    run_body = {"inputs": {"query": "logs probe", "delay": 2}, "response_mode": "streaming", "user": "airflow-test"}
    c0 = _request("POST", "/v1/workflows/run", slow, run_body)
    c1 = _request("GET", "/v1/workflows/logs?limit=1", slow, None)
    with httpx.Client(base_url=root, timeout=60) as client:
        began = time.monotonic()
        raw, chunks, order = b"", [], []
        logs: tuple[httpx.Response, float] | None = None
        with client.stream("POST", c0["path"], headers=c0["headers"], content=c0["body"]) as stream:
            headers_after = time.monotonic() - began
            for chunk in stream.iter_raw():
                raw += chunk
                chunks.append([round(time.monotonic() - began, 3), len(chunk)])
                frames = raw.split(b"\n\n")[:-1]
                order = [f.decode() if not f.startswith(b"data: ") else json.loads(f[6:])["event"] for f in frames]
                if logs is None and order.count("node_started") == 2:  # the http node sleeps now
                    asked = time.monotonic()
                    logs = (client.get(c1["path"], headers=c1["headers"]), time.monotonic() - asked)
            total = time.monotonic() - began
        response = {**_response(stream), "sse_file": "C0-slow-streaming-to-the-end.sse.txt",
                    "closed_by_client_early": False, "event_order": order}
        _write("C0-slow-streaming-to-the-end", "delay=2s; C1 asked while the http node slept", c0, response,
               {"headers_after_s": round(headers_after, 3), "chunks": chunks, "total_s": round(total, 3)}, keys, raw)
        assert logs is not None
        answer, took = logs
        _write("C1-logs-while-running", "during C0: the running run is listed", c1,
               {**_response(answer), "body": answer.json()}, {"headers_after_s": round(took, 3),
                                                               "total_s": round(took, 3)}, keys)


if __name__ == "__main__":
    main(*sys.argv[1:])
