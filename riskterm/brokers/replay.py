"""A replay of recorded events — a file (`--source replay:PATH`) or stdin (`--source -`) — as a
broker that cannot execute: every enforcement is recorded `dry_run` (CONTRACT §2).

The host reads a replay in chunks of (line number, parsed line) — `chunks()` — for speed, a big
file parsed on the other core (sources.parse_ahead); `events()` is the same stream one event
at a time, for callers that want the plain broker interface.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from riskterm.brokers.base import Command, Link, Snapshot
from riskterm.sources import parse_ahead
from riskterm.sources.replay import parsed, read_lines


class DryRunBroker:
    """Nothing is sent; the latest commands are kept for inspection."""

    name = "dry_run"
    executes = False
    live = False

    def __init__(self) -> None:
        self.commands: deque[Command] = deque(maxlen=1000)
        self.link = Link("offline")

    def submit(self, command: Command) -> None:
        self.commands.append(command)


class ReplayBroker(DryRunBroker):
    def __init__(self, path: str | None, *, fast: bool = False) -> None:
        super().__init__()
        self.path = path  # None: stdin
        self.name = "stdin" if path is None else "replay"
        self.fast = fast  # full speed: a big file may be parsed in a child process

    async def start(self) -> None:
        return None

    def chunks(self) -> AsyncIterator[list[tuple[int, Any]]]:
        """Lists of (line number, what parse_line made of the line), in order."""
        if self.fast and self.path is not None and parse_ahead.usable(self.path):
            return parse_ahead.parsed_chunks(self.path)
        return parsed(read_lines(self.path))

    async def events(self) -> AsyncIterator[dict[str, Any] | Snapshot]:
        async for chunk in self.chunks():
            for _line, event in chunk:
                if isinstance(event, dict):
                    yield event

    async def close(self) -> None:
        return None
