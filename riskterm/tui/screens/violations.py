"""Violations (v): the full history from the database, filterable by account, rule and kind,
with the enforcement that followed each violation; below it, the rejected input lines (line and
error, newest first), shown while there are any."""

from __future__ import annotations

import time

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Select, Static

from riskterm.tui import formatting as fmt
from riskterm.tui.detail_pane import DetailPane
from riskterm.tui.history import KINDS, READ_ERRORS, HistoryRow, load_history
from riskterm.tui.keys import VIOLATIONS_KEYS, bindings
from riskterm.tui.live_table import LiveTable
from riskterm.tui.rejected_table import RejectedTable, describe_rejected, load_rejected
from riskterm.tui.screens.base import Frame, LiveScreen
from riskterm.tui.violations_table import ViolationsTable, describe

LIVE_EVERY = 1.0  # seconds between two reads of new rows while the screen is open
EXTRA_RULES = ("trading_while_locked", "position_drift", "unknown_instrument")
REJECTED_SHOWN = 200  # the newest rejected lines listed (the title counts them all)


def _selected(select: Select[str]) -> str | None:
    value = select.value
    return value if isinstance(value, str) else None


class ViolationsScreen(LiveScreen):
    BINDINGS = bindings(VIOLATIONS_KEYS)
    PALETTE_KEYS = VIOLATIONS_KEYS

    def __init__(self) -> None:
        super().__init__(name="violations")
        self._loaded_version = -1
        self._loaded_at = 0.0
        self._filters: tuple[str | None, str | None, str | None] | None = None
        self._options: dict[str, tuple[str, ...]] = {}
        self.loads = 0  # completed queries, for tests
        self._loading: tuple[str | None, str | None, str | None] | None = None  # in flight
        self._rejected_version = -1
        self._rejected_loading = False
        self._rejected_detail = False  # the detail pane shows the rejected line in focus

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="filters"):
            yield Select[str]([], prompt="All accounts", id="filter-account")
            yield Select[str]([], prompt="All rules", id="filter-rule")
            yield Select[str]([(k, k) for k in KINDS], prompt="Violations and warnings",
                              id="filter-kind")
            yield Static("", id="history-count")
        table = ViolationsTable(self.rt.tz, id="history")
        table.border_title = "Violation history"
        yield table
        rejected = RejectedTable(self.rt.tz, id="rejected")
        rejected.border_title = "Rejected input lines"
        rejected.display = False  # until there is one
        yield rejected
        yield DetailPane(id="history-detail")

    @property
    def table(self) -> ViolationsTable:
        return self.query_one("#history", ViolationsTable)

    def filters(self) -> tuple[str | None, str | None, str | None]:
        return (_selected(self.query_one("#filter-account", Select)),
                _selected(self.query_one("#filter-rule", Select)),
                _selected(self.query_one("#filter-kind", Select)))

    def set_filters(self, account: str | None = None, rule: str | None = None,
                    kind: str | None = None) -> None:
        """Set the filters (as a user would with the selects); the query follows."""
        self._ensure_options(account, rule)
        for sel_id, value in (("#filter-account", account), ("#filter-rule", rule),
                              ("#filter-kind", kind)):
            select = self.query_one(sel_id, Select)
            if value is None:
                select.clear()
            else:
                select.value = value

    def _ensure_options(self, account: str | None, rule: str | None) -> None:
        """Offer every known account and rule in the selects (plus `account` and `rule`)."""
        shown = self.table.rows_by_id.values()
        accounts = {r.account for r in shown}
        rules = set(self.rt.config.rules) | set(EXTRA_RULES) | {r.rule for r in shown}
        engine = self.rt.engine
        if engine is not None:
            accounts |= set(engine.accounts)
        if account:
            accounts.add(account)
        if rule:
            rules.add(rule)
        for sel_id, values in (("#filter-account", accounts), ("#filter-rule", rules)):
            options = tuple(sorted(values))
            if self._options.get(sel_id) == options:
                continue
            self._options[sel_id] = options
            select = self.query_one(sel_id, Select)
            keep = select.value
            with select.prevent(Select.Changed):
                # a str prompt is markup: `A[/]` as an account name would crash the select
                select.set_options([(Text(fmt.safe(v)), v) for v in options])
                if isinstance(keep, str) and keep in options:
                    select.value = keep

    def refresh_live(self, frame: Frame) -> None:
        # a read in flight is restarted only for other filters, never for newer rows: a read
        # longer than a frame (10,000 rows under a fast feed) restarted on every frame while
        # the version moves would never end
        filters = self.filters()
        if self._loading is not None:
            restart = filters != self._loading
        else:
            restart = self._filters != filters or (
                self.rt.history_version != self._loaded_version
                and time.monotonic() - self._loaded_at >= LIVE_EVERY)
        if restart:
            self._ensure_options(None, None)
            self._loading = filters
            self.load()
        if self.rt.rejected_version != self._rejected_version and not self._rejected_loading:
            self._rejected_loading = True
            self.load_rejected()

    @property
    def rejected(self) -> RejectedTable:
        return self.query_one("#rejected", RejectedTable)

    @work(group="rejected")
    async def load_rejected(self) -> None:
        try:
            reader = self.rt.reader
            if reader is None:
                return
            version = self.rt.rejected_version
            try:
                rows, total = await load_rejected(reader, REJECTED_SHOWN)
            except READ_ERRORS:  # the next flush tries again
                return
            table = self.rejected
            table.show(rows, total)
            table.display = bool(rows)
            more = f", newest {len(rows):,}" if total > len(rows) else ""
            table.border_title = f"Rejected input lines · {total:,}{more} · newest first"
            self._rejected_version = version
        finally:
            self._rejected_loading = False

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        self.load()

    def action_clear_filters(self) -> None:
        self.set_filters()

    @work(exclusive=True, group="history")
    async def load(self) -> None:
        filters = self.filters()
        try:
            await self._load()
        finally:
            if self._loading == filters:  # not a read restarted meanwhile for other filters
                self._loading = None

    async def _load(self) -> None:
        reader = self.rt.reader
        if reader is None:
            return
        filters = self.filters()
        version = self.rt.history_version
        table = self.table
        limit = self.rt.settings.history_limit
        account, rule, kind = filters
        try:
            replace = filters != self._filters
            rows = await load_history(reader, account=account, rule=rule, kind=kind,
                                      after_id=0 if replace else table.max_id, limit=limit)
            table.show(rows, replace=replace, limit=limit)
        except READ_ERRORS as exc:  # the next flush tries again
            self.query_one("#history-count", Static).update(
                Text(fmt.safe(f"cannot read the history: {exc}")))
            return
        self._filters = filters
        self._loaded_version = version
        self._loaded_at = time.monotonic()
        self.loads += 1
        shown = len(table.rows_by_id)
        note = f" (newest {limit})" if shown >= limit else ""
        self.query_one("#history-count", Static).update(f"{shown:,} shown{note}")
        self._show_detail()

    def on_live_table_row_highlighted(self, event: LiveTable.RowHighlighted) -> None:
        self._show_detail()

    def on_descendant_focus(self) -> None:
        self._show_detail()  # the detail follows the table in focus

    def _show_detail(self) -> None:
        detail = self.query_one("#history-detail", DetailPane)
        rejected = self.rejected
        if self.focused in (rejected, self.table):  # the pane itself focused: as it was
            self._rejected_detail = self.focused is rejected
        if self._rejected_detail and (bad := rejected.selected_row()) is not None:
            detail.update(describe_rejected(bad, self.rt.tz))
            return
        row = self.table.selected_row()
        if row is None:
            detail.update("No violations match." if self._filters else "")
        else:
            detail.update(describe(row, self.rt.tz))

    def selected_account(self) -> str | None:
        row = self.table.selected_row()
        return row.account if row is not None else None

    def history_rows(self) -> list[HistoryRow]:
        """The rows in display order (for tests)."""
        table = self.table
        return [table.rows_by_id[int(key)] for key in table.row_keys]
