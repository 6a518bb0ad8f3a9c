"""Helpers for tests against the test gateway: bounded waits, never sleep-and-hope."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from riskterm.testing.gateway.server import API_KEY


async def wait_for(cond: Callable[[], object], timeout: float = 5.0, what: str = "") -> None:
    """Polls `cond` until it is true; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or cond}")
        await asyncio.sleep(0.01)


def assert_no_secret(text: str, *tokens: str | None) -> None:
    assert API_KEY not in text
    for token in tokens:
        if token:
            assert token not in text
