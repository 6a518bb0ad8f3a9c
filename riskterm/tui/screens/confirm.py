"""ConfirmScreen: a yes/no dialog for actions that touch an account (flatten, unlock).

Its title and body name the account, a broker's string: they are plain text (a Static given a
str parses it as markup, and `A[/]` would crash the dialog), control characters made visible."""

from __future__ import annotations

from rich.console import RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from riskterm.tui.formatting import safe, safe_text


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm_yes", tooltip="Confirm"),
        Binding("n,escape", "answer(False)", "No", id="confirm_no", tooltip="Cancel"),
    ]

    def __init__(self, title: str, body: RenderableType, confirm: str = "Yes",
                 *, danger: bool = True) -> None:
        super().__init__()
        self.title_text = Text(safe(title))
        if isinstance(body, str):
            body = Text(safe(body, newlines=True))
        elif isinstance(body, Text):
            body = safe_text(body, newlines=True)
        self.body = body
        self.confirm_label = confirm
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self.title_text, id="dialog-title")
            yield Static(self.body, id="dialog-body")
            with Horizontal(id="dialog-buttons"):
                yield Button(f"{self.confirm_label} (y)", id="yes",
                             variant="error" if self.danger else "primary")
                yield Button("Cancel (n)", id="no", variant="default")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()  # a stray enter must not flatten an account

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
