"""ViolationsTable: the violation history from the database, newest first, each row with the
enforcement and lockout that followed.

Narrower than its 154 cells, the message narrows to 16 cells, the rule to 16, the enforcement to
12 and the account to 10 (cut with an ellipsis; the detail pane below shows the row whole), then
columns drop in this order: #, symbol, enforcement, kind, time."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import RenderableType
from rich.text import Text

from riskterm.tui import formatting as fmt
from riskterm.tui.history import HistoryRow
from riskterm.tui.live_table import LiveTable

#: what a rule's value and limit measure, when not money (the rules that evaluate with
#: money=False in riskterm/rules): seconds, a share of equity, or a count
SECONDS_RULES = frozenset({"no_stop_loss_grace"})
SHARE_RULES = frozenset({"max_position_value_pct"})
COUNT_RULES = frozenset({"auth_loss_guard", "consecutive_losses", "max_contracts",
                         "max_contracts_per_instrument", "max_order_size", "order_rate_limit",
                         "trade_frequency_limit"})


def value_text(v: Any, rule: str = "") -> str:
    """A violation's value or limit in its rule's unit: 42s, 12.5%, 3, else money."""
    if v is None:
        return fmt.DASH
    if isinstance(v, bool) or not isinstance(v, int | float):
        return fmt.safe(v)
    if rule in SECONDS_RULES:
        return fmt.duration(v)
    if rule in SHARE_RULES:
        return f"{v * 100:.1f}%"
    if rule in COUNT_RULES:
        return f"{v:g}"
    return fmt.money(v)


class ViolationsTable(LiveTable):
    SIZE_STEP = 16
    COLUMNS = (
        ("id", "#", 6),
        ("time", "Time", 14),
        ("kind", "Kind", 9),
        ("account", "Account", 14),
        ("rule", "Rule", 28),
        ("symbol", "Symbol", 6),
        ("message", "Message", 36),
        ("enforcement", "Enforcement", 25),
    )
    NARROW = {"message": 16, "rule": 16, "enforcement": 12, "account": 10}
    ROW_FIELDS = {"enforcement": 9}  # history.HistoryRow: value and limit come between
    DROP = ("id", "symbol", "enforcement", "kind", "time")

    def __init__(self, tz: ZoneInfo, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.tz = tz
        self.rows_by_id: dict[int, HistoryRow] = {}

    def render_row(self, raw: tuple[Any, ...]) -> Sequence[RenderableType]:
        row = HistoryRow(*raw)
        kind_style = "bold red" if row.kind == "violation" else "yellow"
        enforcement = row.enforcement or fmt.DASH
        if row.lockout:
            enforcement += f" → {row.lockout}"
        when = fmt.local(row.ts, self.tz).strftime("%m-%d %H:%M:%S") if row.ts else fmt.DASH
        return [
            fmt.right(str(row.id), "dim"),
            Text(when),
            Text(row.kind, style=kind_style),
            Text(fmt.safe(row.account), style="bold"),
            Text(fmt.safe(row.rule)),
            Text(fmt.safe(row.symbol or fmt.DASH)),
            Text(fmt.safe(row.message)),
            Text(fmt.safe(enforcement), style="cyan" if row.enforcement else "dim"),
        ]

    def show(self, rows: Iterable[HistoryRow], *, replace: bool, limit: int) -> int:
        """Show `rows` (replacing what is shown, or added to it); the newest `limit`, newest
        first. Returns how many rows are new."""
        if replace:
            self.rows_by_id = {}
        new = 0
        for row in rows:
            if row.id not in self.rows_by_id:
                self.rows_by_id[row.id] = row
                new += 1
        newest = sorted(self.rows_by_id, reverse=True)[:limit]
        self.rows_by_id = {rid: self.rows_by_id[rid] for rid in newest}
        self.sync({str(rid): tuple(self.rows_by_id[rid]) for rid in newest})
        return new

    @property
    def max_id(self) -> int:
        return max(self.rows_by_id, default=0)

    def selected_row(self) -> HistoryRow | None:
        key = self.selected_key()
        return None if key is None else self.rows_by_id.get(int(key))


def describe(row: HistoryRow, tz: ZoneInfo) -> Text:
    """The full text of one history row for the detail pane."""
    text = Text()
    text.append(f"{row.kind.upper()} ", style="bold red" if row.kind == "violation" else "yellow")
    text.append(f"#{row.id}  {fmt.stamp(row.ts, tz)}  {fmt.safe(row.account)}  "
                f"{fmt.safe(row.rule)}")
    if row.symbol:
        text.append(f"  {fmt.safe(row.symbol)}")
    text.append(f"\n{fmt.safe(row.message)}\nvalue {value_text(row.value, row.rule)} · "
                f"limit {value_text(row.limit, row.rule)}")
    text.append("\nenforcement: ", style="bold")
    text.append(fmt.safe(row.enforcement or "none"), style="cyan" if row.enforcement else "dim")
    if row.lockout:
        text.append("\nlockout: ", style="bold")
        text.append(fmt.safe(row.lockout), style="bold red")
    return text
