"""The tables of the account screen: the account's rules with their state and distance, and its
working orders. In a narrow screen the rules' Rule and Bound columns narrow, then Bound drops;
the orders' Order column narrows, then Placed, Type and Order drop."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import RenderableType
from rich.text import Text

from riskterm.tui import formatting as fmt
from riskterm.tui.account_view import OrderRow, RuleRow
from riskterm.tui.live_table import LiveTable

STATE_STYLE = {"armed": "green", "warning": "bold yellow", "breached": "bold white on red"}


def _amount(value: float | None, money: bool) -> str:
    if value is None:
        return fmt.DASH
    return fmt.money(value) if money else f"{value:g}"


class AccountRulesTable(LiveTable):
    COLUMNS = (
        ("rule", "Rule", 26),
        ("state", "State", 8),
        ("value", "Value", 10),
        ("limit", "Limit", 10),
        ("distance", "Distance", 10),
        ("note", "Bound", 28),
    )
    # a narrow screen: the rule name and the bound narrow, then the bound goes (the value,
    # limit and distance say the same for the rules that have them)
    NARROW = {"rule": 18, "note": 12}
    ROW_FIELDS = {"note": 6}  # account_view.RuleRow: `money` comes before it
    DROP = ("note",)

    def render_row(self, raw: tuple[Any, ...]) -> Sequence[RenderableType]:
        row = RuleRow(*raw)
        distance = fmt.right(_amount(row.distance, row.money))
        if row.distance is not None and row.distance <= 0:
            distance.stylize("bold red")
        return [
            Text(row.rule, style="bold"),
            Text(row.state, style=STATE_STYLE.get(row.state, "")),
            fmt.right(_amount(row.value, row.money)),
            fmt.right(_amount(row.limit, row.money)),
            distance,
            Text(fmt.safe(row.note) or fmt.DASH, style="dim"),
        ]


class OrdersTable(LiveTable):
    COLUMNS = (
        ("order", "Order", 12),
        ("symbol", "Symbol", 7),
        ("side", "Side", 4),
        ("qty", "Qty", 4),
        ("type", "Type", 10),
        ("price", "Price", 10),
        ("stop", "Stop", 10),
        ("time", "Placed", 8),
    )
    NARROW = {"order": 6}
    DROP = ("time", "type", "order")

    def __init__(self, tz: ZoneInfo, **kw: Any) -> None:
        super().__init__(**kw)
        self.tz = tz

    def render_row(self, raw: tuple[Any, ...]) -> Sequence[RenderableType]:
        row = OrderRow(*raw)
        return [
            Text(fmt.safe(row.order_id)),
            Text(fmt.safe(row.symbol), style="bold"),
            Text(row.side, style="green" if row.side == "buy" else "red"),
            fmt.right(str(row.qty)),
            Text(fmt.safe(row.order_type)),
            fmt.right(fmt.price(row.price)),
            fmt.right(fmt.price(row.stop_price)),
            Text(fmt.clock(row.ts, self.tz)),
        ]
