"""LiveScreen: the chrome every main screen shares (halt and connection banners, status bar,
footer) and the hook the app calls at each flush while the screen is on top."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from textual import events
from textual.app import ComposeResult
from textual.screen import Screen

from riskterm.tui.halt_banner import HaltBanner
from riskterm.tui.key_bar import KeyBar
from riskterm.tui.keys import KeyAction
from riskterm.tui.link_banner import LinkBanner
from riskterm.tui.status_bar import StatusBar
from riskterm.tui.view import AccountRow

if TYPE_CHECKING:
    from riskterm.engine import Engine
    from riskterm.tui.app import RiskTermApp


@dataclass(frozen=True)
class Frame:
    """What one flush hands to the screen on top: the engine and values computed once."""

    engine: Engine
    now: float
    accounts: dict[str, AccountRow]


class LiveScreen(Screen[None]):
    #: screen actions offered in the command palette (besides the app's)
    PALETTE_KEYS: tuple[KeyAction, ...] = ()
    #: size classes for app.tcss: below 100 columns panes stack (-narrow), below 32 lines the
    #: less important panes shrink (-short)
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (32, "-tall")]

    ready = False  # set once the children are mounted: the app flushes only to a ready screen
    filled = False  # set once a flush has reached the screen (paused, it still gets that one)
    resumed_at = 0.0  # perf_counter when the screen last came on top with fresh data (bench)
    _styled_theme: str | None = None

    def on_mount(self) -> None:
        self.ready = True

    @property
    def rt(self) -> RiskTermApp:
        return cast("RiskTermApp", self.app)

    def compose(self) -> ComposeResult:
        yield HaltBanner(self.rt.tz, id="halt-banner")
        yield LinkBanner(self.rt.tz, id="link-banner")
        yield from self.compose_body()
        yield StatusBar(self.rt.tz, id="status-bar")
        yield KeyBar(id="key-bar")

    def compose_body(self) -> ComposeResult:
        yield from ()

    @property
    def status_bar(self) -> StatusBar:
        return self.query_one("#status-bar", StatusBar)

    @property
    def key_bar(self) -> KeyBar:
        return self.query_one("#key-bar", KeyBar)

    @property
    def banner(self) -> HaltBanner:
        return self.query_one("#halt-banner", HaltBanner)

    @property
    def link_banner(self) -> LinkBanner:
        return self.query_one("#link-banner", LinkBanner)

    def refresh_live(self, frame: Frame) -> None:
        """Bring the screen up to date (called inside App.batch_update)."""

    def selected_account(self) -> str | None:
        """The account that f / u / e act on from this screen."""
        return None

    def on_screen_resume(self, event: events.ScreenResume) -> None:
        # Textual re-applies the whole stylesheet to every node of a resuming screen; nothing
        # about our styles changes while a screen waits, unless the theme did. That pass was a
        # third of the cost of a screen switch.
        if self._styled_theme == self.app.theme:
            event.refresh_styles = False
        self._styled_theme = self.app.theme
        self.rt.refresh_now()
        self.resumed_at = time.perf_counter()
