"""``python -m dify_provider.testing serve`` (Dify) or ``... chenyu`` (Chenyu): an emulator as a
process, for end-to-end tests that run Airflow (or anything else) in other processes and script
it over ``/_emulator``."""

from __future__ import annotations

import argparse
import json
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dify_provider.testing.config import add_cli_flags, from_cli

if TYPE_CHECKING:
    from dify_provider.testing.models import EmulatedApp


def _load_apps(path: Path) -> list[EmulatedApp]:
    """``{"apps": [...]}`` or a bare list, each entry an :class:`EmulatedApp` in JSON form."""
    from pydantic import TypeAdapter

    from dify_provider.testing.models import EmulatedApp

    raw = json.loads(path.read_text())
    return TypeAdapter(list[EmulatedApp]).validate_python(raw["apps"] if isinstance(raw, dict) else raw)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dify-emulator", description="A local Dify service API emulator.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve until SIGINT/SIGTERM")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=5001, help="0 picks a free port")
    serve.add_argument("--config", type=Path, help='JSON file: {"apps": [EmulatedApp, ...]}')
    serve.add_argument("--access-log", action="store_true")
    add_cli_flags(serve)  # one flag per EmulatorConfig switch
    chenyu = commands.add_parser("chenyu", help="serve the Chenyu progress API until SIGINT/SIGTERM")
    chenyu.add_argument("--host", default="127.0.0.1")
    chenyu.add_argument("--port", type=int, default=5002, help="0 picks a free port")
    chenyu.add_argument("--api-key", help="the one key it accepts (default: the emulator's fixed test key)")
    return parser


def _wait_for_signal() -> None:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()


def _serve_chenyu(args: argparse.Namespace) -> int:
    from dify_provider.testing.chenyu import DEFAULT_API_KEY, ChenyuEmulator

    with ChenyuEmulator(api_key=args.api_key or DEFAULT_API_KEY, host=args.host, port=args.port) as emulator:
        print(f"Chenyu emulator serving {emulator.base_url}", flush=True)
        print(f"admin API: {emulator.admin_url}/ (POST /runs creates a run order)", flush=True)
        print(f"AIRFLOW_CONN_CHENYU_DEFAULT='{emulator.airflow_connection_json()}'", flush=True)
        _wait_for_signal()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "chenyu":
        return _serve_chenyu(args)
    from dify_provider.testing.server import DifyEmulator

    emulator = DifyEmulator(
        _load_apps(args.config) if args.config else None,
        host=args.host,
        port=args.port,
        access_log=args.access_log,
        **from_cli(args),
    )
    with emulator:
        print(f"Dify emulator {emulator.config.server_version} serving {emulator.base_url}", flush=True)
        print(f"admin API: {emulator.admin_url}/", flush=True)
        for app in emulator.apps.values():
            print(f"app {app.name}  mode={app.mode}  key={app.api_key}  app_id={app.app_id}", flush=True)
        # The last start-up line: scripts reading this output wait for it, not for a pause.
        print(f"ready ({len(emulator.apps)} apps)", flush=True)
        _wait_for_signal()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
