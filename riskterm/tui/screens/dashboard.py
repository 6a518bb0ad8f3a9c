"""The dashboard (d): accounts, positions, the live violations feed and the selected account's
P&L of the day.

On a small terminal: below 100 columns the positions and the feed stack (positions above);
below 32 lines the accounts pane holds 4 rows (it scrolls) and the P&L pane keeps its one line
of figures without the chart. Each table narrows, then drops columns, in the order its
docstring states (accounts: balance, realized, unrealized, equity, daily limit used)."""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal

from riskterm.tui.accounts_table import AccountsTable
from riskterm.tui.live_table import LiveTable
from riskterm.tui.pnl_sparkline import PnlSparkline
from riskterm.tui.positions_table import PositionsTable
from riskterm.tui.screens.base import Frame, LiveScreen
from riskterm.tui.view import position_rows
from riskterm.tui.violations_feed import ViolationsFeed

POSITIONS_WIDTH = 90  # the whole positions table (app.tcss), when the screen has room
FEED_MIN_WIDTH = 36
STACK_BELOW = 100  # columns: below this the positions and the feed stack (LiveScreen breakpoints)


class DashboardScreen(LiveScreen):
    def __init__(self) -> None:
        super().__init__(name="dashboard")
        self._feed_seq = 0

    def compose_body(self) -> ComposeResult:
        accounts = AccountsTable(self.rt.tz, id="accounts")
        accounts.border_title = "Accounts"
        positions = PositionsTable(id="positions")
        positions.border_title = "Positions"
        feed = ViolationsFeed(self.rt.tz, self.rt.settings.feed_size, id="feed")
        feed.border_title = "Violations · newest first"
        yield accounts
        with Horizontal(id="dashboard-middle"):
            yield positions
            yield feed
        yield PnlSparkline(id="pnl")

    def on_resize(self, event: events.Resize) -> None:
        # side by side (100 columns and more), the violations feed keeps a share of the width
        # and the positions table fits the rest; narrower, the two stack (app.tcss, -narrow)
        # and each takes the whole width
        width = event.size.width
        self.positions.styles.width = (min(POSITIONS_WIDTH, width - FEED_MIN_WIDTH)
                                       if width >= STACK_BELOW else None)

    @property
    def accounts(self) -> AccountsTable:
        return self.query_one("#accounts", AccountsTable)

    @property
    def positions(self) -> PositionsTable:
        return self.query_one("#positions", PositionsTable)

    @property
    def feed(self) -> ViolationsFeed:
        return self.query_one("#feed", ViolationsFeed)

    def refresh_live(self, frame: Frame) -> None:
        accounts = self.accounts
        accounts.now = frame.now
        accounts.sync(frame.accounts)
        self.positions.sync(position_rows(frame.engine))
        new = [rec for seq, rec in self.rt.recent if seq > self._feed_seq]
        if new:
            self._feed_seq = self.rt.record_seq
            self.feed.add_records(new)
        selected = self.selected_account()
        if selected is not None:
            self.rt.selected_account = selected
        pnl = self.rt.pnl
        account = self.rt.selected_account
        self.query_one(PnlSparkline).show(account, pnl.points(account), pnl.version)

    def selected_account(self) -> str | None:
        if self.positions.has_focus:
            account = self.positions.selected_account()
            if account is not None:
                return account
        return self.accounts.selected_key()

    def on_live_table_row_highlighted(self, event: LiveTable.RowHighlighted) -> None:
        account = self.selected_account()
        if account is not None and account != self.rt.selected_account:
            self.rt.selected_account = account
            pnl = self.rt.pnl
            self.query_one(PnlSparkline).show(account, pnl.points(account), pnl.version)
