"""`--source projectx`: the ProjectX broker made from the environment (CONTRACT §9).

PROJECTX_USERNAME and PROJECTX_API_KEY are required; PROJECTX_API_URL, PROJECTX_USER_HUB and
PROJECTX_MARKET_HUB default to TopstepX's. A missing or malformed variable is a
BrokerStartError (exit 2) that names it — and never shows the key.
"""

from __future__ import annotations

from riskterm.brokers.base import BrokerContext, BrokerStartError
from riskterm.brokers.projectx.broker import ProjectXBroker
from riskterm.brokers.projectx.problems import Problem
from riskterm.brokers.projectx.settings import ProjectXSettings, SettingsError


def make(ctx: BrokerContext) -> ProjectXBroker:
    if ctx.arg:
        raise BrokerStartError("--source projectx takes no argument: its settings come from "
                               "the PROJECTX_* environment variables")
    try:
        settings = ProjectXSettings.from_env()
    except SettingsError as exc:
        raise BrokerStartError(f"ProjectX: {exc}") from None

    def report(problem: Problem) -> None:  # once per kind (ProblemLog), already redacted
        ctx.say(f"ProjectX: {problem.sentence}")

    return ProjectXBroker(settings, accounts=ctx.accounts, instruments=ctx.instruments,
                          day_start=ctx.day_start, on_problem=report)
