"""RejectedTable: the input lines the engine rejected (CONTRACT §1), newest first, with the line
number and the sentence that says why, read back from the database.

Narrower than its cells, the error narrows to 20 cells (cut with an ellipsis; the detail pane
shows it whole), then the time drops."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import aiosqlite
from rich.console import RenderableType
from rich.text import Text

from riskterm.tui import formatting as fmt
from riskterm.tui.live_table import LiveTable


class RejectedRow(NamedTuple):
    id: int
    ts: float | None
    line: int | None
    error: str


async def load_rejected(conn: aiosqlite.Connection, limit: int) -> tuple[list[RejectedRow], int]:
    """The newest `limit` rejected lines and how many there are in all."""
    async with conn.execute("SELECT COUNT(*) FROM records WHERE kind = 'rejected'") as cur:
        row = await cur.fetchone()
    total = int(row[0]) if row else 0
    async with conn.execute("SELECT id, body FROM records WHERE kind = 'rejected' "
                            "ORDER BY id DESC LIMIT ?", (limit,)) as cur:
        found = await cur.fetchall()
    rows = []
    for rid, body in found:
        rec: dict[str, Any] = json.loads(body)
        line = rec.get("line")
        rows.append(RejectedRow(int(rid), fmt.parse_ts(rec.get("ts")),
                                line if isinstance(line, int) else None,
                                str(rec.get("error") or "")))
    return rows, total


def describe_rejected(row: RejectedRow, tz: ZoneInfo) -> Text:
    """The whole of one rejected line for the detail pane."""
    text = Text()
    text.append("REJECTED ", style="bold red")
    where = "line " + (str(row.line) if row.line is not None else fmt.DASH)
    text.append(f"{where}  #{row.id}  {fmt.stamp(row.ts, tz)}\n")
    text.append(fmt.safe(row.error, newlines=True))
    return text


class RejectedTable(LiveTable):
    COLUMNS = (
        ("time", "Time", 14),
        ("line", "Line", 8),
        ("error", "Error", 90),
    )
    NARROW = {"error": 20}
    DROP = ("time",)

    def __init__(self, tz: ZoneInfo, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.tz = tz
        self.rows_by_id: dict[int, RejectedRow] = {}
        self.total = 0

    def show(self, rows: list[RejectedRow], total: int) -> None:
        self.rows_by_id = {r.id: r for r in rows}
        self.total = total
        self.sync({str(r.id): tuple(r) for r in rows})

    def render_row(self, raw: tuple[Any, ...]) -> Sequence[RenderableType]:
        row = RejectedRow(*raw)
        when = fmt.local(row.ts, self.tz).strftime("%m-%d %H:%M:%S") if row.ts else fmt.DASH
        return [
            Text(when),
            fmt.right(fmt.DASH if row.line is None else str(row.line), "bold"),
            Text(fmt.safe(row.error), style="red"),
        ]

    def selected_row(self) -> RejectedRow | None:
        key = self.selected_key()
        return None if key is None else self.rows_by_id.get(int(key))
