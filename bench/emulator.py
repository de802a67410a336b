"""The Dify emulator as its own process on its own core, and the admin calls the benchmark needs.

Runs are started the way something outside Airflow starts them (streaming, hang up after the
first event: Dify >= 1.13 keeps the run going) with a held scenario, so they stay ``running``
until the orchestrator ends each one with ``POST /_emulator/runs/{id}/finish`` at the moment it
chose. That moment (taken just before the request is sent) is the reference for detection
latency: the emulator marks the run terminal within that request's round trip (~1 ms here).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from bench.env import child_env, pin, process_cpu_seconds, rss_bytes

API_KEY = "app-emulator-echo"
HELD = {"steps": 1, "step_seconds": 0, "hold": True}


def _fast_client(base_url: str, connections: int, timeout: float = 60.0) -> httpx.AsyncClient:
    from httpx_aiohttp import AiohttpTransport

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout,
                             transport=AiohttpTransport(limits=limits))


class Emulator:
    """``python -m dify_provider.testing serve --port 0``, pinned to ``core``."""

    def __init__(self, core: int | None, home: Path) -> None:
        command = [sys.executable, "-m", "dify_provider.testing", "serve", "--port", "0"]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=child_env(home), cwd=home)
        pin(core, self.proc.pid)
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        if "serving" not in first:
            self.proc.kill()
            raise RuntimeError(f"the emulator did not start: {first!r}")
        self.base_url = first.rsplit(" ", 1)[-1].strip()
        self.root_url = self.base_url.removesuffix("/v1")
        self.port = int(self.root_url.rsplit(":", 1)[1])
        # Keep reading its stdout so a chatty emulator can never block on a full pipe.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        self.admin = httpx.Client(base_url=f"{self.root_url}/_emulator", timeout=300)
        #: Round trips of the last batch of finish requests (the latency reference's uncertainty).
        self.finish_rtts: list[float] = []
        self.admin.get("/apps").raise_for_status()

    # --- inspection ---------------------------------------------------------------------------

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.proc.pid)

    def rss(self) -> int:
        return rss_bytes(self.proc.pid)

    def requests(self, method: str = "GET") -> list[dict[str, Any]]:
        """The service-API requests recorded since the last reset (path, status, ...)."""
        response = self.admin.get("/requests", params={"method": method})
        response.raise_for_status()
        records: list[dict[str, Any]] = response.json()
        return records

    # --- control --------------------------------------------------------------------------------

    def reset(self) -> None:
        self.admin.post("/reset").raise_for_status()

    def start_held_runs(self, count: int, concurrency: int = 50) -> list[str]:
        """``count`` runs that stay ``running`` until finished by the admin API."""
        self.admin.post("/script", json={"app": "echo", "scenarios": [HELD] * count}).raise_for_status()
        return asyncio.run(self._start(count, concurrency))

    async def _start(self, count: int, concurrency: int) -> list[str]:
        gate = asyncio.Semaphore(concurrency)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with _fast_client(self.base_url, concurrency) as client:

            async def one(i: int) -> str:
                body = {"inputs": {"text": f"bench {i}"}, "user": f"bench-{i % 50}", "response_mode": "streaming"}
                async with gate, client.stream("POST", "/workflows/run", json=body, headers=headers) as response:
                    async for line in response.aiter_lines():
                        if line.startswith("data: "):
                            return str(httpx.Response(200, content=line[6:]).json()["workflow_run_id"])
                raise RuntimeError("the stream ended without an event")

            return list(await asyncio.gather(*(one(i) for i in range(count))))

    def finish_on_schedule(self, schedule: Sequence[tuple[float, str]]) -> dict[str, float]:
        """End each run at its ``time.monotonic()`` moment; return run id -> moment the finish
        request was sent (the latency reference). Blocks until the last one is sent."""
        return asyncio.run(self._finish_all(schedule))

    async def _finish_all(self, schedule: Sequence[tuple[float, str]]) -> dict[str, float]:
        sent: dict[str, float] = {}
        self.finish_rtts = []
        async with _fast_client(f"{self.root_url}/_emulator", 20) as client:

            async def one(at: float, run_id: str) -> None:
                await asyncio.sleep(max(0.0, at - time.monotonic()))
                sent[run_id] = time.monotonic()
                for attempt in range(3):  # the admin API is loopback, but never lose a finish
                    try:
                        response = await client.post(f"/runs/{run_id}/finish", json={"status": "succeeded"})
                        if response.status_code in (200, 409):  # 409: already ended (stopped/finished)
                            self.finish_rtts.append(time.monotonic() - sent[run_id])
                            return
                    except httpx.HTTPError:
                        if attempt == 2:
                            raise
                    await asyncio.sleep(0.05)

            await asyncio.gather(*(one(at, run_id) for at, run_id in schedule))
        return sent

    # --- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        self.admin.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
