"""ViolationsTable: the violation history from the database, newest first, each row with the
enforcement and lockout that followed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import RenderableType
from rich.text import Text
from textual.widgets import DataTable

from riskterm.tui import formatting as fmt
from riskterm.tui.history import HistoryRow

COLUMNS = (
    ("id", "#", 7),
    ("time", "Time", 19),
    ("kind", "Kind", 9),
    ("account", "Account", 15),
    ("rule", "Rule", 26),
    ("symbol", "Symbol", 7),
    ("message", "Message", 44),
    ("enforcement", "Enforcement", 34),
)


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.2f}"
    return fmt.DASH if v is None else str(v)


class ViolationsTable(DataTable[RenderableType]):
    def __init__(self, tz: ZoneInfo, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.tz = tz
        self.rows_by_id: dict[int, HistoryRow] = {}

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, width=width, key=key)

    def _cells(self, row: HistoryRow) -> list[RenderableType]:
        kind_style = "bold red" if row.kind == "violation" else "yellow"
        enforcement = row.enforcement or fmt.DASH
        if row.lockout:
            enforcement += f" → {row.lockout}"
        return [
            fmt.right(str(row.id), "dim"),
            Text(fmt.stamp(row.ts, self.tz)[:19]),
            Text(row.kind, style=kind_style),
            Text(row.account, style="bold"),
            Text(row.rule),
            Text(row.symbol or fmt.DASH),
            Text(row.message, no_wrap=True, overflow="ellipsis"),
            Text(enforcement, style="cyan" if row.enforcement else "dim", no_wrap=True,
                 overflow="ellipsis"),
        ]

    def replace(self, rows: Iterable[HistoryRow]) -> None:
        """A new query (filters changed): the table shows exactly these rows."""
        self.clear()
        self.rows_by_id.clear()
        self.prepend(rows, limit=None)

    def prepend(self, rows: Iterable[HistoryRow], limit: int | None) -> int:
        """Rows newer than the ones shown: added, then the table is kept newest first."""
        added = 0
        for row in rows:
            if row.id in self.rows_by_id:
                continue
            self.rows_by_id[row.id] = row
            self.add_row(*self._cells(row), key=str(row.id))
            added += 1
        if added and self.row_count > added:
            self.sort("id", key=lambda cell: int(cell.plain), reverse=True)
        if limit is not None and len(self.rows_by_id) > limit:
            for rid in sorted(self.rows_by_id)[: len(self.rows_by_id) - limit]:
                self.remove_row(str(rid))
                del self.rows_by_id[rid]
        return added

    @property
    def max_id(self) -> int:
        return max(self.rows_by_id, default=0)

    def selected_row(self) -> HistoryRow | None:
        if not self.row_count:
            return None
        try:
            key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:
            return None
        return self.rows_by_id.get(int(key.value or 0))


def describe(row: HistoryRow, tz: ZoneInfo) -> Text:
    """The full text of one history row for the detail pane."""
    text = Text()
    text.append(f"{row.kind.upper()} ", style="bold red" if row.kind == "violation" else "yellow")
    text.append(f"#{row.id}  {fmt.stamp(row.ts, tz)}  {row.account}  {row.rule}")
    if row.symbol:
        text.append(f"  {row.symbol}")
    text.append(f"\n{row.message}\nvalue {_value(row.value)} · limit {_value(row.limit)}",
                style="")
    text.append("\nenforcement: ", style="bold")
    text.append(row.enforcement or "none", style="cyan" if row.enforcement else "dim")
    if row.lockout:
        text.append("\nlockout: ", style="bold")
        text.append(row.lockout, style="bold red")
    return text
