"""NotificationsScreen (n): every alert that was notified this session, newest first, with its
time (the record's, in the display time zone) and its text."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from riskterm.tui import formatting as fmt
from riskterm.tui.attention import parse_ts

if TYPE_CHECKING:
    from riskterm.tui.app import RiskTermApp

STYLES = {"error": "bold red", "warning": "yellow"}
WIDE = 110  # from this screen width on: the date, and account and kind in columns of their own


class NotificationsScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    NotificationsScreen { align: center middle; }
    #notifications { width: 90%; max-width: 140; height: 85%; border: round $primary;
                     background: $surface; padding: 0 1; }
    #notifications-title { margin-bottom: 1; }
    #notifications-table { height: 1fr; }
    #notifications-empty { color: $text-muted; }
    """
    BINDINGS = [Binding("escape,n,q", "dismiss", "Close", id="notifications_close",
                        tooltip="Close the notification history")]

    @property
    def rt(self) -> RiskTermApp:
        return cast("RiskTermApp", self.app)

    def compose(self) -> ComposeResult:
        with Vertical(id="notifications"):
            yield Static(id="notifications-title")
            yield DataTable(id="notifications-table", cursor_type="row", zebra_stripes=True)
            yield Static("", id="notifications-empty")

    _compact: bool | None = None

    def on_mount(self) -> None:
        self.show_alerts()

    def on_resize(self) -> None:
        if self._compact is not None:
            self._compact = None  # the columns fit the new width
            self.show_alerts()

    def show_alerts(self) -> None:
        """Fill the table from the app's alert history (called again as notices go out).
        Narrower than WIDE, the time is the time of day and the text (which names the
        account) takes the rest of the width."""
        desk = self.rt.attention
        alerts = list(desk.attention.history)
        table: DataTable[Text | str] = self.query_one("#notifications-table", DataTable)
        compact = self.size.width < WIDE
        if compact != self._compact:
            self._compact = compact
            table.clear(columns=True)
            table.add_column("time", key="time", width=8 if compact else 23)
            if not compact:
                table.add_column("what", key="what", width=18)
                table.add_column("account", key="account", width=16)
            # a fixed width, so a long text wraps onto more lines of its row, never cut
            used = (8 if compact else 23 + 18 + 16) + 2 * (2 if compact else 4)
            table.add_column("text", key="text", width=max(20, table.size.width - used - 2))
        else:
            table.clear()
        tz = self.rt.tz
        for alert in reversed(alerts):
            when = parse_ts(alert.ts)
            ts = when.timestamp() if when is not None else None
            what = Text(alert.what, style=STYLES.get(alert.severity, ""))
            if compact:
                table.add_row(fmt.clock(ts, tz), what + Text(": " + fmt.safe(alert.text)),
                              height=None)
            else:
                table.add_row(fmt.stamp(ts, tz), what, fmt.safe(alert.account),
                              Text(fmt.safe(alert.text)), height=None)
        switches = self.rt.settings
        on = [name for name, flag in (("toast", switches.notify_toast),
                                      ("bell", switches.notify_bell),
                                      ("desktop", switches.notify_desktop)) if flag]
        desktop = desk.protocol if switches.notify_desktop else None
        title = Text("Notifications", style="bold")
        title.append(f" — {len(alerts)} this session; notified by "
                     f"{', '.join(on) or 'nothing (all off in the settings)'}", style="dim")
        if switches.notify_desktop and desktop is None:
            title.append(" (desktop: this terminal is not known to show them)", style="dim")
        self.query_one("#notifications-title", Static).update(title)
        self.query_one("#notifications-empty", Static).update(
            "" if alerts else "Nothing yet: halts, lockouts and failed enforcements show here.")

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
