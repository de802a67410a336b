"""The emulator's server-wide switches, declared once.

:class:`EmulatorConfig` is the single declaration: ``DifyEmulator(**switches)``,
``DifyEmulator.configure(**changes)``, the admin API's ``/_emulator/config`` body and the CLI's
flags are all derived from its fields, so a new switch is one field here (plus the code that
honours it). Defaults are what a real Dify API **1.13.2** server does (checked against recordings
of one, ``tests/contract/recordings``); every other behaviour the emulator knows is a switch away.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, field_validator


def version_tuple(version: str) -> tuple[int, ...]:
    """``"1.13.2"`` -> ``(1, 13, 2)``; ``"v1.14.0-rc1"`` -> ``(1, 14, 0)``."""
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


class EmulatorConfig(BaseModel):
    """Server-wide behaviour. Frozen: change it with ``DifyEmulator.configure(**changes)``
    (undone by ``reset()``, which restores what the constructor was given)."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    server_version: str = Field(
        "1.13.2",
        description="What X-Version (and GET /v1/ with index_route) report; >= 1.14 also serves the "
        "events and human-input form APIs (has_events_api).",
    )
    version_header: bool = Field(True, description="Send X-Version: <server_version> on every service-API response.")
    index_route: bool = Field(
        False,
        description="Answer GET /v1/ with {welcome, api_version, server_version} as Dify's docs describe "
        "(1.13.2 answers 404 HTML).",
    )
    ping_interval: float = Field(10.0, gt=0, description="Seconds between 'event: ping' keep-alives.")
    stream_pings: Literal["run", "fixed"] = Field(
        "run",
        description="run: one ping as the stream opens, then every ping_interval while the run executes "
        "(1.13.2); fixed: every ping_interval from the stream's start, none at open (the emulator before 1.13.2 "
        "defaults).",
    )
    stream_idle_timeout: float = Field(
        300.0, gt=0, description="The server ends a stream after this many seconds without sending anything."
    )
    streaming_input_errors: Literal["silent", "http", "event"] = Field(
        "silent",
        description="Invalid inputs in streaming mode. silent: HTTP 200, one ping, then nothing until the idle "
        "timeout, no run (1.13.2); http: the 400 invalid_param envelope; event: an in-stream error event before "
        "workflow_started (later Dify, PR #36973).",
    )
    stopped_run_record: Literal["running", "stopped"] = Field(
        "running",
        description="What GET /workflows/run/{id} and the logs show for a run stopped through the stop API. "
        "running: the record stays running forever (1.13.2); stopped: status stopped with 'Stopped by user.'",
    )
    logs_running_runs: bool = Field(
        True,
        description="List unfinished runs in GET /workflows/logs (status running, totals 0): 1.13.2 writes the "
        "log row at workflow_started; False: only once the run has finished, as older pipelines did.",
    )
    live_run_totals: bool = Field(
        False,
        description="GET /workflows/run/{id} shows a running run's total_tokens and total_steps so far. False: "
        "0 until the run ends (1.13.2 writes them only then); True: a server that updates them as nodes finish.",
    )
    pre_113_disconnect: bool = Field(
        False, description="Dify <= 1.12: a streaming client that hangs up orphans its run (running forever)."
    )

    @field_validator("server_version")
    @classmethod
    def _has_numbers(cls, value: str) -> str:
        if not version_tuple(value):
            raise ValueError(f"not a version: {value!r}")
        return value

    @property
    def has_events_api(self) -> bool:
        """``GET /workflow/{id}/events`` and ``/form/human_input/{token}`` exist from Dify 1.14."""
        return version_tuple(self.server_version) >= (1, 14)

    @property
    def pauses_as_113(self) -> bool:
        """Dify 1.13.x's pause handling (recordings ``tests/contract/recordings-hitl``): a paused
        blocking workflow answer names no form (no ``reasons``), a blocking chatflow that pauses
        answers 400 "queue listening stopped unexpectedly.", and a stop leaves a paused run paused
        (a later answer then strands it ``running``). From 1.14 the other way round."""
        return not self.has_events_api

    @classmethod
    def switches(cls) -> tuple[str, ...]:
        return tuple(cls.model_fields)

    @classmethod
    def build(cls, base: EmulatorConfig | Mapping[str, Any] | None = None, **switches: Any) -> EmulatorConfig:
        """``base`` (a config or a mapping of switches; None: the defaults) with ``switches`` applied."""
        start = base if isinstance(base, EmulatorConfig) else cls().changed(**dict(base or {}))
        return start.changed(**switches)

    def changed(self, **changes: Any) -> EmulatorConfig:
        """A validated copy with ``changes``; an unknown name is a ``TypeError`` naming the known
        ones, a bad value a ``pydantic.ValidationError`` (a ``ValueError``)."""
        unknown = sorted(set(changes) - set(type(self).model_fields))
        if unknown:
            raise TypeError(f"unknown emulator switch(es) {', '.join(map(repr, unknown))}; "
                            f"known: {', '.join(self.switches())}")
        if not changes:
            return self
        return type(self).model_validate({**self.model_dump(), **changes})


# -- CLI ---------------------------------------------------------------------------------------


def add_cli_flags(parser: argparse.ArgumentParser) -> None:
    """One ``--kebab-case`` flag per switch (booleans as ``--x/--no-x``); unset flags keep the default."""
    group = parser.add_argument_group("server behaviour (defaults: Dify 1.13.2)")
    for name, field in EmulatorConfig.model_fields.items():
        flag = "--" + name.replace("_", "-")
        default = field.default
        help_text = f"{field.description} (default: {default})"
        annotation = field.annotation
        if annotation is bool:
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif get_origin(annotation) is Literal:
            group.add_argument(flag, dest=name, choices=get_args(annotation), default=None, help=help_text)
        else:
            kind = float if annotation is float else str
            group.add_argument(flag, dest=name, type=kind, default=None, help=help_text)


def from_cli(args: argparse.Namespace) -> dict[str, Any]:
    """The switches given on the command line (flags left out are not included)."""
    return {name: getattr(args, name) for name in EmulatorConfig.model_fields if getattr(args, name, None) is not None}
