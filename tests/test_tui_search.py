"""Search, filter and sort (/, s, S, a header click) and the account screen (enter on an account,
A), on the real app over the demo replay (riskterm/tui/demo.py) with Pilot."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from riskterm.tui.account_tables import AccountRulesTable
from riskterm.tui.accounts_table import AccountsTable
from riskterm.tui.app import RiskTermApp
from riskterm.tui.demo import DEMO_RULES, demo_app
from riskterm.tui.filter_bar import FilterBar
from riskterm.tui.live_table import PAD
from riskterm.tui.screens.account import AccountScreen
from riskterm.tui.screens.dashboard import DashboardScreen
from riskterm.tui.screens.job_detail import JobDetailScreen
from riskterm.tui.screens.jobs import JobsScreen
from riskterm.tui.screens.violations import ViolationsScreen
from riskterm.tui.table_query import TableQuery

SIZE = (160, 45)
# the demo's rules with a trailing drawdown, so the account screen has a floor to show
RULES = DEMO_RULES.replace("  no_stop_loss_grace:", "  trailing_drawdown: {amount: 2000}\n"
                           "  no_stop_loss_grace:")


async def settle(app: RiskTermApp, pilot: Pilot[Any]) -> None:
    await app.wait_for_source()
    await pilot.pause()
    app.refresh_now()
    await pilot.pause()


async def wait_for(pilot: Pilot[Any], condition: Callable[[], bool], timeout: float = 10.0,
                   what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


async def type_text(pilot: Pilot[Any], text: str) -> None:
    for ch in text:
        await pilot.press(ch)


def accounts(app: RiskTermApp) -> AccountsTable:
    return app.screen.query_one("#accounts", AccountsTable)


async def test_filter_accounts_as_you_type_and_escape_clears(tmp_path: Path) -> None:
    app = demo_app(tmp_path, rules_text=RULES)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        table = accounts(app)
        table.focus()
        assert table.row_keys == ["EVAL-101", "LIVE-301", "PA-APEX-201"]
        await pilot.press("slash")
        bar = app.screen.query_one(FilterBar)
        assert app.focused is bar and bar.table is table
        await type_text(pilot, "pa-")
        # the last keys of a burst are filtered when the typing pauses
        await wait_for(pilot, lambda: table.border_subtitle == "filter “pa-”: 1 of 3",
                       what="the filter")
        assert table.row_keys == ["PA-APEX-201"]
        # the filter follows the live flushes: a new frame keeps it applied
        app.refresh_now()
        await pilot.pause()
        assert table.row_keys == ["PA-APEX-201"]
        # a word matches anywhere in the row: the state column of the halted account
        bar.value = "halted"
        await wait_for(pilot, lambda: table.row_keys == ["EVAL-101"], what="halted filter")
        await pilot.press("escape")
        await pilot.pause()
        assert not app.screen.query(FilterBar)
        assert table.row_keys == ["EVAL-101", "LIVE-301", "PA-APEX-201"]
        assert not table.border_subtitle
        assert app.focused is table
        assert isinstance(app.screen, DashboardScreen)  # escape closed the bar, not the screen


async def test_enter_keeps_the_filter_and_a_column_word_matches_only_that_column(
        tmp_path: Path) -> None:
    app = demo_app(tmp_path, rules_text=RULES)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("v")
        screen = app.screen
        assert isinstance(screen, ViolationsScreen)
        await wait_for(pilot, lambda: screen.loads > 0, what="the history")
        everything = screen.history_rows()
        assert {r.account for r in everything} >= {"EVAL-101", "PA-APEX-201", "LIVE-301"}
        screen.table.focus()
        await pilot.press("slash")
        await type_text(pilot, "account:eval")
        await pilot.press("enter")
        await pilot.pause()
        assert app.focused is screen.table  # enter: back to the table, the filter stays
        assert screen.query(FilterBar)
        rows = screen.history_rows()
        assert rows and {r.account for r in rows} == {"EVAL-101"}
        assert len(rows) == sum(1 for r in everything if r.account == "EVAL-101")
        # the messages of other accounts' rows name no EVAL account; a word scoped to the rule
        # column must not match an account or a message
        await pilot.press("slash")
        bar = screen.query_one(FilterBar)
        bar.value = "rule:daily_realized"
        bar.apply_now()
        await pilot.pause()
        rows = screen.history_rows()
        assert rows and all(r.rule == "daily_realized_loss" for r in rows)
        # the detail pane follows the cursor within the filtered rows
        assert screen.table.selected_row() == rows[0]


async def test_sort_keys_and_header_click(tmp_path: Path) -> None:
    app = demo_app(tmp_path, rules_text=RULES)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        table = accounts(app)
        table.focus()
        await pilot.press("s")  # the first column: account, ascending
        assert table.row_keys == ["EVAL-101", "LIVE-301", "PA-APEX-201"]
        assert table.border_subtitle == "sorted by Account ▲"
        await pilot.press("S")
        assert table.row_keys == ["PA-APEX-201", "LIVE-301", "EVAL-101"]
        assert table.border_subtitle == "sorted by Account ▼"
        # a click on the "P&L today" header sorts by it: EVAL-101 lost 500, the worst first
        keys = [key for key, _, _ in table._columns]
        x = sum(w + 2 * PAD for _, _, w in table._columns[:keys.index("total")]) + 2
        await pilot.click(table, offset=(x + 1, 1))  # +1: the border
        await pilot.pause()
        totals = [table.raw(k)[6] for k in table.row_keys]
        assert totals == sorted(totals)
        assert table.row_keys[0] == "EVAL-101"
        assert table.border_subtitle == "sorted by P&L today ▲"
        await pilot.click(table, offset=(x + 1, 1))  # again: the other way
        await pilot.pause()
        assert [table.raw(k)[6] for k in table.row_keys] == sorted(totals, reverse=True)
        # the cursor stays on its row through a re-sort
        table.move_cursor(row=table.get_row_index("LIVE-301"))
        await pilot.press("S")
        assert table.selected_key() == "LIVE-301"


async def test_enter_on_an_account_opens_the_account_screen(tmp_path: Path) -> None:
    app = demo_app(tmp_path, rules_text=RULES)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        table = accounts(app)
        table.focus()
        table.move_cursor(row=table.get_row_index("EVAL-101"))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, AccountScreen), what="account")
        screen = app.screen
        assert isinstance(screen, AccountScreen)
        assert screen.account == "EVAL-101"
        await wait_for(pilot, lambda: screen.loads > 0, what="today's violations")
        app.refresh_now()
        await pilot.pause()
        rules = screen.query_one("#acct-rules", AccountRulesTable)
        by_rule = {k: rules.raw(k) for k in rules.row_keys}
        # every enabled rule of the account, with its state, value, limit and distance
        assert set(by_rule) == set(app.host.engine.accounts["EVAL-101"].rules)
        loss = by_rule["daily_realized_loss"]
        assert loss[1:5] == ("breached", -500.0, -500.0, 0.0)
        trailing = by_rule["trailing_drawdown"]
        assert trailing[1] == "armed" and trailing[3] == 2000.0
        assert trailing[2] == 500.0 and trailing[4] == 1500.0  # 500 below the mark
        summary = str(screen.query_one("#acct-summary").render())
        assert "high-water mark 50,000.00" in summary
        assert "trailing floor 48,000.00" in summary
        assert "daily loss limit -500.00" in summary
        # today's violations of this account only, with the enforcement that followed
        rows = [screen.history.rows_by_id[int(k)] for k in screen.history.row_keys]
        assert rows and {r.account for r in rows} == {"EVAL-101"}
        halt = next(r for r in rows if r.rule == "daily_realized_loss")
        assert halt.enforcement and halt.lockout.startswith("halted")
        # the chart is drawn, with the limit and the floor named under it
        assert screen.chart.draws >= 1
        legend = str(screen.query_one("#acct-legend").render())
        assert "daily loss limit -500.00" in legend and "trailing floor 48,000.00" in legend
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)


async def test_A_opens_the_selected_account_with_its_orders_and_positions(
        tmp_path: Path) -> None:
    app = demo_app(tmp_path, rules_text=RULES)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        table = accounts(app)
        table.move_cursor(row=table.get_row_index("LIVE-301"))
        await pilot.press("A")
        await wait_for(pilot, lambda: isinstance(app.screen, AccountScreen), what="account")
        screen = app.screen
        assert isinstance(screen, AccountScreen) and screen.account == "LIVE-301"
        app.refresh_now()
        await pilot.pause()
        assert screen.orders.row_keys == ["L2"]
        assert screen.orders.raw("L2")[1:5] == ("MNQ", "buy", 2, "limit")
        assert [screen.positions.raw(k)[1] for k in screen.positions.row_keys] == ["CL"]
        # another account from the dashboard: the screen is reused and shows that one only
        await pilot.press("escape")
        table = accounts(app)
        table.move_cursor(row=table.get_row_index("EVAL-101"))
        await pilot.press("A")
        await wait_for(pilot, lambda: isinstance(app.screen, AccountScreen), what="account")
        assert app.screen is screen and screen.account == "EVAL-101"
        await pilot.pause()
        assert screen.orders.row_keys == []
        await wait_for(pilot, lambda: screen.history.row_keys != [], what="EVAL history")
        assert {screen.history.rows_by_id[int(k)].account for k in screen.history.row_keys} \
            == {"EVAL-101"}


async def test_escape_from_the_account_screen_goes_back_where_it_came_from(
        tmp_path: Path) -> None:
    app = demo_app(tmp_path, rules_text=RULES)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("v")
        screen = app.screen
        await wait_for(pilot, lambda: screen.loads > 0, what="the history")
        screen.table.focus()
        await pilot.press("A")  # the account of the selected violation
        await wait_for(pilot, lambda: isinstance(app.screen, AccountScreen), what="account")
        assert app.screen.account == screen.selected_account()
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen


async def test_enter_on_a_job_still_opens_its_detail_and_jobs_filter_by_account(
        tmp_path: Path) -> None:
    app = demo_app(tmp_path, rules_text=RULES)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        table = accounts(app)
        for name in ("EVAL-101", "LIVE-301"):
            table.move_cursor(row=table.get_row_index(name))
            await pilot.press("e")
        await pilot.press("j")
        jobs = app.screen
        assert isinstance(jobs, JobsScreen)
        await wait_for(pilot, lambda: jobs.table.row_count == 2, what="two jobs")
        jobs.table.focus()
        await pilot.press("slash")
        await type_text(pilot, "account:live")
        await pilot.press("enter")
        await pilot.pause()
        assert [jobs.table.raw(k)[2] for k in jobs.table.row_keys] == ["LIVE-301"]
        await pilot.press("enter")  # on the job row: its detail, not the account screen
        await wait_for(pilot, lambda: isinstance(app.screen, JobDetailScreen), what="detail")


async def test_account_screen_stacks_at_80x24(tmp_path: Path) -> None:
    app = demo_app(tmp_path, rules_text=RULES)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("A")
        await wait_for(pilot, lambda: isinstance(app.screen, AccountScreen), what="account")
        screen = app.screen
        await pilot.pause()
        assert screen.has_class("-narrow")
        rules = screen.query_one("#acct-rules")
        chart = screen.query_one("#acct-chart-box")
        assert chart.region.x == rules.region.x and chart.region.y > rules.region.y
        assert rules.region.right <= 80 and chart.region.right <= 80


def test_table_query_filters_and_sorts_the_model() -> None:
    columns = [("name", "Name", 10), ("qty", "Qty", 4), ("note", "Note\nmore", 6)]
    query = TableQuery(columns)
    rows = {"a": ("alpha", 3, None), "b": ("beta", 1, "x"), "c": ("gamma", 2, "alpha")}
    assert list(query.apply(rows)) == ["a", "b", "c"]
    query.set_text("ALPHA")
    assert list(query.apply(rows)) == ["a", "c"]  # anywhere in the row, any case
    query.set_text("name:alpha")
    assert list(query.apply(rows)) == ["a"]
    query.set_text("note more:alp")  # a label's words (two-line label) do not name a column
    assert list(query.apply(rows)) == []
    assert query.set_text("nope:alpha") == ["nope"]  # an unknown column: matched as plain text
    assert list(query.apply(rows)) == []
    query.set_text("")
    query.sort_by(1)
    assert list(query.apply(rows)) == ["b", "c", "a"]
    query.sort_by(1)
    assert list(query.apply(rows)) == ["a", "c", "b"]
    query.sort_by(2)  # None last, whichever the direction
    assert list(query.apply(rows))[-1] == "a"
    query.sort_by(2)
    assert list(query.apply(rows))[-1] == "a"
    # a changed row is matched on its new values (the text cache follows the row)
    query.sort_column = None
    query.set_text("delta")
    assert list(query.apply({**rows, "b": ("delta", 1, "x")})) == ["b"]


def test_filter_and_sort_read_each_column_from_its_own_field_of_the_row():
    """A row can hold more than its table shows, in another order (a violation's value and
    limit sit before its enforcement): `column:word` and sorting read the column's own field."""
    from riskterm.tui.account_tables import AccountRulesTable
    from riskterm.tui.account_view import RuleRow
    from riskterm.tui.history import HistoryRow
    from riskterm.tui.table_query import TableQuery
    from riskterm.tui.violations_table import ViolationsTable

    same = {"time": "ts", "id": "id"}
    for table, row in ((ViolationsTable, HistoryRow), (AccountRulesTable, RuleRow)):
        fields = [table.ROW_FIELDS.get(k, i) for i, (k, _, _) in enumerate(table.COLUMNS)]
        names = [row._fields[f] for f in fields]
        assert names == [same.get(k, k) if k != "note" else "note"
                         for k, _, _ in table.COLUMNS], table.__name__
    columns = [("a", "A", 5), ("c", "C", 5)]
    query = TableQuery(columns, [0, 2])  # the row is (a, b, c): b is not shown
    rows = {"k1": ("x", "flatten", 2), "k2": ("y", "alert", 1)}
    query.set_text("c:1")
    assert list(query.apply(rows)) == ["k2"]
    query.set_text("")
    query.sort_by(1)
    assert list(query.apply(rows)) == ["k2", "k1"]  # by c, not by b
