"""RiskTermCommands: the command palette (ctrl+p) offers the same actions as the keys."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.dom import DOMNode

from riskterm.tui.keys import APP_KEYS, KeyAction


def _key_label(key: KeyAction, keymap: dict[str, str]) -> str:
    """The key as the user's key map has it (settings file [keys]), else its default."""
    return keymap.get(key.id) or key.key_display or key.key


class RiskTermCommands(Provider):
    def _commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        node: DOMNode = self.screen  # the screen the palette was opened from
        out: list[tuple[str, str, Callable[[], object]]] = []
        keymap: dict[str, str] = getattr(getattr(self.app, "settings", None), "keymap", {})
        for key in getattr(node, "PALETTE_KEYS", ()):
            out.append((f"{key.description} ({_key_label(key, keymap)})", key.tooltip,
                        partial(node.run_action, key.action)))
        for key in APP_KEYS:
            if key.id == "back":
                continue
            out.append((f"{key.description} ({_key_label(key, keymap)})", key.tooltip,
                        partial(self.app.run_action, key.action)))
        return out

    async def discover(self) -> Hits:
        for name, help_text, run in self._commands():
            yield DiscoveryHit(name, run, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, run in self._commands():
            score = max(matcher.match(name), matcher.match(help_text) * 0.8)
            if score > 0:
                yield Hit(score, matcher.highlight(name), run, help=help_text)
