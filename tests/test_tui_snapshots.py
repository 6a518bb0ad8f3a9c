"""Snapshot tests of every screen on the demo replay: a fixed file replayed at speed 0 into a
fresh database, with the app's deterministic settings (no animation, no blinking cursor, nothing
from the wall clock on screen). Update with `pytest --snapshot-update` after a deliberate change,
and look at the new pictures (snapshot_report.html) before committing them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from riskterm.tui.demo import DEMO_RULES, demo_app

SIZE = (160, 45)
Step = Callable[[Pilot[Any]], Awaitable[None]]


def settled(*steps: Step) -> Callable[[Pilot[Any]], Awaitable[None]]:
    """run_before for snap_compare: the replay done and on screen, then `steps`, then calm."""

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


async def until(pilot: Pilot[Any], condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError("the app did not reach the expected state")


def press(*keys: str) -> Step:
    async def step(pilot: Pilot[Any]) -> None:
        await pilot.press(*keys)

    return step


def select_account(account: str) -> Step:
    async def step(pilot: Pilot[Any]) -> None:
        table = pilot.app.screen.query_one("#accounts")
        table.focus()
        table.move_cursor(row=table.get_row_index(account))  # type: ignore[attr-defined]
        await pilot.pause()

    return step


async def history_loaded(pilot: Pilot[Any]) -> None:
    screen: Any = pilot.app.screen
    await until(pilot, lambda: screen.loads >= 1)


async def job_completed(pilot: Pilot[Any]) -> None:
    screen: Any = pilot.app.screen
    await until(pilot, lambda: (screen.table.raw("j1-1") or (None,) * 4)[3] == "completed")


async def detail_loaded(pilot: Pilot[Any]) -> None:
    screen: Any = pilot.app.screen
    await until(pilot, lambda: screen.polls >= 1)
    node = screen.tree.find("assessment")
    node.expand()
    await pilot.pause()


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in tmp_path with relative paths, so no temporary path shows on screen."""
    monkeypatch.chdir(tmp_path)
    return Path(".")


def test_dashboard(snap_compare: Any, here: Path) -> None:
    assert snap_compare(demo_app(here), terminal_size=SIZE, run_before=settled())


def test_violations(snap_compare: Any, here: Path) -> None:
    assert snap_compare(demo_app(here), terminal_size=SIZE,
                        run_before=settled(press("v"), history_loaded))


def test_jobs(snap_compare: Any, here: Path) -> None:
    assert snap_compare(demo_app(here), terminal_size=SIZE, run_before=settled(
        select_account("LIVE-301"), press("e", "j"), job_completed))


def test_rules(snap_compare: Any, here: Path) -> None:
    assert snap_compare(demo_app(here), terminal_size=SIZE, run_before=settled(press("r")))


def test_rules_reload_error(snap_compare: Any, here: Path) -> None:
    async def break_rules(pilot: Pilot[Any]) -> None:
        Path("demo_rules.yaml").write_text(DEMO_RULES.replace("limit: -750", "limit: 750"))

    assert snap_compare(demo_app(here), terminal_size=SIZE, run_before=settled(
        press("r"), break_rules, press("ctrl+r")))


def test_flatten_dialog(snap_compare: Any, here: Path) -> None:
    assert snap_compare(demo_app(here), terminal_size=SIZE, run_before=settled(
        select_account("LIVE-301"), press("f")))


def test_help(snap_compare: Any, here: Path) -> None:
    assert snap_compare(demo_app(here), terminal_size=SIZE,
                        run_before=settled(press("question_mark")))
