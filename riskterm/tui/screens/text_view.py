"""TextScreen: one row of a table opened to its whole text (a job's action with its full reason
and result, a timeline event with its full detail). Plain text, never markup; it scrolls when
longer than the screen. escape, enter or q closes it."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from riskterm.tui.formatting import safe, safe_text


class TextScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,enter,q", "close", "Close", id="text_close",
                        tooltip="Close this view")]
    DEFAULT_CSS = """
    TextScreen { align: center middle; }
    #text-view { width: 100; max-width: 100%; height: auto; max-height: 90%;
                 border: round $primary; background: $surface; padding: 1 2; }
    #text-view-title { text-style: bold; margin-bottom: 1; }
    #text-view-hint { color: $text-muted; margin-top: 1; }
    """

    def __init__(self, title: str, body: Text) -> None:
        super().__init__()
        self.title_text = Text(safe(title))
        self.body = safe_text(body, newlines=True)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="text-view"):
            yield Static(self.title_text, id="text-view-title")
            yield Static(self.body, id="text-view-body")
            yield Static("escape closes", id="text-view-hint")

    def on_mount(self) -> None:
        self.query_one("#text-view", VerticalScroll).focus()

    def action_close(self) -> None:
        self.dismiss(None)

    @property
    def text(self) -> str:
        """The whole text shown (for tests)."""
        return self.title_text.plain + "\n" + self.body.plain
