"""PnlSparkline: the selected account's P&L of the day as a sparkline, with its range."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline, Static

from riskterm.tui import formatting as fmt


def _last(values: list[float]) -> float:
    return values[-1]


class PnlSparkline(Vertical):
    DEFAULT_CSS = """
    PnlSparkline { height: 5; }
    PnlSparkline > Static { height: 1; }
    PnlSparkline > Sparkline { height: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._shown: tuple[str | None, int] = (None, -1)

    def compose(self) -> ComposeResult:
        yield Static("", id="pnl-label")
        yield Sparkline([], summary_function=_last, id="pnl-spark")

    def show(self, account: str | None, points: list[float], version: int) -> None:
        if (account, version) == self._shown:
            return
        self._shown = (account, version)
        label = Text(no_wrap=True, overflow="ellipsis")
        label.append("P&L today ", style="bold")
        if account is None:
            label.append("— select an account", style="dim")
        else:
            label.append(fmt.safe(account), style="bold cyan")
            if points:
                label.append("  ")
                label.append_text(fmt.pnl(points[-1]))
                label.append(f"   low {fmt.money(min(points), signed=True)}"
                             f" · high {fmt.money(max(points), signed=True)}"
                             f" · {len(points)} sample{'s' if len(points) != 1 else ''}",
                             style="dim")
            else:
                label.append("  no samples yet", style="dim")
        self.query_one("#pnl-label", Static).update(label, layout=False)
        # one point draws a full bar that means nothing: wait for a second one
        self.query_one("#pnl-spark", Sparkline).data = points if len(points) > 1 else []
