"""The daily report in headless Chromium (issue 17, item 3): it renders with no console error and
no request beyond the file itself, shows the accounts and violations, keeps an HTML account
name as text, and its timeline filter works. The screenshot is written next to the report."""

from __future__ import annotations

from pathlib import Path

import pytest

from riskterm.cli import main
from tests.browser import launch, require_chromium
from tests.report_scenario import DAY, EVIL, make_scenario


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report_browser")
    db, rules = make_scenario(folder)
    out = folder / "report.html"
    assert main(["report", "--db", str(db), "--rules", str(rules), "--out", str(out)]) == 0
    return out


def test_the_report_renders_in_chromium(report: Path) -> None:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            problems: list[str] = []
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(report.as_uri())
            page.wait_for_load_state("load")

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
            assert acc.locator("svg.equity circle.pt").count() == 5
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
