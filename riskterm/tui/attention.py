"""What calls for a trader's attention: a lockout (a halt, or reduce-only) and a failed
enforcement. Each record is noticed once; alerts that come close together make one notice, and
notices are at least `gap` seconds apart, so a storm of fifty lockouts is one summary, not fifty
toasts and fifty bells. The desktop notification is an OSC 9 or OSC 777 escape sequence, sent
only to a terminal known to show it (the terminal bell and the toast go everywhere).

Nothing here imports Textual: the app delivers the notices (riskterm/tui/attention_desk.py).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

SEEN_LIMIT = 20_000  # record keys remembered against a second notice
HISTORY_LIMIT = 1_000  # alerts kept for the history screen
SHOWN_ACCOUNTS = 4  # accounts named in a summary before "and N more"


@dataclass(frozen=True)
class Alert:
    ts: str  # the record's time (engine time: event time in a replay)
    what: str  # "halted", "reduce only", "enforcement failed"
    account: str
    text: str
    severity: str  # "error" or "warning"


@dataclass(frozen=True)
class Notice:
    title: str
    text: str
    severity: str
    alerts: tuple[Alert, ...]


def parse_ts(ts: Any) -> datetime | None:
    """A record's ISO-8601 time, or None if it is not one."""
    try:
        return datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
    except ValueError:
        return None


def _until(until: Any, ts: str, tz: ZoneInfo) -> str:
    if not until:
        return "until unlocked by hand"
    end, start = parse_ts(until), parse_ts(ts)
    if end is None:
        return f"until {until}"
    end = end.astimezone(tz)
    same_day = start is not None and start.astimezone(tz).date() == end.date()
    return "until " + end.strftime("%H:%M %Z" if same_day else "%Y-%m-%d %H:%M %Z")


def alert_for(rec: Mapping[str, Any], tz: ZoneInfo) -> Alert | None:
    """The alert a record calls for, or None; times in `tz`."""
    kind = rec.get("kind")
    account = str(rec.get("account") or "?")
    rule = str(rec.get("rule") or "?")
    ts = str(rec.get("ts") or "")
    if kind == "lockout":
        lasting = _until(rec.get("until"), ts, tz)
        if rec.get("state") == "halted":
            return Alert(ts, "halted", account, f"{account} halted by {rule}, {lasting}",
                         "error")
        return Alert(ts, "reduce only", account,
                     f"{account} may only reduce positions ({rule}), {lasting}", "warning")
    # a manual flatten's outcome is told by the dashboard that sent it (app._flatten_result)
    if kind == "enforcement" and rec.get("status") == "failed" and rule != "manual":
        action = str(rec.get("action") or "?")
        detail = str(rec.get("detail") or "")
        return Alert(ts, "enforcement failed", account,
                     f"{action} of {account} failed ({rule}): {detail}".rstrip(": "), "error")
    return None


def record_key(rec: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(str(rec.get(k)) for k in ("kind", "ts", "account", "rule", "state", "until",
                                           "action", "symbol", "order_id", "status", "detail"))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def summary(alerts: list[Alert], history_key: str = "n") -> Notice:
    """One notice for the alerts gathered since the last one (`history_key` opens the list)."""
    if len(alerts) == 1:
        a = alerts[0]
        return Notice(f"{a.account}: {a.what}", a.text, a.severity, tuple(alerts))
    counts: dict[str, int] = {}
    accounts: list[str] = []
    for a in alerts:
        counts[a.what] = counts.get(a.what, 0) + 1
        if a.account not in accounts:
            accounts.append(a.account)
    parts = ", ".join(f"{n} {what}" for what, n in counts.items())
    named = ", ".join(accounts[:SHOWN_ACCOUNTS])
    if len(accounts) > SHOWN_ACCOUNTS:
        named += f" and {len(accounts) - SHOWN_ACCOUNTS} more"
    severity = "error" if any(a.severity == "error" for a in alerts) else "warning"
    return Notice(f"{_plural(len(alerts), 'alert')}: {parts}",
                  f"{_plural(len(accounts), 'account')}: {named}. "
                  f"Press {history_key} for the list.",
                  severity, tuple(alerts))


class Attention:
    """Gathers alerts from committed records and says when the next notice is due."""

    def __init__(self, window_s: float, gap_s: float, tz: ZoneInfo,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.tz = tz
        self.history_key = "n"  # named in a summary; the key map may move it
        self.window_s = window_s
        self.gap_s = gap_s
        self.clock = clock
        self.history: deque[Alert] = deque(maxlen=HISTORY_LIMIT)
        self.pending: list[Alert] = []
        self.notices = 0
        self._seen: OrderedDict[tuple[Any, ...], None] = OrderedDict()
        self._first_at = 0.0
        self._last_notice: float | None = None

    def offer(self, rec: Mapping[str, Any]) -> bool:
        """Take a committed record; True if it is a new alert (now pending)."""
        alert = alert_for(rec, self.tz)
        if alert is None:
            return False
        key = record_key(rec)
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > SEEN_LIMIT:
            self._seen.popitem(last=False)
        if not self.pending:
            self._first_at = self.clock()
        self.pending.append(alert)
        self.history.append(alert)
        return True

    def due_in(self) -> float | None:
        """Seconds until the pending alerts make a notice (0: now), None if none is pending."""
        if not self.pending:
            return None
        due = self._first_at + self.window_s
        if self._last_notice is not None:
            due = max(due, self._last_notice + self.gap_s)
        return max(0.0, due - self.clock())

    def take(self) -> Notice | None:
        """The notice of the pending alerts if it is due, else None."""
        wait = self.due_in()
        if wait is None or wait > 0:
            return None
        notice = summary(self.pending, self.history_key)
        self.pending = []
        self._last_notice = self.clock()
        self.notices += 1
        return notice


# -- desktop notifications ------------------------------------------------------------------

def detect_protocol(env: Mapping[str, str]) -> str | None:
    """The desktop-notification escape the terminal is known to show, from its environment
    (LC_TERMINAL and KITTY_WINDOW_ID survive tmux and ssh, TERM_PROGRAM does not), else None."""
    program = env.get("TERM_PROGRAM", "")
    term = env.get("TERM", "")
    if (program in ("iTerm.app", "WezTerm", "ghostty") or env.get("LC_TERMINAL") == "iTerm2"
            or "KITTY_WINDOW_ID" in env or term == "xterm-kitty"
            or "GHOSTTY_RESOURCES_DIR" in env or "WEZTERM_PANE" in env):
        return "osc9"
    if term.startswith(("foot", "rxvt-unicode")) or "VTE_VERSION" in env:
        return "osc777"
    return None


def _plain(text: str, limit: int) -> str:
    """No control characters (they would end or break the sequence), at most `limit` chars."""
    flat = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def desktop_sequence(protocol: str, title: str, body: str, env: Mapping[str, str]) -> str:
    """The escape sequence of a desktop notification; inside tmux wrapped to pass through
    (tmux's allow-passthrough must be on for it to reach the terminal outside)."""
    title = _plain(title, 120)
    body = _plain(body, 400)
    if protocol == "osc777":  # fields are separated by ';'
        seq = f"\x1b]777;notify;{title.replace(';', ',')};{body.replace(';', ',')}\x07"
    else:  # "riskterm" first: ConEmu and Windows Terminal read "9;<digit>;" as a command
        seq = f"\x1b]9;riskterm: {title}: {body}\x07"
    if env.get("TMUX"):
        seq = "\x1bPtmux;" + seq.replace("\x1b", "\x1b\x1b") + "\x1b\\"
    return seq


BELL = "\x07"
