"""Headless Chromium for the browser tests: Debian's package (/usr/bin/chromium), driven by
playwright's own protocol client. Playwright never downloads a browser here: it launches the
system one by path. A machine without either skips these tests with the reason; under .ci/run
(RISKTERM_REQUIRE=all) they fail instead (tests/services.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from tests.services import need

CHROMIUM = Path("/usr/bin/chromium")


def require_chromium() -> None:
    have_browser = CHROMIUM.is_file()
    have_driver = importlib.util.find_spec("playwright") is not None
    reason = []
    if not have_browser:
        reason.append(f"no headless Chromium at {CHROMIUM} (apt-get install chromium)")
    if not have_driver:
        reason.append("playwright is not installed (pip install '.[test]')")
    need("chromium", have_browser and have_driver, "; ".join(reason))


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=str(CHROMIUM))
