"""DetailPane: the text under a table that shows the selected row whole. Longer than the pane
(a small terminal), it scrolls and its scrollbar says there is more: never cut silently."""

from __future__ import annotations

from rich.console import RenderableType
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static


class DetailPane(VerticalScroll):
    DEFAULT_CSS = """
    DetailPane > Static { height: auto; }
    """

    def compose(self) -> ComposeResult:
        yield Static("")

    def update(self, content: RenderableType) -> None:
        self.query_one(Static).update(content)

    @property
    def text(self) -> str:
        """The plain text shown (for tests)."""
        return str(self.query_one(Static).render())
