"""RulesTable: each rule with its parameters and, per account, armed / warning / breached.

Narrower than its cells, the parameters narrow to 12 cells and the rule to 18 (cut with an
ellipsis; the detail pane shows them whole), then the parameters column drops; the account
columns stay (more accounts than fit scroll sideways)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import RenderableType
from rich.text import Text

from riskterm.tui import formatting as fmt
from riskterm.tui.live_table import LiveTable

COMMON = ("enabled", "action", "lockout", "lockout_state", "warn_at")
STATE_CELL = {
    "armed": ("● armed", "green"),
    "warning": ("▲ warn", "bold yellow"),
    "breached": ("✖ BREACH", "bold white on red"),
    "off": ("·", "grey37"),
}


def params_text(params: Any, limit: int = 200) -> str:
    """A rule block in one line: its own parameters, then action, lockout and warn_at."""
    data = params.model_dump(mode="json", exclude_none=True)
    own = ", ".join(f"{k}={fmt.compact(v, 60)}" for k, v in data.items() if k not in COMMON)
    tail = f"→ {'+'.join(data.get('action') or ()) or 'nothing'}"
    if data.get("lockout") not in (None, "none"):
        tail += f", lockout {data['lockout']}"
        if data.get("lockout_state") == "reducing":
            tail += " (reducing)"
    if data.get("warn_at") is not None:
        tail += f", warn at {data['warn_at'] * 100:.0f}%"
    text = f"{own}  {tail}" if own else tail
    if not data.get("enabled", True):
        text = "disabled · " + text
    return fmt.compact(text, limit)


def account_header(account: str, width: int) -> str:
    """An account name on two lines (the header is two rows high): PA-APEX / 544."""
    account = fmt.safe(account)  # a newline in the name must not add a header line
    head, sep, tail = account.rpartition("-")
    if not sep or len(tail) > width:
        return account[:width] + "\n" + account[width:2 * width]
    return f"{head[:width]}\n{tail}"


class RulesTable(LiveTable):
    COLUMNS = (("rule", "Rule", 28), ("params", "Parameters", 34))
    NARROW = {"params": 12, "rule": 18}
    DROP = ("params",)
    ACCOUNT_WIDTH = 9

    def set_accounts(self, accounts: list[str]) -> None:
        self.ensure_columns([(f"acct:{a}", account_header(a, self.ACCOUNT_WIDTH),
                              self.ACCOUNT_WIDTH) for a in accounts])

    def render_row(self, raw: tuple[Any, ...]) -> Sequence[RenderableType]:
        rule, params, disabled, *states = raw
        cells: list[RenderableType] = [
            Text(fmt.safe(rule), style="dim" if disabled else "bold"),
            Text(fmt.safe(params), style="dim" if disabled else "", no_wrap=True,
                 overflow="ellipsis"),
        ]
        for state in states:
            label, style = STATE_CELL.get(state, (state, ""))
            cells.append(Text(label, style=style))
        return cells
