"""Dashboard tests with Textual's Pilot: every key and every screen, on the demo replay (a small
fixed trading morning replayed at speed 0 into a fresh database) or on the simulator."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.command import CommandList, CommandPalette
from textual.pilot import Pilot

from riskterm.tui.app import RiskTermApp
from riskterm.tui.demo import DEMO_RULES, demo_app
from riskterm.tui.json_tree import PAGE, JsonTree, MoreRef
from riskterm.tui.live_table import LiveTable
from riskterm.tui.screens.confirm import ConfirmScreen
from riskterm.tui.screens.dashboard import DashboardScreen
from riskterm.tui.screens.help import HelpScreen
from riskterm.tui.screens.job_detail import JobDetailScreen
from riskterm.tui.screens.jobs import JobsScreen
from riskterm.tui.screens.rules import RulesScreen
from riskterm.tui.screens.violations import ViolationsScreen
from riskterm.tui.settings import AppSettings

SIZE = (160, 45)


async def settle(app: RiskTermApp, pilot: Pilot[Any]) -> None:
    """Wait for the replay to end, its records to arrive, and the screen to show them."""
    await app.wait_for_source()
    await pilot.pause()
    app.refresh_now()
    await pilot.pause()


async def wait_for(pilot: Pilot[Any], condition: Callable[[], bool], timeout: float = 10.0,
                   what: str = "condition") -> None:
    """Wait (yielding to the app) until condition() holds; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


def db_records(app: RiskTermApp, kind: str | None = None) -> list[dict[str, Any]]:
    assert app.opts.db_path is not None
    conn = sqlite3.connect(app.opts.db_path)
    try:
        sql = "SELECT body FROM records" + (" WHERE kind = ?" if kind else "") + " ORDER BY id"
        return [json.loads(b) for (b,) in conn.execute(sql, (kind,) if kind else ())]
    finally:
        conn.close()


def select_account(app: RiskTermApp, account: str) -> None:
    screen = app.screen
    assert isinstance(screen, DashboardScreen)
    table = screen.accounts
    table.focus()
    table.move_cursor(row=table.get_row_index(account))


@pytest.fixture
def app(tmp_path: Path) -> RiskTermApp:
    return demo_app(tmp_path)


# -- the dashboard -------------------------------------------------------------------------


async def test_dashboard_shows_accounts_positions_feed_and_halt(app: RiskTermApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        assert screen.accounts.row_keys == ["EVAL-101", "LIVE-301", "PA-APEX-201"]
        halted = screen.accounts.raw("EVAL-101")
        assert halted is not None and halted[1] == "halted" and halted[8] == "daily_realized_loss"
        assert halted[7] == 1.0  # the daily limit fully used
        # a halted account cannot be missed: the banner is up on every screen
        assert screen.banner.display
        assert "1 HALTED: EVAL-101 (daily_realized_loss, until 17:00 CST)" in str(
            screen.banner.render())
        assert set(screen.positions.row_keys) == {"LIVE-301\x1fCL", "PA-APEX-201\x1fMNQ"}
        live_cl = screen.positions.raw("LIVE-301\x1fCL")
        assert live_cl is not None and live_cl[2] == 2 and live_cl[6] is None  # no stop
        mnq = screen.positions.raw("PA-APEX-201\x1fMNQ")
        assert mnq is not None and mnq[6] == 20950.0 and mnq[5] == -225.0
        lines = screen.feed.lines
        assert "no_stop_loss_grace CL" in lines[0]  # newest first
        assert any("EVAL-101 HALTED by daily_realized_loss" in line for line in lines)
        assert len(lines) == 7  # 4 violations, 2 warnings, 1 lockout
        info = screen.status_bar.info
        assert info is not None and info.events == 23 and info.state == "ended"
        assert info.rate is None  # deterministic: nothing from the wall clock
        # the sparkline follows the selected account
        select_account(app, "EVAL-101")
        await pilot.pause()
        assert app.selected_account == "EVAL-101"
        assert app.pnl.points("EVAL-101")[-1] == -500.0


async def test_keys_switch_screens_and_escape_goes_back(app: RiskTermApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        for key, screen_type in (("v", ViolationsScreen), ("j", JobsScreen),
                                 ("r", RulesScreen), ("d", DashboardScreen)):
            await pilot.press(key)
            assert isinstance(app.screen, screen_type), key
        await pilot.press("r", "escape")
        assert isinstance(app.screen, DashboardScreen)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("v")  # a dialog keeps the keys to itself
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)


async def test_command_palette_offers_the_same_actions(app: RiskTermApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"Rules (r)")
        hits = app.screen.query_one(CommandList)
        await wait_for(pilot, lambda: hits.option_count > 0, what="palette hits")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RulesScreen), what="rules screen")


async def test_keymap_setting_moves_a_key(tmp_path: Path) -> None:
    app = demo_app(tmp_path, settings=AppSettings(deterministic=True, keymap={"rules": "R"}))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("r")
        assert isinstance(app.screen, DashboardScreen)
        await pilot.press("R")
        assert isinstance(app.screen, RulesScreen)


async def test_pause_freezes_the_screen_and_the_replay(
        app: RiskTermApp, monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = 0
    status_info = app.status_info

    def counted() -> Any:  # every refresh, paused or not, asks for the status bar's info
        nonlocal ticks
        ticks += 1
        return status_info()

    monkeypatch.setattr(app, "status_info", counted)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("p")
        assert app.paused and app.host.paused
        # counted from the pause on: the flush timer runs on its own, and one that fired
        # between a count taken before the key and the key itself was the flake
        flushes, seen = app.flushes, ticks
        app.refresh_now()
        await wait_for(pilot, lambda: ticks >= seen + 3, what="refreshes while paused")
        assert app.flushes == flushes  # nothing but the status bar is drawn
        info = app.screen.status_bar.info  # type: ignore[attr-defined]
        assert info is not None and info.paused
        await pilot.press("p")
        assert not app.paused and not app.host.paused
        await wait_for(pilot, lambda: app.flushes > flushes, what="a flush after resuming")


# -- flatten and unlock --------------------------------------------------------------------


async def test_flatten_asks_first_then_sends_with_rule_manual(app: RiskTermApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        select_account(app, "LIVE-301")
        await pilot.press("f")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # cancelled: nothing is sent
        assert isinstance(app.screen, DashboardScreen)
        await pilot.press("f")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        assert isinstance(app.screen, DashboardScreen)
        await app.host.recorder.flush()
        manual = [r for r in db_records(app, "enforcement") if r["rule"] == "manual"]
        assert len(manual) == 1
        assert manual[0]["action"] == "flatten" and manual[0]["account"] == "LIVE-301"
        assert manual[0]["status"] == "dry_run"  # a replay cannot execute
        assert "closed 2 CL long" in manual[0]["detail"]
        assert "cancelled orders L2" in manual[0]["detail"]


async def test_unlock_asks_first_and_writes_a_manual_unlock(app: RiskTermApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        select_account(app, "EVAL-101")
        await pilot.press("u")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        assert app.host.engine.lockouts.active("EVAL-101") == []
        await app.host.recorder.flush()
        await pilot.pause()
        app.refresh_now()
        unlocks = db_records(app, "unlock")
        assert [(u["account"], u["reason"]) for u in unlocks] == [("EVAL-101", "manual")]
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        assert not screen.banner.display
        assert screen.accounts.raw("EVAL-101")[1] == "active"  # type: ignore[index]
        assert "EVAL-101 unlocked (manual)" in screen.feed.lines[0]
        # an account that is not locked has nothing to unlock: no dialog
        await pilot.press("u")
        assert isinstance(app.screen, DashboardScreen)


# -- violations ----------------------------------------------------------------------------


async def test_violations_history_with_filters_and_enforcements(app: RiskTermApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("v")
        screen = app.screen
        assert isinstance(screen, ViolationsScreen)
        await wait_for(pilot, lambda: screen.loads >= 1, what="history")
        rows = screen.history_rows()
        assert [r.kind for r in rows].count("violation") == 4
        assert [r.kind for r in rows].count("warning") == 2
        assert rows[0].rule == "no_stop_loss_grace"  # newest first
        halt = next(r for r in rows if r.rule == "daily_realized_loss")
        assert halt.enforcement == "flatten skipped: EVAL-101 is already flat with no working " \
                                   "orders"
        assert halt.lockout == "halted until 2026-03-02T23:00:00Z"
        grace = rows[0]
        assert grace.enforcement == "close_position dry_run: sell 2 CL to close"

        async def filtered(**filters: str | None) -> list[Any]:
            loads = screen.loads
            screen.set_filters(**filters)
            await wait_for(pilot, lambda: screen.loads > loads and screen.filters() == (
                filters.get("account"), filters.get("rule"), filters.get("kind")),
                what=f"filter {filters}")
            return screen.history_rows()

        eval_rows = await filtered(account="EVAL-101")
        assert [(r.kind, r.rule) for r in eval_rows] == [
            ("violation", "trading_while_locked"), ("violation", "daily_realized_loss"),
            ("warning", "max_position_loss")]
        assert [r.kind for r in await filtered(kind="warning")] == ["warning", "warning"]
        only = await filtered(rule="max_contracts_per_instrument")
        assert [(r.account, r.enforcement) for r in only] == [
            ("LIVE-301", "reduce_position dry_run: sell 1 CL to reach 1")]
        await pilot.press("x")  # clear the filters
        await wait_for(pilot, lambda: len(screen.history_rows()) == 6, what="all rows")


async def test_violations_screen_follows_new_records(app: RiskTermApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("v")
        screen = app.screen
        assert isinstance(screen, ViolationsScreen)
        await wait_for(pilot, lambda: screen.loads >= 1, what="history")
        engine = app.host.engine
        engine.emit_warning("max_position_loss", "LIVE-301", "CL", "a new warning", -1, -2)
        await app.host.recorder.flush()
        await wait_for(pilot, lambda: len(screen.history_rows()) == 7, what="the new row")
        assert screen.history_rows()[0].message == "a new warning"


# -- rules ---------------------------------------------------------------------------------


async def test_rules_screen_states_per_account(app: RiskTermApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, RulesScreen)
        table = screen.table
        assert table.row_keys[:3] == ["daily_realized_loss", "daily_total_loss",
                                      "max_position_loss"]
        accounts = ["EVAL-101", "LIVE-301", "PA-APEX-201"]
        states = {rid: dict(zip(accounts, table.raw(rid)[3:], strict=True))  # type: ignore[index]
                  for rid in table.row_keys}
        assert states["daily_realized_loss"]["EVAL-101"] == "breached"
        assert states["daily_realized_loss"]["LIVE-301"] == "armed"
        assert states["max_position_loss"]["PA-APEX-201"] == "warning"
        assert states["no_stop_loss_grace"]["LIVE-301"] == "breached"
        assert states["max_contracts_per_instrument"]["LIVE-301"] == "breached"
        params = table.raw("daily_realized_loss")[1]  # type: ignore[index]
        assert params.startswith("limit=-500") and "lockout until_reset" in params


async def test_reload_with_a_broken_file_keeps_the_old_rules(app: RiskTermApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, RulesScreen)
        config = app.host.engine.config
        rules_path = Path(config.path)
        rules_path.write_text(DEMO_RULES.replace("limit: -750", "limit: 750"))
        await pilot.press("ctrl+r")
        assert app.rules_error is not None
        assert ":12:29: rules.daily_total_loss.limit must be negative" in app.rules_error
        assert app.host.engine.config is config  # the old rules stay in force
        panel = screen.query_one("#rules-error")
        assert panel.has_class("-error")
        assert "old rules stay in force" in str(panel.render())
        # a good file is taken, and the error goes away
        rules_path.write_text(DEMO_RULES.replace("limit: -750", "limit: -900"))
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert app.rules_error is None
        assert app.host.engine.config is not config
        assert "limit=-900" in screen.table.raw("daily_total_loss")[1]  # type: ignore[index]
        assert not panel.has_class("-error")


# -- jobs ----------------------------------------------------------------------------------


def job_status(screen: JobsScreen, job_id: str) -> str | None:
    raw = screen.table.raw(job_id)
    return None if raw is None else raw[3]


async def test_enqueue_then_detail_with_lazy_tree_and_approve(app: RiskTermApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        select_account(app, "LIVE-301")
        await pilot.press("e")
        await pilot.press("j")
        screen = app.screen
        assert isinstance(screen, JobsScreen)
        await wait_for(pilot, lambda: job_status(screen, "j1-1") == "completed",
                       what="the job to complete")
        row = screen.table.raw("j1-1")
        assert row is not None and row[2] == "LIVE-301" and row[5] == 1.0
        await pilot.press("enter")
        detail = app.screen
        assert isinstance(detail, JobDetailScreen)
        await wait_for(pilot, lambda: detail.polls >= 1, what="the job detail")
        job = detail.job
        assert job is not None and job["status"] == "completed"
        actions = [e["action"] for e in job["actions_log"]]
        assert "set_stop_loss" in actions and "reduce_position" in actions
        assert all(e["result"] == "recommended" for e in job["actions_log"])
        timeline = detail.query_one("#job-timeline")
        assert timeline.row_count == len(job["events"]) > 3  # type: ignore[attr-defined]
        # the graph state opens one level at a time
        tree = detail.tree
        snapshot = tree.find("snapshot")
        assert snapshot is not None and not snapshot.children and not snapshot.is_expanded
        snapshot.expand()
        await pilot.pause()
        assert tree.find("snapshot", "account") is not None
        assert tree.find("snapshot", "positions", 0) is None  # not opened yet
        # a approves the recommendations: they go through the engine (dry run in a replay)
        await pilot.press("a")
        await wait_for(pilot, lambda: detail.job is not None and all(
            e["result"] != "recommended" for e in detail.job["actions_log"]),
            what="the approval")
        assert {e["result"].split(":")[0] for e in detail.job["actions_log"]} == {"dry_run"}
        await app.host.recorder.flush()
        smart = [r for r in db_records(app, "enforcement") if r["rule"] == "smart_risk"]
        assert {r["action"] for r in smart} == {"set_stop_loss", "reduce_position"}
        # the tree kept its open node across the update
        assert tree.find("snapshot", "account") is not None
        await pilot.press("escape")
        assert isinstance(app.screen, JobsScreen)


async def test_cancel_a_running_job_then_retry_it(tmp_path: Path) -> None:
    slow = DEMO_RULES.replace("step_delay_seconds: 0", "step_delay_seconds: 2")
    app = demo_app(tmp_path, rules_text=slow)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        select_account(app, "PA-APEX-201")
        await pilot.press("e", "j")
        screen = app.screen
        assert isinstance(screen, JobsScreen)
        await wait_for(pilot, lambda: job_status(screen, "j1-1") == "running",
                       what="the job to run")
        await pilot.press("c")
        await wait_for(pilot, lambda: job_status(screen, "j1-1") == "cancelled",
                       what="the job to be cancelled")
        statuses = [r["status"] for r in db_records(app, "job")]
        assert statuses[:2] == ["queued", "running"] and statuses[-1] == "cancelled"
        await pilot.press("c")  # a finished job cannot be cancelled: nothing changes
        await pilot.press("R")
        await wait_for(pilot, lambda: job_status(screen, "j1-1") in ("queued", "running")
                       and screen.table.raw("j1-1")[7] == 2,  # type: ignore[index]
                       what="the retry")
        await pilot.press("c")
        await wait_for(pilot, lambda: job_status(screen, "j1-1") == "cancelled",
                       what="the second cancel")


async def test_enqueue_twice_says_it_is_a_duplicate(tmp_path: Path) -> None:
    slow = DEMO_RULES.replace("step_delay_seconds: 0", "step_delay_seconds: 2")
    app = demo_app(tmp_path, rules_text=slow)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        select_account(app, "PA-APEX-201")
        await pilot.press("e", "e")
        messages = [n.message for n in app._notifications]
        assert any("Queued Smart Risk Manager job j1-1" in m for m in messages)
        assert any("already queued or running" in m for m in messages)
        await pilot.press("j", "c")


# -- shutdown ------------------------------------------------------------------------------


async def test_quit_is_a_clean_shutdown(app: RiskTermApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running, what="the app to exit")
    assert app.return_code == 0
    summary = db_records(app, "summary")
    assert len(summary) == 1 and summary[0]["events"] == 23


async def test_simulator_runs_live_and_quits(tmp_path: Path) -> None:
    from riskterm.config import load_rules
    from riskterm.host import RunOptions
    from riskterm.tui.app import create_app
    from riskterm.tui.demo import write_demo

    _, rules = write_demo(tmp_path)
    opts = RunOptions(source="sim", rules_path=rules, db_path=tmp_path / "sim.db", seed=3,
                      speed=50)
    app = create_app(opts, load_rules(rules), AppSettings())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.host.events_in > 200, what="simulated events")
        await wait_for(pilot, lambda: bool(app.screen.accounts.row_keys),  # type: ignore[attr-defined]
                       what="accounts on screen")
        info = app.screen.status_bar.info  # type: ignore[attr-defined]
        assert info is not None and info.state == "live" and info.rate is not None
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running, what="the app to exit")
    assert app.return_code == 0
    assert len(db_records(app, "summary")) == 1


async def test_a_database_that_cannot_open_is_reported_and_quit_returns_1(
        tmp_path: Path) -> None:
    from riskterm.config import load_rules
    from riskterm.host import RunOptions
    from riskterm.tui.app import create_app
    from riskterm.tui.demo import write_demo

    events, rules = write_demo(tmp_path)
    (tmp_path / "not-a-dir").write_text("")
    opts = RunOptions(source=f"replay:{events}", rules_path=rules, speed=0,
                      db_path=tmp_path / "not-a-dir" / "x.db")
    app = create_app(opts, load_rules(rules), AppSettings(deterministic=True))
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_for_source()
        await pilot.pause()
        assert app.engine_state == "failed" and app.engine is None
        assert app.failure is not None and "cannot open database" in app.failure
        await pilot.press("f")  # nothing to act on: says so, no dialog
        assert isinstance(app.screen, DashboardScreen)
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running, what="the app to exit")
    assert app.return_code == 1


async def test_bench_ui_measures_a_short_run() -> None:
    from riskterm.tui.bench import bench_ui

    result = await bench_ui(seconds=0.6, rate=2000)
    assert set(result) == {"rate", "key_p95_ms", "lag_p99_ms"}
    assert result["rate"] > 500 and result["key_p95_ms"] > 0 and result["lag_p99_ms"] >= 0


def test_dashboard_refuses_stdin(capsys: pytest.CaptureFixture[str]) -> None:
    from riskterm.config import default_rules_path, load_rules
    from riskterm.host import RunOptions
    from riskterm.tui.app import run_dashboard

    code = run_dashboard(RunOptions(source="-"), load_rules(default_rules_path()))
    assert code == 2
    assert "cannot read events from stdin" in capsys.readouterr().err


# -- widgets -------------------------------------------------------------------------------


async def test_live_table_redraws_only_changed_rows_and_keeps_the_cursor() -> None:
    from textual.app import App, ComposeResult

    class Table(LiveTable):
        COLUMNS = (("a", "A", 5), ("b", "B", 5))

    class TableApp(App[None]):
        def compose(self) -> ComposeResult:
            yield Table(id="t")

    app = TableApp()
    async with app.run_test() as pilot:
        table = app.query_one(Table)
        assert table.sync({"x": (1, 2), "y": (3, 4), "z": (5, 6)}) == 3
        table.move_cursor(row=1)
        await pilot.pause()
        cached = dict(table._strips)
        assert table.sync({"x": (1, 2), "y": (3, 9), "z": (5, 6)}) == 1  # one row touched
        await pilot.pause()
        assert table._strips["x"] is cached["x"] and table._strips["y"] is not cached["y"]
        assert table.selected_key() == "y"
        assert table.sync({"w": (7, 8), "y": (3, 9), "z": (5, 6)}) == 2  # x gone, w added
        assert table.row_keys == ["w", "y", "z"]
        assert table.selected_key() == "y"  # the cursor follows its row, not its position
        await pilot.press("down")
        assert table.selected_key() == "z"
        assert table.sync({}) == 3 and table.selected_key() is None


async def test_json_tree_opens_huge_states_a_page_at_a_time() -> None:
    from textual.app import App, ComposeResult

    class TreeApp(App[None]):
        def compose(self) -> ComposeResult:
            yield JsonTree("graph_state")

    state = {"big": list(range(100_000)), "nested": {"a": {"b": [1, 2, {"c": None}]}}}
    app = TreeApp()
    async with app.run_test() as pilot:
        tree = app.query_one(JsonTree)
        tree.set_value(state)
        await pilot.pause()
        big = tree.find("big")
        assert big is not None and not big.children  # nothing built before it is opened
        big.expand()
        await pilot.pause()
        assert len(big.children) == PAGE + 1  # a page and the "more" node
        more = big.children[-1]
        assert isinstance(more.data, MoreRef)
        tree.select_node(more)  # selecting "… more" loads the next page
        await pilot.pause()
        assert len(big.children) == 2 * PAGE + 1
        assert tree.find("big", PAGE) is not None
        nested = tree.find("nested")
        assert nested is not None
        nested.expand()
        await pilot.pause()
        a = tree.find("nested", "a")
        assert a is not None
        a.expand()
        await pilot.pause()
        # set_value keeps what was open
        tree.set_value({**state, "extra": 1})
        await pilot.pause()
        reopened = tree.find("nested", "a")
        assert reopened is not None and reopened.is_expanded
        assert tree.find("nested", "a", "b") is not None
