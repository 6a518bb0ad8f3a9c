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
        does = Text(key.tooltip)
        does.append(f"  {key.id}", style="dim")  # the id a settings file remaps it by
        table.add_row(Text(shown, style="bold cyan"), does)
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


def remap_note(settings: object) -> Text:
    """How to remap a key, naming the settings file the dashboard read (if it read one)."""
    path = getattr(settings, "settings_file", None)
    where = f"in {path}" if path else ("in settings.toml in the per-user config directory "
                                       "(or the file RISKTERM_CONFIG names)")
    return Text(f"Remap a key {where}: under [keys], binding id = key (the grey word after "
                "each key), e.g. flatten = \"F\". The README lists every setting.", style="dim")


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
            yield Static(remap_note(getattr(self.app, "settings", None)))

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
