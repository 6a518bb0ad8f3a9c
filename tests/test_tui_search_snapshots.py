"""Snapshot tests of the account screen (160x45 and 80x24) and of a filtered, sorted table, on
the demo replay with deterministic settings. Update with `pytest --snapshot-update` on just
these tests after a deliberate change, and look at the new pictures before committing them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from riskterm.tui.demo import DEMO_RULES, demo_app

RULES = DEMO_RULES.replace("  no_stop_loss_grace:", "  trailing_drawdown: {amount: 2000}\n"
                           "  no_stop_loss_grace:")


async def until(pilot: Pilot[Any], condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError("the app did not reach the expected state")


async def account_screen(pilot: Pilot[Any]) -> None:
    app: Any = pilot.app
    await app.wait_for_source()
    await pilot.pause()
    app.refresh_now()
    table = app.screen.query_one("#accounts")
    table.focus()
    table.move_cursor(row=table.get_row_index("EVAL-101"))
    await pilot.press("enter")
    await until(pilot, lambda: getattr(app.screen, "loads", 0) >= 1)
    app.refresh_now()
    await pilot.pause()
    app.clear_notifications()
    await pilot.pause()


async def filtered_violations(pilot: Pilot[Any]) -> None:
    app: Any = pilot.app
    await app.wait_for_source()
    await pilot.pause()
    await pilot.press("v")
    screen = app.screen
    await until(pilot, lambda: screen.loads >= 1)
    screen.table.focus()
    await pilot.press("s", "s", "s", "S")  # sorted by kind, descending
    await pilot.press("slash")
    for ch in "eval":
        await pilot.press(ch)
    await pilot.press("enter")
    await pilot.pause()
    app.clear_notifications()
    await pilot.pause()


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return Path(".")


def test_account_screen(snap_compare: Any, here: Path) -> None:
    assert snap_compare(demo_app(here, rules_text=RULES), terminal_size=(160, 45),
                        run_before=account_screen)


def test_account_screen_80x24(snap_compare: Any, here: Path) -> None:
    assert snap_compare(demo_app(here, rules_text=RULES), terminal_size=(80, 24),
                        run_before=account_screen)


def test_filtered_sorted_violations(snap_compare: Any, here: Path) -> None:
    assert snap_compare(demo_app(here, rules_text=RULES), terminal_size=(160, 45),
                        run_before=filtered_violations)
