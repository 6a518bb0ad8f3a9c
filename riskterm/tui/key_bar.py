"""KeyBar: the keys of the screen and the app on one line, built once when the screen mounts.

Textual's Footer rebuilds its key widgets whenever the bindings may have changed (each screen
switch, each focus change); under a 20,000 events/s load that rebuild alone costs tens of
milliseconds per key press. The keys of a screen do not change while it lives, so this bar
renders them once, with the keys as remapped by the key map.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

KEY_STYLE = "bold #ffa62b"


class KeyBar(Static):
    DEFAULT_CSS = """
    KeyBar { height: 1; background: $footer-background; color: $footer-foreground; }
    """

    def on_mount(self) -> None:
        self.update(self.render_keys(), layout=False)

    def render_keys(self) -> Text:
        screen = self.screen
        app = self.app
        text = Text(no_wrap=True, overflow="ellipsis")
        seen: set[str] = set()
        for node, binding in ((node, b) for node, b, _, _ in screen.active_bindings.values()
                              if b.show):
            if node is not screen and node is not app:
                continue  # a focused widget's own keys (the table's arrows) go unlisted
            if binding.action in seen:
                continue
            seen.add(binding.action)
            text.append(f" {app.get_key_display(binding)}", style=KEY_STYLE)
            text.append(f" {binding.description} ")
        text.append("  ^p", style=KEY_STYLE)
        text.append(" palette")
        return text
