"""The daily report in headless Chromium (issue 17, item 3): it renders with no console error and
no request beyond the file itself, shows the accounts, violations, trades and the equity samples,
keeps an HTML account name as text, and its timeline filter works; a database from before fills
and equity were stored renders its fallback page as cleanly. Screenshots are written next to the
reports."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from riskterm.cli import main
from tests.browser import launch, require_chromium
from tests.report_scenario import DAY, EVIL, make_scenario


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("report_browser")
    return make_scenario(folder)


@pytest.fixture(scope="module")
def report(made: tuple[Path, Path]) -> Path:
    db, rules = made
    out = db.parent / "report.html"
    assert main(["report", "--db", str(db), "--rules", str(rules), "--out", str(out)]) == 0
    return out


def _samples(db: Path, account: str) -> int:
    with sqlite3.connect(db) as conn:
        (n,) = conn.execute("SELECT COUNT(*) FROM equity WHERE account = ? AND ts >= ? "
                            "AND equity IS NOT NULL", (account, 1770073200.0)).fetchone()
    conn.close()
    return int(n)  # the samples of the trading day (from 2026-02-02T23:00:00Z on)


def _open(p: Any, report: Path) -> tuple[Any, Any, list[str], list[str]]:
    browser = launch(p)
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(report.as_uri())
    page.wait_for_load_state("load")
    return browser, page, problems, requests


def test_the_report_renders_in_chromium(made: tuple[Path, Path], report: Path) -> None:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page, problems, requests = _open(p, report)
        try:
            assert page.inner_text("#day") == DAY
            names = page.locator("#accounts a.acct-name").all_inner_texts()
            assert names == [EVIL, "ACC-1"]  # sorted: "<" before "A"
            assert page.locator("img").count() == 0  # the name stayed text
            titles = page.locator("h2.account-title").all_inner_texts()
            assert titles == [EVIL, "ACC-1"]
            acc = page.locator("section.account", has=page.locator("h2", has_text="ACC-1"))
            timeline = acc.locator("table.timeline tbody tr")
            kinds = timeline.locator("td.kind").all_inner_texts()
            assert [k.lower() for k in kinds].count("violation") == 3
            text = acc.inner_text()
            for expected in ("ACC-1 holds 2 MNQ, limit 1",
                             "ACC-1 realized P&L today is -760.00, limit -500.00",
                             "daily loss limit -750.00 (daily_total_loss)",
                             "account floor 48,100.00", "j1-1", "reduce_position"):
                assert expected in text, expected
            # the start-of-day balance and every equity sample of the day
            assert acc.locator("svg.equity circle.pt").count() == 1 + _samples(made[0], "ACC-1")
            assert acc.locator("svg.equity circle.pt title").nth(2).text_content().startswith(
                "49,700.00: sample: balance 50,100.00")
            trades = acc.locator("table.trades tbody tr")
            assert trades.count() == 2
            assert trades.nth(1).inner_text().split("\t") == [
                "08:46:00", "MNQ", "sell", "2", "19,810.00", "0.00", "-760.00"]
            assert page.locator("#derivation").count() == 0
            assert acc.locator("svg.equity rect.band").count() == 2
            # the timeline filter hides the warnings and shows them again
            warning = acc.locator("tr.k-warning").first
            assert warning.is_visible()
            acc.locator('input.kind-filter[data-kind="warning"]').uncheck()
            assert warning.is_hidden()
            acc.locator('input.kind-filter[data-kind="warning"]').check()
            assert warning.is_visible()

            shot = report.with_suffix(".png")
            page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert problems == []
            assert requests == [report.as_uri()]
        finally:
            browser.close()


def test_an_old_database_renders_its_fallback_page(made: tuple[Path, Path]) -> None:
    require_chromium()
    from playwright.sync_api import sync_playwright

    db, rules = made
    old = db.parent / "old.db"
    with sqlite3.connect(db) as src, sqlite3.connect(old) as dst:
        src.backup(dst)
        dst.executescript("DROP TABLE fills; DROP TABLE equity; PRAGMA user_version = 2;")
    src.close()
    dst.close()
    out = db.parent / "old-report.html"
    assert main(["report", "--db", str(old), "--rules", str(rules), "--out", str(out)]) == 0
    with sync_playwright() as p:
        browser, page, problems, requests = _open(p, out)
        try:
            assert "written by an older riskterm" in page.inner_text("#no-history")
            assert page.locator("#derivation summary").is_visible()
            assert page.locator("table.trades").count() == 0
            acc = page.locator("section.account", has=page.locator("h2", has_text="ACC-1"))
            assert acc.locator("svg.equity circle.pt").count() == 5  # the derived points
            page.screenshot(path=str(out.with_suffix(".png")), full_page=True)
            assert problems == []
            assert requests == [out.as_uri()]
        finally:
            browser.close()
