"""PositionsTable: every open position with its P&L, working stop and how long it has been open.

Narrower than its 88 cells, the account narrows to 8 cells, then columns drop in this order:
open (how long), avg price, last, stop. Account, symbol, quantity and P&L stay."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import RenderableType
from rich.text import Text

from riskterm.tui import formatting as fmt
from riskterm.tui.live_table import LiveTable
from riskterm.tui.view import PositionRow, account_of_position_key


class PositionsTable(LiveTable):
    SIZE_STEP = 16
    COLUMNS = (
        ("account", "Account", 14),
        ("symbol", "Symbol", 7),
        ("qty", "Qty", 5),
        ("avg", "Avg price", 10),
        ("last", "Last", 10),
        ("unrealized", "Unrealized", 10),
        ("stop", "Stop", 10),
        ("open", "Open", 6),
    )
    NARROW = {"account": 8}
    DROP = ("open", "avg", "last", "stop")

    def render_row(self, raw: tuple[Any, ...]) -> Sequence[RenderableType]:
        row = PositionRow(*raw)
        side = "green" if row.qty > 0 else "red"
        stop = (Text("none", style="bold red", justify="right") if row.stop is None
                else fmt.right(fmt.price(row.stop)))
        return [
            Text(fmt.safe(row.account)),
            Text(fmt.safe(row.symbol), style="bold"),
            fmt.right(f"{row.qty:+d}", side),
            fmt.right(fmt.price(row.avg_price)),
            fmt.right(fmt.price(row.mark)),
            fmt.pnl(row.unrealized),
            stop,
            fmt.right(fmt.duration(row.opened)),
        ]

    def selected_account(self) -> str | None:
        key = self.selected_key()
        return None if key is None else account_of_position_key(key)
