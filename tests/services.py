"""Tests that need something outside Python (a PostgreSQL server, a browser) skip with a clear
reason where it is missing — a user's fresh machine — and fail instead where the environment
says it must be there: `.ci/run` sets RISKTERM_REQUIRE=all (or a comma list such as
`postgres,chromium`)."""

from __future__ import annotations

import os

import pytest


def required(what: str) -> bool:
    wanted = {w.strip() for w in os.environ.get("RISKTERM_REQUIRE", "").split(",") if w.strip()}
    return "all" in wanted or what in wanted


def need(what: str, available: bool, reason: str) -> None:
    """Skip (or, where `what` is required, fail) the calling test unless `available`."""
    if available:
        return
    if required(what):
        pytest.fail(f"{reason}; RISKTERM_REQUIRE makes {what} required here", pytrace=False)
    pytest.skip(reason)
