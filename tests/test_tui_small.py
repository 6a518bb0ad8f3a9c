"""Issue 16, small terminals and the details: every screen at 80x24 (and 60x20) with columns
narrowed and dropped in their stated order, panes stacked, nothing cut silently; rejected input
lines on screen; a job detail that shows everything; and the small fixes. Real app via Pilot on
the demo replay (plus one line the engine rejects), asserting on widget content; snapshots of
every screen at 80x24 and 160x45."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from riskterm.config import load_rules
from riskterm.host import RunOptions
from riskterm.jobs import guardrails
from riskterm.lockouts import Lockout
from riskterm.tui import formatting as fmt
from riskterm.tui.app import RiskTermApp, create_app
from riskterm.tui.demo import write_demo
from riskterm.tui.detail_pane import DetailPane
from riskterm.tui.halt_banner import fit_names
from riskterm.tui.job_queue_table import priority_text
from riskterm.tui.live_table import LiveTable, fit_columns
from riskterm.tui.screens.dashboard import DashboardScreen
from riskterm.tui.screens.help import HelpScreen
from riskterm.tui.screens.job_detail import JobDetailScreen
from riskterm.tui.screens.jobs import JobsScreen
from riskterm.tui.screens.rules import RulesScreen
from riskterm.tui.screens.text_view import TextScreen
from riskterm.tui.screens.violations import ViolationsScreen
from riskterm.tui.settings import AppSettings
from riskterm.tui.view import account_row
from riskterm.tui.violations_table import value_text

SMALL = (80, 24)
TINY = (60, 20)
BIG = (160, 45)
BAD_LINE = '{"type": "fill", "qty"\n'  # line 24 of the demo: not JSON


def small_app(directory: Path) -> RiskTermApp:
    """The demo replay with one more line, which the engine rejects."""
    events, rules = write_demo(directory)
    with events.open("a") as fh:
        fh.write(BAD_LINE)
    opts = RunOptions(source=f"replay:{events}", rules_path=rules,
                      db_path=directory / "demo.db", speed=0)
    return create_app(opts, load_rules(rules), AppSettings(deterministic=True))


async def settle(app: RiskTermApp, pilot: Pilot[Any]) -> None:
    await app.wait_for_source()
    await pilot.pause()
    app.refresh_now()
    await pilot.pause()


async def wait_for(pilot: Pilot[Any], condition: Callable[[], bool], what: str,
                   timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


def bars_fit(app: RiskTermApp) -> tuple[str, str]:
    """The status bar and the footer as shown; each fits its width (nothing cut)."""
    screen: Any = app.screen
    status = screen.status_bar.render()
    keys = screen.key_bar.render()
    width = screen.status_bar.content_size.width
    assert status.cell_length <= width, status.plain
    assert keys.cell_length <= screen.key_bar.content_size.width, keys.plain
    assert not status.plain.endswith("…") and not keys.plain.endswith("…")
    return status.plain, keys.plain


def no_sideways_scroll(table: LiveTable) -> None:
    assert table.virtual_size.width <= table.scrollable_content_region.width, (
        type(table).__name__, table.shown_columns)


@pytest.fixture
def app(tmp_path: Path) -> RiskTermApp:
    return small_app(tmp_path)


# -- fitting columns -----------------------------------------------------------------------


def test_fit_columns_narrows_first_then_drops_in_order() -> None:
    cols = [("a", "A", 10), ("b", "B", 20), ("c", "C", 10), ("d", "D", 10)]
    narrow, drop = {"b": 8}, ("d", "c")
    assert fit_columns(cols, 100, narrow, drop) == cols  # room: all at their width
    assert fit_columns(cols, 50, narrow, drop) == [
        ("a", "A", 10), ("b", "B", 12), ("c", "C", 10), ("d", "D", 10)]  # b narrowed only
    assert fit_columns(cols, 36, narrow, drop) == [
        ("a", "A", 10), ("b", "B", 10), ("c", "C", 10)]  # d dropped, b widens into it
    assert [c[0] for c in fit_columns(cols, 22, narrow, drop)] == ["a", "b"]
    assert [c[0] for c in fit_columns(cols, 5, narrow, drop)] == ["a", "b"]  # nothing left


# -- every screen at 80x24 and 60x20 -------------------------------------------------------


@pytest.mark.parametrize("size", [SMALL, TINY])
async def test_dashboard_on_a_small_terminal(app: RiskTermApp, size: tuple[int, int]) -> None:
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        assert screen.has_class("-narrow") and screen.has_class("-short")
        accounts, positions, feed = screen.accounts, screen.positions, screen.feed
        for table in (accounts, positions):
            no_sideways_scroll(table)
        # the stated order: balance, realized, unrealized, equity (then the daily limit)
        shown = accounts.shown_columns
        assert {"account", "state", "total", "lockout"} <= set(shown)
        assert not {"balance", "realized", "unrealized", "equity"} & set(shown)
        assert ("limit" in shown) == (size == SMALL)
        assert {"account", "symbol", "qty", "unrealized"} <= set(positions.shown_columns)
        # stacked: the positions above the feed, both the whole width, both with their rows
        assert positions.region.x == feed.region.x and positions.region.y < feed.region.y
        assert positions.region.width == feed.region.width
        assert positions.scrollable_content_region.height >= 2 and feed.region.height >= 3
        # a feed line longer than the pane ends in an ellipsis
        first = feed.render_line(0).text.rstrip()
        assert first.endswith("…") and len(first) <= feed.scrollable_content_region.width
        status, keys = bars_fit(app)
        assert "1 rejected line" in status and "replay demo.jsonl" in status
        assert "? Keys" in keys and "q Quit" in keys
        # the lockout cell is cut with an ellipsis, never silently
        row = accounts._row_strip("EVAL-101").text
        assert "daily_realized" in row and "…" in row


async def test_every_screen_fits_80x24(app: RiskTermApp) -> None:
    async with app.run_test(size=SMALL) as pilot:
        await settle(app, pilot)
        await pilot.press("v")
        violations = app.screen
        assert isinstance(violations, ViolationsScreen)
        await wait_for(pilot, lambda: violations.loads >= 1, "history")
        no_sideways_scroll(violations.table)
        assert violations.table.shown_columns == ["time", "kind", "account", "rule", "message"]
        bars_fit(app)
        # the halt's detail (five lines and more) does not fit the pane: it scrolls, and says so
        violations.table.focus()
        violations.table.move_cursor(row=3)
        detail = violations.query_one("#history-detail", DetailPane)
        await wait_for(pilot, lambda: "lockout: halted" in detail.text, "the halt's detail")
        await pilot.pause()
        assert detail.virtual_size.height > detail.scrollable_content_region.height
        assert detail.show_vertical_scrollbar
        await pilot.press("r")
        rules = app.screen
        assert isinstance(rules, RulesScreen)
        await pilot.pause()
        no_sideways_scroll(rules.table)
        assert rules.table.shown_columns[0] == "rule" and len(rules.table.shown_columns) >= 4
        bars_fit(app)
        await pilot.press("question_mark")
        help_box = app.screen.query_one("#help")
        assert isinstance(app.screen, HelpScreen)
        assert help_box.region.right <= SMALL[0]  # the help fits the width
        await pilot.press("escape")


# -- rejected lines ------------------------------------------------------------------------


async def test_rejected_lines_counted_and_listed(app: RiskTermApp) -> None:
    async with app.run_test(size=BIG) as pilot:
        await settle(app, pilot)
        info = app.screen.status_bar.info  # type: ignore[attr-defined]
        assert info is not None and info.rejected == 1
        assert "1 rejected line" in app.screen.status_bar.render().plain  # type: ignore[attr-defined]
        await pilot.press("v")
        screen = app.screen
        assert isinstance(screen, ViolationsScreen)
        table = screen.rejected
        await wait_for(pilot, lambda: table.row_count == 1, "the rejected line")
        assert table.display and table.total == 1
        row = table.selected_row()
        assert row is not None and row.line == 24 and "line 24 is not valid JSON" in row.error
        assert "Rejected input lines · 1" in str(table.border_title)
        table.focus()
        await pilot.pause()
        detail = screen.query_one("#history-detail", DetailPane).text
        assert "REJECTED line 24" in detail and row.error in detail  # the error whole


# -- job detail ----------------------------------------------------------------------------


async def open_finished_job(app: RiskTermApp, pilot: Pilot[Any], account: str,
                            size: tuple[int, int]) -> JobDetailScreen:
    screen = app.screen
    assert isinstance(screen, DashboardScreen)
    screen.accounts.focus()
    screen.accounts.move_cursor(row=screen.accounts.get_row_index(account))
    await pilot.press("e", "j")
    jobs = app.screen
    assert isinstance(jobs, JobsScreen)
    await wait_for(pilot, lambda: (jobs.table.raw("j1-1") or ("",) * 4)[3] == "completed",
                   "the job to complete")
    await pilot.press("enter")
    detail = app.screen
    assert isinstance(detail, JobDetailScreen)
    await wait_for(pilot, lambda: detail.polls >= 1, "the job detail")
    await pilot.pause()
    return detail


@pytest.mark.parametrize("size", [SMALL, BIG])
async def test_job_detail_opens_at_the_end_and_rows_open_whole(
        app: RiskTermApp, size: tuple[int, int]) -> None:
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        detail = await open_finished_job(app, pilot, "LIVE-301", size)
        timeline: Any = detail.query_one("#job-timeline")
        job = detail.job
        assert job is not None
        assert timeline.row_count == len(job["events"]) > 3
        assert timeline.cursor_row == timeline.row_count - 1  # on the newest event
        await wait_for(pilot, lambda: timeline.scroll_y == timeline.max_scroll_y, "the end")
        if size == SMALL:
            assert timeline.max_scroll_y > 0  # a finished job's end was hidden before
        # enter on the timeline opens the row whole
        timeline.focus()
        await pilot.press("enter")
        assert isinstance(app.screen, TextScreen)
        last = job["events"][-1]
        assert str(last["detail"]) in app.screen.text
        await pilot.press("escape")
        assert app.screen is detail
        # enter on the actions log opens the action whole: its reason and result in full
        actions: Any = detail.query_one("#job-actions")
        actions.focus()
        actions.move_cursor(row=0)
        await pilot.press("enter")
        assert isinstance(app.screen, TextScreen)
        entry = job["actions_log"][0]
        assert entry["reason"] in app.screen.text and "recommended" in app.screen.text
        await pilot.press("escape")
        assert app.screen is detail


async def test_approval_of_a_position_closed_since_names_the_reason(app: RiskTermApp) -> None:
    async with app.run_test(size=BIG) as pilot:
        await settle(app, pilot)
        detail = await open_finished_job(app, pilot, "LIVE-301", BIG)
        # the CL position is closed after the job looked at it (a fill in the engine)
        engine = app.host.engine
        engine.process({"type": "fill", "ts": engine.clock + 1, "account": "LIVE-301",
                        "symbol": "CL", "order_id": "X9", "side": "sell", "qty": 2,
                        "price": 70.1})
        assert not engine.accounts["LIVE-301"].positions.get("CL") or \
            not engine.accounts["LIVE-301"].positions["CL"].qty
        await pilot.press("a")
        await wait_for(pilot, lambda: detail.job is not None and all(
            e["result"] != "recommended" for e in detail.job["actions_log"]), "the approval")
        results = [e["result"] for e in detail.job["actions_log"]]  # type: ignore[index]
        assert all("unknown symbol" not in r for r in results)
        assert any("no longer holds a CL position" in r for r in results), results
        said = [n.message for n in app._notifications]
        assert any("refused" in m and "no longer holds a CL position" in m for m in said), said


def test_guardrail_says_a_position_was_closed_not_unknown() -> None:
    now = {"account": "A", "positions": [], "working_orders": []}
    seen = {"account": "A", "positions": [{"symbol": "CL", "qty": 2, "mark": 70.0}]}
    args = {"symbol": "CL", "qty": 1}
    why = guardrails.check("reduce_position", args, now, ["reduce_position"], ["A"], [], seen)
    assert why == "A no longer holds a CL position: it was closed after the job looked at the " \
                  "account"
    assert guardrails.check("reduce_position", args, now, ["reduce_position"], ["A"],
                            []) == "unknown symbol CL for account A"


# -- the small things ----------------------------------------------------------------------


def test_money_never_shows_minus_zero_and_values_keep_their_unit() -> None:
    assert fmt.money(-0.001) == "0.00" and fmt.money(-0.0, signed=True) == "+0.00"
    assert fmt.pnl(-0.004).plain == "0.00"
    assert value_text(30.0, "no_stop_loss_grace") == "30s"
    assert value_text(95.0, "no_stop_loss_grace") == "1m35s"
    assert value_text(3, "max_contracts_per_instrument") == "3"
    assert value_text(0.125, "max_position_value_pct") == "12.5%"
    assert value_text(-500.0, "daily_realized_loss") == "-500.00"
    assert priority_text(-10) == "high (-10)" and priority_text(0) == "normal (0)"
    assert fit_names("⛔ 3 HALTED: ", ["AAAA", "BBBB", "CCCC"], 26) == \
        "⛔ 3 HALTED: AAAA … +2 more"


async def test_grace_violation_detail_in_seconds(app: RiskTermApp) -> None:
    async with app.run_test(size=BIG) as pilot:
        await settle(app, pilot)
        await pilot.press("v")
        screen = app.screen
        assert isinstance(screen, ViolationsScreen)
        await wait_for(pilot, lambda: screen.loads >= 1, "history")
        assert screen.history_rows()[0].rule == "no_stop_loss_grace"
        detail = screen.query_one("#history-detail", DetailPane).text
        assert "value 30s · limit 30s" in detail and "30.00" not in detail


async def test_every_lockout_named_and_banner_cut_with_an_ellipsis(app: RiskTermApp) -> None:
    async with app.run_test(size=TINY) as pilot:
        await settle(app, pilot)
        engine = app.host.engine
        clock = engine.clock
        for i, name in enumerate(("EVAL-101", "LIVE-301", "PA-APEX-201")):
            engine.lockouts.add(Lockout(900 + i, name, "cooldown_after_loss", "halted",
                                        "duration", clock + 600, clock))
            engine.accounts[name].state = "halted"  # as the engine derives it from the book
        row = account_row(engine, engine.accounts["EVAL-101"])
        assert row.lockout == "daily_realized_loss, cooldown_after_loss"  # whole, no "+1"
        app.refresh_now()
        await pilot.pause()
        screen: Any = app.screen
        banner = screen.banner.render().plain.split("\n")
        width = screen.banner.content_size.width
        assert banner[0].startswith("⛔ 3 HALTED: ")
        assert all(len(line) <= width for line in banner)
        assert "EVAL-101" in banner[0] and banner[1].endswith("…")
        assert "more" in banner[0] or "PA-APEX-201" in banner[0]


async def test_rules_screen_filled_when_first_opened_while_paused(app: RiskTermApp) -> None:
    async with app.run_test(size=BIG) as pilot:
        await settle(app, pilot)
        await pilot.press("p", "r")
        screen = app.screen
        assert isinstance(screen, RulesScreen) and app.paused
        await pilot.pause()
        assert screen.table.row_count == 5
        assert screen.table.raw("daily_realized_loss")[3] == "breached"  # type: ignore[index]


async def test_jobs_priority_explained(app: RiskTermApp) -> None:
    async with app.run_test(size=BIG) as pilot:
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        await pilot.press("e", "j")
        jobs = app.screen
        assert isinstance(jobs, JobsScreen)
        await wait_for(pilot, lambda: jobs.table.row_count == 1 and jobs.polls >= 1, "the job")
        line = jobs.table._row_strip("j1-1").text
        assert "high (-10)" in line
        assert "lower runs first" in str(jobs.query_one("#jobs-hint").render())


# -- snapshots: every screen at 80x24 and 160x45 -------------------------------------------

Step = Callable[[Pilot[Any]], Awaitable[None]]


def settled(*steps: Step) -> Step:
    async def run_before(pilot: Pilot[Any]) -> None:
        app: Any = pilot.app
        await app.wait_for_source()
        await pilot.pause()
        app.refresh_now()
        for step in steps:
            await step(pilot)
        await pilot.pause()
        app.refresh_now()
        app.clear_notifications()
        await pilot.pause()

    return run_before


def press(*keys: str) -> Step:
    async def step(pilot: Pilot[Any]) -> None:
        await pilot.press(*keys)

    return step


async def history_loaded(pilot: Pilot[Any]) -> None:
    screen: Any = pilot.app.screen
    await wait_for(pilot, lambda: screen.loads >= 1 and screen.rejected.row_count == 1,
                   "history")


async def job_done(pilot: Pilot[Any]) -> None:
    screen: Any = pilot.app.screen
    await wait_for(pilot, lambda: (screen.table.raw("j1-1") or ("",) * 4)[3] == "completed",
                   "the job")


async def detail_loaded(pilot: Pilot[Any]) -> None:
    screen: Any = pilot.app.screen
    await wait_for(pilot, lambda: screen.polls >= 1, "the detail")
    await pilot.pause()


async def select_live(pilot: Pilot[Any]) -> None:
    table: Any = pilot.app.screen.query_one("#accounts")
    table.focus()
    table.move_cursor(row=table.get_row_index("LIVE-301"))
    await pilot.pause()


SCREENS: dict[str, tuple[Step, ...]] = {
    "dashboard": (),
    "violations": (press("v"), history_loaded),
    "jobs": (select_live, press("e", "j"), job_done),
    "job_detail": (select_live, press("e", "j"), job_done, press("enter"), detail_loaded),
    "rules": (press("r"),),
    "help": (press("question_mark"),),
}


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return Path(".")


@pytest.mark.parametrize("size", [SMALL, BIG], ids=["80x24", "160x45"])
@pytest.mark.parametrize("name", list(SCREENS))
def test_snapshot(snap_compare: Any, here: Path, name: str, size: tuple[int, int]) -> None:
    assert snap_compare(small_app(here), terminal_size=size, run_before=settled(*SCREENS[name]))


async def test_timeline_follows_the_end_unless_moved_up() -> None:
    from zoneinfo import ZoneInfo

    from textual.app import App, ComposeResult

    from riskterm.tui.job_timeline import JobTimeline

    class TimelineApp(App[None]):
        def compose(self) -> ComposeResult:
            yield JobTimeline(ZoneInfo("UTC"), id="t")

    def events(n: int) -> list[dict[str, Any]]:
        return [{"ts": 1_772_000_000 + i, "type": "step", "detail": f"event {i} " + "x" * 60}
                for i in range(n)]

    app = TimelineApp()
    async with app.run_test(size=(60, 12)) as pilot:
        timeline = app.query_one(JobTimeline)
        timeline.extend(events(30))
        await wait_for(pilot, lambda: timeline.max_scroll_y > 0
                       and timeline.scroll_y == timeline.max_scroll_y, "the end")
        assert timeline.cursor_row == 29
        cell = timeline.get_cell_at((29, 2))
        assert cell.plain.endswith("…") and cell.cell_len == 38  # cut with an ellipsis
        timeline.extend(events(35))  # a running job: new rows, the view follows
        await wait_for(pilot, lambda: timeline.cursor_row == 34
                       and timeline.scroll_y == timeline.max_scroll_y, "the new end")
        timeline.move_cursor(row=3)  # the user reads an earlier row
        await pilot.pause()
        timeline.extend(events(40))
        await pilot.pause()
        assert timeline.cursor_row == 3 and timeline.row_count == 40  # left where it was


def test_status_bar_leaves_out_the_less_important_parts_first() -> None:
    from zoneinfo import ZoneInfo

    from riskterm.tui.status_bar import StatusBar, StatusInfo

    bar = StatusBar(ZoneInfo("UTC"))
    info = StatusInfo(source="replay day.jsonl", events=123_456, rate=20_000.0,
                      clock=1_772_000_000.0, queued=2, running=1, paused=True, state="live",
                      rejected=3)
    wide = bar.fitted(info, 200).plain
    assert "20,000 ev/s" in wide and "jobs: 2 queued" in wide and "display frozen" in wide
    widths = (150, 130, 120, 100, 60)
    plain = [bar.fitted(info, width).plain for width in widths]
    for width, text in zip(widths, plain, strict=True):
        assert len(text) <= width, (width, text)
        assert "replay day.jsonl" in text and "3 rejected lines" in text and "PAUSED" in text
    assert "ev/s" not in plain[0] and "jobs:" not in plain[0]  # events/s, then the queue
    assert "123,456 events" in plain[0] and "123,456" not in plain[1]  # then the count
    assert "2026-02-25 06:13:20 UTC" in plain[1] and plain[2].endswith("│  06:13:20")  # date
    assert "display frozen" in plain[2] and "display frozen" not in plain[3]  # pause notice
    assert plain[4] == "● replay day.jsonl │  ⏸ PAUSED  │ 3 rejected lines"  # what stays
