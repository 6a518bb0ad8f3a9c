"""Account (enter on an account row, or A): one account in full — its money and levels, every
enabled rule with its value, limit, state and distance, a chart of the day's P&L with the zero
line, the daily loss limit and the trailing floor, its positions, working orders, and today's
violations with the enforcements that followed. escape goes back.

It is a mode of the app like the other main screens, so opening it again is a resume of a built
screen, not a new build; the account it shows is the app's `account_target`, read as it resumes.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Static

from riskterm.tui import account_view
from riskterm.tui import formatting as fmt
from riskterm.tui.account_tables import AccountRulesTable, OrdersTable
from riskterm.tui.equity_chart import EquityChart, legend
from riskterm.tui.history import READ_ERRORS, load_history
from riskterm.tui.positions_table import PositionsTable
from riskterm.tui.screens.base import Frame, LiveScreen
from riskterm.tui.view import AccountRow, position_rows
from riskterm.tui.violations_table import ViolationsTable

HISTORY_EVERY = 1.0  # seconds between two reads of the account's violations while open
HISTORY_LIMIT = 500  # today's violations shown, newest first
NARROW = 120  # below this width the panes stack


class AccountScreen(LiveScreen):
    DEFAULT_CSS = """
    #acct-body { height: 1fr; }
    #acct-summary { height: auto; padding: 0 1; }
    .acct-row { height: auto; }
    #acct-rules, #acct-positions, #acct-orders, #acct-history, #acct-chart-box {
        border: round $primary 60%; border-title-color: $text; border-title-style: bold;
    }
    #acct-rules:focus, #acct-positions:focus, #acct-orders:focus, #acct-history:focus {
        border: round $accent;
    }
    #acct-rules { width: 106; height: auto; max-height: 24; }
    #acct-chart-box { width: 1fr; height: 20; }
    #acct-chart { height: 1fr; }
    #acct-legend { height: auto; }
    #acct-positions { width: 1fr; height: auto; max-height: 12; }
    #acct-orders { width: 1fr; height: auto; max-height: 12; }
    #acct-history { height: auto; max-height: 16; }
    AccountScreen.-narrow .acct-row { layout: vertical; }
    AccountScreen.-narrow #acct-rules, AccountScreen.-narrow #acct-positions,
    AccountScreen.-narrow #acct-orders, AccountScreen.-narrow #acct-chart-box { width: 1fr; }
    AccountScreen.-narrow #acct-chart-box { height: 16; }
    """

    def __init__(self) -> None:
        super().__init__(name="account")
        self.account: str | None = None
        self._summary_shown: Text | None = None  # what the summary line shows now
        self._history_version = -1
        self._history_at = 0.0
        self._history_for: tuple[str | None, float] | None = None
        self._reading = False
        self.loads = 0  # completed history reads, for tests

    def compose_body(self) -> ComposeResult:
        tz = self.rt.tz
        with VerticalScroll(id="acct-body"):
            yield Static("", id="acct-summary")
            with Horizontal(id="acct-top", classes="acct-row"):
                rules = AccountRulesTable(id="acct-rules")
                rules.border_title = "Rules"
                yield rules
                with Vertical(id="acct-chart-box"):
                    yield EquityChart(tz, id="acct-chart",
                                      deterministic=self.rt.settings.deterministic)
                    yield Static("", id="acct-legend")
            with Horizontal(id="acct-mid", classes="acct-row"):
                positions = PositionsTable(id="acct-positions")
                positions.border_title = "Positions"
                yield positions
                orders = OrdersTable(tz, id="acct-orders")
                orders.border_title = "Working orders"
                yield orders
            history = ViolationsTable(tz, id="acct-history")
            history.border_title = "Today's violations and enforcements"
            yield history

    def show_account(self, account: str | None) -> None:
        """Point the screen at `account`: what was shown for another one is cleared."""
        if account == self.account:
            return
        self.account = account
        self._history_for = None
        self._history_version = -1
        if self.ready:
            for table in (self.rules, self.positions, self.orders):
                table.sync({})
            self.history.show([], replace=True, limit=HISTORY_LIMIT)

    def on_mount(self) -> None:
        super().on_mount()
        self.show_account(self.rt.account_target)

    def on_screen_resume(self, event: events.ScreenResume) -> None:
        self.show_account(self.rt.account_target)
        super().on_screen_resume(event)

    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.width < NARROW, "-narrow")

    @property
    def rules(self) -> AccountRulesTable:
        return self.query_one("#acct-rules", AccountRulesTable)

    @property
    def positions(self) -> PositionsTable:
        return self.query_one("#acct-positions", PositionsTable)

    @property
    def orders(self) -> OrdersTable:
        return self.query_one("#acct-orders", OrdersTable)

    @property
    def history(self) -> ViolationsTable:
        return self.query_one("#acct-history", ViolationsTable)

    @property
    def chart(self) -> EquityChart:
        return self.query_one("#acct-chart", EquityChart)

    def selected_account(self) -> str | None:
        return self.account

    def refresh_live(self, frame: Frame) -> None:
        account = self.account
        engine = frame.engine
        if account is None:
            return
        row = frame.accounts.get(account)
        levels = account_view.levels(engine, account)
        summary = self._summary(account, row, levels, frame.now)
        if summary != self._summary_shown:  # a Static re-renders on every update
            self._summary_shown = summary
            self.query_one("#acct-summary", Static).update(summary)
        self.rules.sync(account_view.rule_rows(engine, account))
        self.positions.sync(position_rows(engine, account))
        self.orders.sync(account_view.order_rows(engine, account))
        pnl = self.rt.pnl
        if self.chart.show(account, pnl.points(account), pnl.step, frame.now, levels,
                           pnl.version):
            line = Text()
            for i, (words, colour) in enumerate(legend(levels)):
                line.append("  " if i else "")
                line.append("── ", style=colour)
                line.append(words)
            self.query_one("#acct-legend", Static).update(line)
        self._maybe_read_history(frame.now)

    def _summary(self, account: str, row: AccountRow | None,
                 levels: account_view.Levels | None, now: float) -> Text:
        text = Text()
        text.append(fmt.safe(account), style="bold")
        if row is None:
            text.append("  not known to the engine", style="dim")
            return text
        text.append("  ")
        text.append(fmt.STATE_LABEL.get(row.state, row.state),
                    style=fmt.STATE_STYLE.get(row.state, ""))
        text.append(f"   balance {fmt.money(row.balance)}   equity {fmt.money(row.equity)}   "
                    "P&L today ")
        text.append_text(fmt.pnl(row.total))
        text.append(f"  (realized {fmt.money(row.realized, signed=True)}, "
                    f"open {fmt.money(row.unrealized, signed=True)})")
        if levels is not None:
            text.append(f"\nstart of day {fmt.money(levels.sod_balance)}   daily loss limit "
                        f"{fmt.money(levels.daily_limit)}")
            if row.limit_used is not None:
                text.append(f" ({row.limit_used:.0%} used)")
            if levels.mark is not None:
                text.append(f"   high-water mark {fmt.money(levels.mark)}   trailing floor "
                            f"{fmt.money(levels.floor)}")
                if levels.equity is not None and levels.floor is not None:
                    text.append(f" ({fmt.money(levels.equity - levels.floor)} above)")
        if row.lockout is not None:
            until = ("PERMANENT" if row.permanent
                     else "until " + fmt.until(row.lockout_until, now, self.rt.tz))
            text.append(f"\nlockout {fmt.safe(row.lockout)} · {until}", style="bold red")
        return text

    # -- today's violations, read off the UI thread ---------------------------------------

    def _maybe_read_history(self, now: float) -> None:
        if self._reading or self.rt.reader is None:
            return
        engine = self.rt.host.engine
        day_start = engine.calendar.trading_day_bounds(now)[0]
        target = (self.account, day_start)
        stale = self.rt.history_version != self._history_version
        if target != self._history_for or (
                stale and time.monotonic() - self._history_at >= HISTORY_EVERY):
            self._reading = True
            self.read_history(target)

    @work(exclusive=True, group="account-history")
    async def read_history(self, target: tuple[str | None, float]) -> None:
        try:
            await self._read_history(target)
        finally:
            self._reading = False

    async def _read_history(self, target: tuple[str | None, float]) -> None:
        reader = self.rt.reader
        account, day_start = target
        if reader is None or account is None:
            return
        version = self.rt.history_version
        replace = target != self._history_for
        try:
            rows = await load_history(reader, account=account, limit=HISTORY_LIMIT,
                                      after_id=0 if replace else self.history.max_id)
        except READ_ERRORS as exc:  # the next flush tries again
            self.history.border_subtitle = fmt.safe(f"cannot read the history: {exc}")
            return
        if account != self.account:
            return  # switched meanwhile: the next flush reads for the new one
        today = [r for r in rows if r.ts is None or r.ts >= day_start]
        self.history.show(today, replace=replace, limit=HISTORY_LIMIT)
        self._history_for = target
        self._history_version = version
        self._history_at = time.monotonic()
        self.loads += 1
