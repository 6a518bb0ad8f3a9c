"""AttentionDesk: delivers the notices of riskterm.tui.attention — a toast, the terminal bell and
a desktop notification, each as the settings say. The bell and the escape sequences are written
through the app's driver, which is the terminal (a headless run's driver writes nothing; the
web driver hands them to the browser's terminal), never to stdout."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from textual.timer import Timer

from riskterm.tui.attention import BELL, Attention, Notice, desktop_sequence, detect_protocol

if TYPE_CHECKING:
    from riskterm.tui.app import RiskTermApp

TOAST_SECONDS = 30.0  # a halt stays on screen long enough to be seen on return to the desk


class AttentionDesk:
    def __init__(self, app: RiskTermApp, env: Mapping[str, str] | None = None) -> None:
        self.app = app
        settings = app.settings
        # deterministic (snapshots, screenshots): each alert is told as its record arrives,
        # with no timer, and without a toast, which lasts as long as the wall clock says
        window, gap = ((0.0, 0.0) if settings.deterministic else
                       (settings.attention_window_s, settings.attention_gap_s))
        self.attention = Attention(window, gap, app.tz)
        self.toast = settings.notify_toast and not settings.deterministic
        self.attention.history_key = settings.keymap.get("notifications", "n").split(",")[0]
        self.env = dict(os.environ if env is None else env)
        protocol = settings.desktop_protocol
        self.protocol = detect_protocol(self.env) if protocol == "auto" else protocol
        self._timer: Timer | None = None

    def offer(self, rec: dict[str, Any]) -> None:
        """A committed record: an alert if it calls for one, delivered when due."""
        if self.attention.offer(rec):
            if self.attention.due_in() == 0 and self._timer is None:
                self._deliver()
            else:
                self._schedule()

    def _schedule(self) -> None:
        wait = self.attention.due_in()
        if wait is None or self._timer is not None:
            return
        self._timer = self.app.set_timer(wait, self._deliver, name="attention")

    def _deliver(self) -> None:
        self._timer = None
        notice = self.attention.take()
        if notice is not None:
            self.send(notice)
            stack = self.app.screen_stack if self.app.is_running else []
            if stack and hasattr(stack[-1], "show_alerts"):  # the history is open: add rows
                stack[-1].show_alerts()
        self._schedule()  # alerts that came during the gap

    def send(self, notice: Notice) -> None:
        settings = self.app.settings
        if self.toast:
            self.app.notify(notice.text, title=notice.title, timeout=TOAST_SECONDS,
                            severity="error" if notice.severity == "error" else "warning")
        if settings.notify_bell:
            self.write(BELL)
        if settings.notify_desktop and self.protocol is not None:
            self.write(desktop_sequence(self.protocol, notice.title, notice.text, self.env))

    def write(self, data: str) -> None:
        driver = self.app._driver  # Textual's own bell() writes here too, but not when headless
        if driver is not None:
            driver.write(data)
