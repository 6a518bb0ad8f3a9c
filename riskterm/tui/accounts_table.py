"""AccountsTable: one row per account — trading state, money, the day's P&L, the daily loss limit
used and the lockout. A halted account's row is red from end to end.

Narrower than its 153 cells (80 columns: 76), the account name narrows to 10 cells and the
lockout to 14 (cut with an ellipsis), then columns drop in this order: balance, realized,
unrealized, equity, daily limit used. The account, its state, the day's P&L and the lockout stay.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import RenderableType
from rich.text import Text

from riskterm.tui import formatting as fmt
from riskterm.tui.live_table import LiveTable
from riskterm.tui.view import AccountRow


class AccountsTable(LiveTable):
    COLUMNS = (
        ("account", "Account", 15),
        ("state", "State", 10),
        ("balance", "Balance", 12),
        ("equity", "Equity", 12),
        ("realized", "Realized", 10),
        ("unrealized", "Unrealized", 10),
        ("total", "P&L today", 10),
        ("limit", "Daily limit used", 16),
        ("lockout", "Lockout", 40),
    )
    NARROW = {"account": 10, "lockout": 14}
    DROP = ("balance", "realized", "unrealized", "equity", "limit")

    def __init__(self, tz: ZoneInfo, **kw: Any) -> None:
        super().__init__(**kw)
        self.tz = tz
        self.now = 0.0

    def render_row(self, raw: tuple[Any, ...]) -> Sequence[RenderableType]:
        row = AccountRow(*raw)
        halted = row.state == "halted"
        row_style = "bold red" if halted else ""
        state = Text(fmt.STATE_LABEL.get(row.state, row.state),
                     style=fmt.STATE_STYLE.get(row.state, ""))
        if row.lockout is None:
            lockout = Text(fmt.DASH, style="dim")
        else:
            when = fmt.until(row.lockout_until, self.now, self.tz)
            until = "PERMANENT" if row.permanent else "until " + when
            lockout = Text(f"{fmt.safe(row.lockout)} · {until}",
                           style="bold red" if halted else "yellow")
        cells: list[Text] = [
            Text(fmt.safe(row.account), style=row_style or "bold"),
            state,
            fmt.right(fmt.money(row.balance), row_style),
            fmt.right(fmt.money(row.equity), row_style),
            fmt.pnl(row.realized),
            fmt.pnl(row.unrealized),
            fmt.pnl(row.total),
            fmt.bar(row.limit_used),
            lockout,
        ]
        return cells
