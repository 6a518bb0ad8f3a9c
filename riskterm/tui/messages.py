"""Messages from the engine side to the app, named as past events. The host never touches a
widget: its sink posts these and handlers on the App fold them into the app's state."""

from __future__ import annotations

from typing import Any

from textual.message import Message


class RecordsCommitted(Message):
    """A batch of records was committed to the database (so it may be shown)."""

    def __init__(self, batch: list[tuple[dict[str, Any], str]]) -> None:
        super().__init__()
        self.records = [rec for rec, _ in batch]


class EngineStarted(Message):
    """The host opened the database, restored state and started the source."""


class SourceEnded(Message):
    """The source ran out (end of a replay, --max-events) or stopped; error says why if failed."""

    def __init__(self, error: str | None = None) -> None:
        super().__init__()
        self.error = error
