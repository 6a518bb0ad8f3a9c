"""KeyBar: the keys of the screen and the app on one line; each key can be clicked, and a key
with a state says it (Pause becomes Resume while paused).

Textual's Footer rebuilds its key widgets whenever the bindings may have changed (each screen
switch, each focus change); under a 20,000 events/s load that rebuild alone costs tens of
milliseconds per key press. The keys of a screen do not change while it lives, so this bar
renders them when the screen mounts, with the keys as remapped by the key map, and again only
when a state it shows has changed (`sync`, called at each flush, compares one flag).
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.widgets import Static

from riskterm.tui.keys import APP_KEYS

KEY_STYLE = "bold #ffa62b"
# binding id -> (app attribute, description while that attribute is true)
STATEFUL = {"pause": ("paused", "Resume")}
#: a bar too long for the width leaves keys out, these first (help, ?, lists every key; the
#: screen's own keys, quit and ? stay), then the palette hint; an ellipsis is the last resort
FOOTER_DROP = ("reload_rules", "enqueue", "dashboard", "violations", "jobs", "rules", "unlock",
               "pause", "flatten")


class KeyBar(Static):
    DEFAULT_CSS = """
    KeyBar { height: 1; background: $footer-background; color: $footer-foreground; }
    """

    _shown_state: tuple[bool, ...] | None = None

    def on_mount(self) -> None:
        self.sync()

    def _state(self) -> tuple[bool, ...]:
        return tuple(bool(getattr(self.app, attr, False)) for attr, _ in STATEFUL.values())

    def sync(self) -> None:
        """Render again if a state the bar shows has changed since it was drawn."""
        state = self._state()
        if state != self._shown_state:
            self._shown_state = state
            self.update(self.fitted_keys(), layout=False)

    def on_resize(self) -> None:
        if self._shown_state is not None:
            self.update(self.fitted_keys(), layout=False)

    def fitted_keys(self) -> Text:
        """The bar fitted to the width: the keys of FOOTER_DROP left out first."""
        width = self.content_size.width
        text = self.render_keys()
        for n in range(1, len(FOOTER_DROP) + 2):
            if width <= 0 or text.cell_len <= width:
                break
            text = self.render_keys(frozenset(FOOTER_DROP[:n]), palette=n <= len(FOOTER_DROP))
        return text

    def render_keys(self, skip: frozenset[str] = frozenset(), *, palette: bool = True) -> Text:
        screen = self.screen
        app = self.app
        text = Text(no_wrap=True, overflow="ellipsis")
        seen: set[str] = set()
        shown = [(node, b) for node, b, _, _ in screen.active_bindings.values()
                 if b.show and (node is screen or node is app)]  # not a table's arrows
        # a focused table's own enter shadows the screen's (⏎ Detail on the jobs): still listed
        for key, (node, _, _, _) in screen.active_bindings.items():
            if node is not screen and node is not app:
                shown += [(screen, b) for b in screen._bindings.key_to_bindings.get(key, ())
                          if b.show]
        # in the order of the key tables: a key moved by the key map keeps its place
        order = {k.id: i for i, k in enumerate(
            [*getattr(screen, "PALETTE_KEYS", ()), *APP_KEYS])}
        shown.sort(key=lambda item: order.get(item[1].id or "", len(order)))
        for node, binding in shown:
            if binding.action in seen or binding.id in skip:
                continue
            seen.add(binding.action)
            description = binding.description
            stateful = STATEFUL.get(binding.id or "")
            if stateful is not None and getattr(app, stateful[0], False):
                description = stateful[1]
            namespace = "app" if node is app else "screen"
            click = Style(meta={"@click": f"{namespace}.{binding.action}"})
            text.append(f" {app.get_key_display(binding)}", style=Style.parse(KEY_STYLE) + click)
            text.append(f" {description} ", style=click)
        if not palette:
            return text
        text.append("  ^p", style=Style.parse(KEY_STYLE) + Style(
            meta={"@click": "app.command_palette"}))
        text.append(" palette", style=Style(meta={"@click": "app.command_palette"}))
        return text
