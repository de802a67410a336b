"""The e2e's chat part: the chatflow example (a mapped task per question) through the real
scheduler, workers and API server; called by ``scripts/e2e.py`` once examples 1 and 2 are checked."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

DAG_CHAT = "example_dify_chat"


def run_chat_example(stack: Any, emulator: Any, report: Any, poll: Any) -> None:
    with report.phase("Example 3: a chatflow answers a list of questions (mapped DifyChatOperator tasks)"):
        conn = emulator.connection("chat")
        stack.api("POST", "/connections", {
            "connection_id": "dify_chat", "conn_type": conn["conn_type"], "host": conn["host"],
            "password": conn["password"], "extra": json.dumps(conn["extra"]),
        })
        poll("the chat example to be parsed and unpaused",
             lambda: not stack.get(f"/dags/{DAG_CHAT}")["is_paused"], 120, alive=stack.alive)
        before = {m["id"] for m in emulator.admin("GET", "/messages")}
        run_id = stack.api("POST", f"/dags/{DAG_CHAT}/dagRuns", {"logical_date": None})["dag_run_id"]
        path = f"/dags/{DAG_CHAT}/dagRuns/{stack.q(run_id)}"

        def finished() -> str | None:
            state = str(stack.get(path)["state"])
            return state if state in ("success", "failed") else None

        report.equal(poll(f"{DAG_CHAT} to finish", finished, 240, alive=stack.alive), "success",
                     f"{DAG_CHAT}: DAG run success")
        messages = [m for m in emulator.admin("GET", "/messages") if m["id"] not in before]
        tis = stack.get(stack.ti_path(DAG_CHAT, run_id))["task_instances"]
        asked = [t for t in tis if t["task_id"] == "ask"]
        report.equal((len(asked), {t["state"] for t in asked}, len(messages)), (3, {"success"}, 3),
                     "example 3: three mapped 'ask' tasks succeeded, one chatflow message each")
        totals = stack.xcom(DAG_CHAT, run_id, "report")
        tokens = sum(int(m["usage"]["total_tokens"]) for m in messages)
        price = sum(Decimal(m["usage"]["total_price"]) for m in messages)
        report.equal((totals["answers"], totals["total_tokens"], Decimal(totals["total_price"]), totals["currency"]),
                     (3, tokens, price, "USD"), f"example 3: 'report' totals the usage ({tokens} tokens, {price} USD)")
