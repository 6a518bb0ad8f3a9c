"""HelpScreen (?): every key, from the same table that makes the bindings."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from riskterm.tui.keys import APP_KEYS, DETAIL_KEYS, JOBS_KEYS, VIOLATIONS_KEYS, KeyAction


def _section(table: Table, title: str, keys: tuple[KeyAction, ...]) -> None:
    table.add_row(Text(title, style="bold underline"), "")
    for key in keys:
        table.add_row(Text(key.key_display or key.key, style="bold cyan"), key.tooltip)


def keys_table(app_keys: tuple[KeyAction, ...] = APP_KEYS) -> Table:
    table = Table(box=None, show_header=False, pad_edge=False, expand=True)
    table.add_column("key", width=10)
    table.add_column("does")
    _section(table, "Everywhere", app_keys)
    table.add_row("ctrl+p", "Command palette: every action by name")
    _section(table, "Jobs", JOBS_KEYS)
    _section(table, "Job detail", DETAIL_KEYS)
    _section(table, "Violations", VIOLATIONS_KEYS)
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close", id="help_close",
                        tooltip="Close the help")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(Text("riskterm — keys", style="bold"), id="help-title")
            yield Static(keys_table())
            yield Static(Text("Keys can be remapped by binding id (AppSettings.keymap).",
                              style="dim"))

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
