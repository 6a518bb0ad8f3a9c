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


def _section(table: Table, title: str, keys: tuple[KeyAction, ...],
             keymap: dict[str, str]) -> None:
    table.add_row(Text(title, style="bold underline"), "")
    for key in keys:
        shown = keymap.get(key.id) or key.key_display or key.key
        table.add_row(Text(shown, style="bold cyan"), key.tooltip)
    table.add_row("", "")


def keys_table(keymap: dict[str, str] | None = None) -> Table:
    """Every key with what it does, as remapped by `keymap` (binding id -> key)."""
    keymap = keymap or {}
    table = Table(box=None, show_header=False, pad_edge=False, expand=True)
    table.add_column("key", width=10)
    table.add_column("does")
    _section(table, "Everywhere", APP_KEYS, keymap)
    table.add_row(Text("ctrl+p", style="bold cyan"), "Command palette: every action by name")
    table.add_row("", "")
    _section(table, "Jobs", JOBS_KEYS, keymap)
    _section(table, "Job detail", DETAIL_KEYS, keymap)
    _section(table, "Violations", VIOLATIONS_KEYS, keymap)
    return table


class HelpScreen(ModalScreen[None]):
    def __init__(self, keymap: dict[str, str] | None = None) -> None:
        super().__init__()
        self.keymap = keymap or {}

    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close", id="help_close",
                        tooltip="Close the help")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(Text("riskterm — keys", style="bold"), id="help-title")
            yield Static(keys_table(self.keymap))
            yield Static(Text("Keys can be remapped by binding id (AppSettings.keymap).",
                              style="dim"))

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
