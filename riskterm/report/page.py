"""The report page: one self-contained HTML file (inline CSS, JS and SVG; a Content-Security-Policy
that allows no network at all). Jinja2 escapes every value (autoescape), and the SVG is built
with html.escape, so account names, messages and job texts from the database stay text."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from markupsafe import Markup

from riskterm.config import RulesConfig
from riskterm.report.chart import equity_svg
from riskterm.report.day import AccountDay, Day
from riskterm.timefmt import iso


def _env(tz: ZoneInfo) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("riskterm.report", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)

    def local(ts: float | None, fmt: str = "%H:%M:%S") -> str:
        if ts is None:
            return ""
        try:
            return datetime.fromtimestamp(ts, tz).strftime(fmt)
        except (OverflowError, OSError, ValueError):
            return iso(ts)

    def money(value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "n/a"
        return f"{value:,.2f}"

    def compact(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)

    def price(value: Any) -> str:
        """A fill price as the broker gave it (a tick of 0.25 or 0.03125 keeps its digits)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "n/a"
        return f"{value:,.2f}" if round(value, 2) == value else f"{value:,}"

    env.filters.update(local=local, money=money, utc=lambda ts: "" if ts is None else iso(ts),
                       compact=compact, price=price)
    return env


def describe(rec: dict[str, Any]) -> str:
    """The text of a record on the timeline."""
    kind = rec.get("kind")
    if kind in ("violation", "warning"):
        return str(rec.get("message", ""))
    if kind == "enforcement":
        return f"{rec.get('action')}: {rec.get('detail', '')}"
    if kind == "lockout":
        until = rec.get("until")
        return f"{rec.get('state')} until {until}" if until else f"{rec.get('state')}, permanent"
    if kind == "unlock":
        return f"lifted: {rec.get('reason')}"
    if kind == "job":
        text = f"job {rec.get('job_id')} ({rec.get('job_kind')}) {rec.get('status')}, " \
               f"attempt {rec.get('attempt')}"
        if "actions_taken" in rec:
            text += f", {rec.get('actions_taken')} action(s) taken"
        if rec.get("error"):
            text += f": {rec.get('error')}"
        return text
    return json.dumps(rec, ensure_ascii=False, default=str)


def render(day: Day, config: RulesConfig, *, db: str, rules: str) -> str:
    tz = config.tz
    env = _env(tz)
    x_range = day.x_range

    def rows(acct: AccountDay) -> list[dict[str, Any]]:
        return [{"ts": ts, "kind": rec.get("kind"), "rule": rec.get("rule") or "",
                 "symbol": rec.get("symbol") or "", "status": rec.get("status") or "",
                 "text": describe(rec)}
                for ts, rec in sorted(acct.records, key=lambda item: item[0])]

    summaries = [rec for _, rec in day.general if rec.get("kind") == "summary"]
    rejected = [(ts, rec) for ts, rec in day.general if rec.get("kind") == "rejected"]
    other = [(ts, rec) for ts, rec in day.general if rec.get("kind") not in ("summary",
                                                                             "rejected")]
    template = env.get_template("report.html.j2")
    return template.render(
        day=day, tz=config.timezone, reset=config.daily_reset.strftime("%H:%M"),
        accounts=day.accounts, db=db, rules=rules,
        sections=[{"a": a, "index": i, "chart": Markup(equity_svg(a, x_range, tz)),
                   "rows": rows(a)} for i, a in enumerate(day.accounts, 1)],
        generated=iso(time.time()), summaries=summaries, rejected=rejected[:200],
        rejected_total=len(rejected), other=other, describe=describe,
        kinds=("violation", "warning", "enforcement", "lockout", "unlock", "job"))
