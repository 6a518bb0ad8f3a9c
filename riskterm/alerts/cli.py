"""``riskterm alerts test [--rules PATH]``: one test message to every target, one line each.

Exit 0 when every target took it, 1 when any did not, 2 for a rules file that is not valid or
has no targets."""

from __future__ import annotations

import asyncio
import sys
from typing import Any, TextIO

from riskterm.alerts.config import AlertTarget
from riskterm.alerts.deliver import Sender
from riskterm.alerts.messages import Alert


def sample_alert(path: str) -> Alert:
    return Alert("test", None, None, "", "riskterm: test alert",
                 f"This is a test message from riskterm (rules file {path}). If you can read "
                 "it, this target gets riskterm's alerts.", "info")


async def _try(target: AlertTarget, alert: Alert) -> tuple[bool, str]:
    sender = Sender(target)
    try:
        return await sender.send(alert)
    finally:
        sender.close()


async def send_tests(targets: tuple[AlertTarget, ...], path: str) -> list[tuple[bool, str]]:
    """One attempt per target, all at once (a slow one costs its timeout, not the sum)."""
    alert = sample_alert(path)
    return list(await asyncio.gather(*(_try(t, alert) for t in targets)))


def alerts_main(args: Any, out: TextIO | None = None, err: TextIO | None = None) -> int:
    from riskterm.config import load_rules_for_command, resolve_rules_path

    out, err = out or sys.stdout, err or sys.stderr
    path = resolve_rules_path(args.rules)
    config = load_rules_for_command(path)
    if isinstance(config, str):
        print(config, file=err)
        return 2
    if not config.alerts:
        print(f"riskterm: {path} has no alert targets: add an alerts: block (see README, "
              "Alerts)", file=err)
        return 2
    results = asyncio.run(send_tests(config.alerts, str(path)))
    for target, (ok, reason) in zip(config.alerts, results, strict=True):
        print(f"ok      {target.label}" if ok else f"FAILED  {target.label}: {reason}", file=out)
    failed = sum(not ok for ok, _ in results)
    if failed:
        print(f"riskterm: {failed} of {len(results)} alert target(s) did not take the test "
              "message", file=err)
    return 1 if failed else 0
